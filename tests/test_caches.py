"""The process-wide memos are bounded, and `clear_caches()` empties them all."""

from __future__ import annotations

import pytest

import dynamo_modelopt
from dynamo_modelopt.caches import BoundedCache
from dynamo_modelopt.capture import runtime, workspace
from dynamo_modelopt.planner.gurobi import license_limit


def test_clear_caches_empties_every_memo() -> None:
    workspace._measured_cache[("op", "kernel")] = None
    runtime._fx_cache[("op", (), "()", 1)] = 1e-3
    license_limit()
    assert len(workspace._measured_cache) and len(runtime._fx_cache)
    assert license_limit.cache_info().currsize == 1

    dynamo_modelopt.clear_caches()

    assert len(workspace._measured_cache) == 0
    assert len(runtime._fx_cache) == 0
    assert license_limit.cache_info().currsize == 0


def test_memos_are_bounded() -> None:
    assert workspace._measured_cache.maxsize == workspace.MEASURED_CACHE_SIZE
    assert runtime._fx_cache.maxsize == runtime.FX_CACHE_SIZE
    cache: BoundedCache[str, int] = BoundedCache("test", maxsize=2)
    cache["a"], cache["b"] = 1, 2
    assert cache["a"] == 1  # "a" is now the most recently used
    cache["c"] = 3
    assert len(cache) == 2
    assert "b" not in cache  # the least recently used went
    assert cache.get("a") == 1 and cache.get("c") == 3
    assert cache.get("b") is None
    with pytest.raises(KeyError):
        cache["b"]


def test_a_full_memo_keeps_its_bound() -> None:
    dynamo_modelopt.clear_caches()
    for i in range(runtime.FX_CACHE_SIZE + 10):
        runtime._fx_cache[("op", i)] = float(i)
    assert len(runtime._fx_cache) == runtime.FX_CACHE_SIZE
    assert ("op", 0) not in runtime._fx_cache and (
        "op",
        runtime.FX_CACHE_SIZE + 9,
    ) in runtime._fx_cache
    dynamo_modelopt.clear_caches()
