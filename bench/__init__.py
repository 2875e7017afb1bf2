"""Benchmark harness: peak memory of eager, Inductor and modelopt, measured and planned.

Run it with `python -m bench.run --help`. `bench.memory.kineto_peak_bytes(fn)` is the shared
CPU peak-memory measurement.
"""
