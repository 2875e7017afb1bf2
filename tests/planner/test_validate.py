from __future__ import annotations

import dataclasses

import pytest

from dynamo_modelopt.planner import (
    ErrorKind,
    InvalidPlanError,
    Plan,
    PlannerOptions,
    Tensor,
    check_plan,
    make_problem,
    plan,
    validate,
)

from .helpers import branchy


def good_plan():
    p = branchy()
    return p, plan(p, PlannerOptions(solver="heuristic"))


def kinds(problem, pl: Plan) -> set[ErrorKind]:
    return {e.kind for e in validate(problem, pl)}


def test_valid_plan_has_no_errors():
    p, pl = good_plan()
    assert validate(p, pl) == []
    check_plan(p, pl)


def test_order_incomplete():
    p, pl = good_plan()
    bad = dataclasses.replace(pl, order=pl.order[:-1])
    assert kinds(p, bad) == {ErrorKind.ORDER_INCOMPLETE}
    dup = dataclasses.replace(pl, order=[*pl.order[:-1], pl.order[0]])
    assert ErrorKind.ORDER_INCOMPLETE in kinds(p, dup)


def test_order_not_topological_and_outside_lifetime():
    p, pl = good_plan()
    order = list(pl.order)
    i, j = order.index("a1"), order.index("a2")
    order[i], order[j] = order[j], order[i]
    found = kinds(p, dataclasses.replace(pl, order=order))
    assert ErrorKind.ORDER_NOT_TOPOLOGICAL in found
    assert ErrorKind.OUTSIDE_LIFETIME in found


def test_precedence_violation_is_not_topological():
    t = Tensor
    p = make_problem(["x", "y"], [t("a", 1, "x", ())], precedences=[("y", "x")])
    pl = Plan(["x", "y"], {"a": 0}, 1, 1, 0, "test", "heuristic", 0.0)
    assert kinds(p, pl) == {ErrorKind.ORDER_NOT_TOPOLOGICAL}


def test_overlap():
    p, pl = good_plan()
    offs = dict(pl.offsets)
    offs["a1o"] = offs["x"]  # x (input consumed by a1, b1) and a1o are live together
    bad = dataclasses.replace(pl, offsets=offs, arena_bytes=10**6)
    assert ErrorKind.OVERLAP in kinds(p, bad)


def test_misaligned():
    t = Tensor
    p = make_problem(["x"], [t("a", 8, "x", (), alignment=4)])
    pl = Plan(["x"], {"a": 2}, 10, 8, 0, "test", "heuristic", 0.0)
    assert kinds(p, pl) == {ErrorKind.MISALIGNED}


def test_arena_exceeded():
    p, pl = good_plan()
    bad = dataclasses.replace(pl, arena_bytes=pl.arena_bytes - 1)
    assert kinds(p, bad) == {ErrorKind.ARENA_EXCEEDED}


def test_missing_and_unknown_offset():
    p, pl = good_plan()
    offs = dict(pl.offsets)
    del offs["a1o"]
    offs["nonsense"] = 0
    found = kinds(p, dataclasses.replace(pl, offsets=offs))
    assert ErrorKind.MISSING_OFFSET in found
    assert ErrorKind.UNKNOWN_OFFSET in found


def test_peak_mismatch_and_bound():
    p, pl = good_plan()
    assert kinds(p, dataclasses.replace(pl, peak_bytes=pl.peak_bytes - 1)) >= {
        ErrorKind.PEAK_MISMATCH
    }
    assert kinds(p, dataclasses.replace(pl, lower_bound_bytes=pl.peak_bytes + 1)) == {
        ErrorKind.BOUND_EXCEEDS_PEAK
    }


def test_check_plan_raises_with_errors():
    p, pl = good_plan()
    with pytest.raises(InvalidPlanError) as info:
        check_plan(p, dataclasses.replace(pl, arena_bytes=0))
    assert info.value.errors
    assert all(e.kind is ErrorKind.ARENA_EXCEEDED for e in info.value.errors)


def test_zero_size_tensors_never_overlap():
    t = Tensor
    p = make_problem(["x"], [t("a", 0, "x", ()), t("b", 4, "x", ())])
    pl = Plan(["x"], {"a": 0, "b": 0}, 4, 4, 0, "test", "heuristic", 0.0)
    assert validate(p, pl) == []
