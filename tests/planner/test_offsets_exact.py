"""The exact offset search on deep groups: no recursion, so no recursion limit to change."""

from __future__ import annotations

import sys
import time

import pytest

from dynamo_modelopt.planner.heuristics import Item
from dynamo_modelopt.planner.offsets_exact import _search


def test_search_deeper_than_the_recursion_limit_leaves_the_limit_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(limit: int) -> None:
        raise AssertionError("the search changed the process's recursion limit")

    monkeypatch.setattr(sys, "setrecursionlimit", refuse)
    limit = sys.getrecursionlimit()
    depth = limit + 500  # one search level per buffer of the group
    items = {i: Item(size=64, alignment=64, start=i, end=i + 2) for i in range(depth)}
    keys = list(items)
    best, arena, proved, nodes = _search(
        items,
        keys,
        incumbent=64 * depth,
        target=0,
        deadline=time.perf_counter() + 60,
        node_limit=2 * depth,
    )
    assert best is not None and len(best) == depth  # a full placement, found at full depth
    assert arena == 128  # neighbours overlap in pairs: two rows
    assert not proved and nodes > depth
