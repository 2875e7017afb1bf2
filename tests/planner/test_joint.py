"""The joint (order + addresses) models of every solver, called directly."""

from __future__ import annotations

import pytest

from dynamo_modelopt.planner import PlannerOptions, plan
from dynamo_modelopt.planner.graph import build_graph
from dynamo_modelopt.planner.heuristics import best_fit, best_heuristic, items_for
from dynamo_modelopt.planner.intervals import overlaps
from dynamo_modelopt.planner.solve import get_solver
from dynamo_modelopt.planner.solvers import JointTask
from dynamo_modelopt.planner.synthetic import random_dag

from .helpers import branchy, brute_force_peak, fragmenting, small_unaligned

CASES = [
    branchy,
    fragmenting,
    lambda: random_dag(6, 3, alignment=2, sizes=(2, 4, 6)),
    lambda: random_dag(7, 11, alignment=2, sizes=(2, 4, 6)),
    small_unaligned,  # sizes below their alignment: the arena holds them padded
]


@pytest.mark.parametrize("solver", ["cpsat", "gurobi", "highs"])
@pytest.mark.parametrize(
    "make", CASES, ids=["branchy", "fragmenting", "rand6", "rand7", "unaligned"]
)
def test_joint_model_reaches_the_two_stage_optimum(solver, make):
    p = make()
    g = build_graph(p)
    s = get_solver(solver)
    ok, why = s.available()
    if not ok:
        pytest.skip(why)
    _, order, peak, _ = best_heuristic(g)
    offsets, arena = best_fit(items_for(g, order))
    options = PlannerOptions(solver=solver, time_limit=20)
    task = JointTask(g, order, offsets, 0, peak, arena, 20.0)
    why = s.fits(task, options)
    if why:
        pytest.skip(why)
    res = s.solve_joint(task, options)
    assert res.status == "optimal", res.reason
    assert res.order is not None and g.is_topological(res.order)
    assert g.peak(res.order) == brute_force_peak(p)
    two = plan(p, PlannerOptions(solver="cpsat", time_limit=20))
    assert res.objective is not None and res.objective <= two.arena_bytes
    # the offsets are a valid placement for the joint order
    items = items_for(g, res.order)
    for i, a in items.items():
        for j, b in items.items():
            if i < j and a.size and b.size and overlaps(a, b):
                oi, oj = res.offsets[i], res.offsets[j]
                assert oi + a.size <= oj or oj + b.size <= oi
