"""Benchmark harness: peak memory of eager, Inductor and modelopt, measured and planned.

Run it with `python -m bench.run --help`. The peak-memory measurements themselves
(`kineto_peak_bytes`, `cuda_peak`) live in `dynamo_modelopt.measure`, for users as well.
"""

import os
import tempfile

# Every bench process measures modelopt's search of settings, never a choice an earlier run
# stored (`dynamo_modelopt/decision_cache.py`).
os.environ["MODELOPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="modelopt-bench-decisions-")
