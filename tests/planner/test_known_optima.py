from __future__ import annotations

import pytest

from dynamo_modelopt.planner import PlannerOptions, check_plan, plan
from dynamo_modelopt.planner.graph import build_graph
from dynamo_modelopt.planner.gurobi import license_limit
from dynamo_modelopt.planner.heuristics import best_fit_offsets, best_order
from dynamo_modelopt.planner.highs import HighsSolver

from .helpers import branchy, brute_force_peak, fragmenting

SOLVERS = ["cpsat", "gurobi", "highs"]


def usable(name: str) -> bool:
    if name == "gurobi":
        return license_limit()[0]
    if name == "highs":
        return HighsSolver().available()[0]
    return True


@pytest.mark.parametrize("solver", SOLVERS)
def test_reordering_beats_program_order(solver):
    if not usable(solver):
        pytest.skip(f"{solver} unusable here")
    p = branchy()
    result = plan(p, PlannerOptions(solver=solver, time_limit=10))
    check_plan(p, result)
    assert result.stats["given_order_peak"] == 210
    assert result.peak_bytes == 120 == brute_force_peak(p)
    assert result.lower_bound_bytes == 120
    assert result.status == "optimal"
    assert result.arena_bytes == 120


def test_heuristic_finds_the_branchy_order():
    assert (
        build_graph(branchy()).peak(
            [build_graph(branchy()).index[o] for o in best_order(branchy())]
        )
        == 120
    )


@pytest.mark.parametrize(
    "options",
    [
        PlannerOptions(solver="cpsat"),
        PlannerOptions(solver="cpsat", exact_offsets=False),
        PlannerOptions(solver="highs", exact_offsets=False),
        PlannerOptions(solver="gurobi", exact_offsets=False),
    ],
    ids=["exact", "cpsat", "highs", "gurobi"],
)
def test_exact_offsets_beat_best_fit(options):
    if not usable(options.solver):
        pytest.skip(f"{options.solver} unusable here")
    p = fragmenting()
    _, bf_arena = best_fit_offsets(p, p.op_names)
    assert bf_arena == 8
    result = plan(p, options)
    check_plan(p, result)
    assert result.order == p.op_names
    assert result.peak_bytes == 7
    assert result.arena_bytes == 7
    assert result.status == "optimal"


def test_heuristic_solver_keeps_best_fit():
    p = fragmenting()
    result = plan(p, PlannerOptions(solver="heuristic"))
    check_plan(p, result)
    assert result.arena_bytes == 8
    assert result.status == "heuristic"
    assert result.solver == "heuristic"
