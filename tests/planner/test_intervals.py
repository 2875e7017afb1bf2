"""The one interval convention: half-open live ranges `[start, end)`."""

from __future__ import annotations

import itertools

from dynamo_modelopt.planner import Plan, Tensor, make_problem, validate
from dynamo_modelopt.planner.graph import build_graph
from dynamo_modelopt.planner.heuristics import Item, items_for, placement_ok, time_neighbours
from dynamo_modelopt.planner.intervals import LiveRange, covers, overlaps
from dynamo_modelopt.planner.validate import ErrorKind


def test_helpers_are_half_open() -> None:
    live = LiveRange(2, 5)
    assert [s for s in range(8) if live.covers(s)] == [2, 3, 4]
    assert live == (2, 5) and live.length == 3 and not live.empty
    assert LiveRange.of_steps(2, 4) == live
    assert LiveRange(3, 3).empty and not any(covers(LiveRange(3, 3), s) for s in range(6))
    assert not overlaps(LiveRange(0, 3), LiveRange(3, 5))  # touching: memory may be shared
    assert overlaps(LiveRange(0, 3), LiveRange(2, 5))
    assert live.hull([7]) == (2, 8) and live.hull([0]) == (0, 5) and live.hull([]) == live
    assert live.clipped(4) == (2, 4)


def test_overlap_is_the_old_inclusive_rule() -> None:
    """Exactly the pairs the former inclusive `(first, last)` rule kept apart overlap."""
    for f1, l1, f2, l2 in itertools.product(range(5), repeat=4):
        if f1 <= l1 and f2 <= l2:
            inclusive = f1 <= l2 and f2 <= l1
            a, b = LiveRange.of_steps(f1, l1), LiveRange.of_steps(f2, l2)
            assert overlaps(a, b) == inclusive
            ia, ib = Item(1, 1, *a), Item(1, 1, *b)
            assert (1 in time_neighbours({0: ia, 1: ib})[0]) == inclusive
            assert placement_ok({0: ia, 1: ib}, {0: 0, 1: 0}) == (not inclusive)


def _chain():
    """p -> q -> r: `a` is read last by q, the step `b` is made at; `c` is made at r."""
    return make_problem(
        ["p", "q", "r"],
        [
            Tensor("a", 8, "p", ("q",)),
            Tensor("b", 8, "q", ("r",)),
            Tensor("c", 8, "r", (), live_to_end=True),
        ],
    )


def test_freed_at_a_step_and_made_at_it_never_share() -> None:
    problem = _chain()
    g = build_graph(problem)
    ranges = dict(zip([b.name for b in g.bufs], g.intervals([0, 1, 2]), strict=True))
    assert ranges == {"a": (0, 2), "b": (1, 3), "c": (2, 3)}
    items = items_for(g, [0, 1, 2])
    assert not placement_ok(items, {0: 0, 1: 0, 2: 8})  # a and b live together at q's step
    assert placement_ok(items, {0: 0, 1: 8, 2: 0})  # a is freed before r makes c

    def plan_with(offsets: dict[str, int]) -> Plan:
        return Plan(["p", "q", "r"], offsets, 16, 16, 0, "test", "heuristic", 0.0)

    shared_ab = validate(problem, plan_with({"a": 0, "b": 0, "c": 8}))
    assert [e.kind for e in shared_ab] == [ErrorKind.OVERLAP]
    assert validate(problem, plan_with({"a": 0, "b": 8, "c": 0})) == []
