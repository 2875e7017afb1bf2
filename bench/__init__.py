"""Benchmark harness: peak memory of eager, Inductor and modelopt, measured and planned.

Run it with `python -m bench.run --help`. The peak-memory measurements themselves
(`kineto_peak_bytes`, `cuda_peak`) live in `dynamo_modelopt.measure`, for users as well.
"""
