from __future__ import annotations

import dataclasses

import pytest

from dynamo_modelopt.planner import (
    Operation,
    PlannerOptions,
    Problem,
    Tensor,
    check_plan,
    make_problem,
    plan,
)
from dynamo_modelopt.planner import cpsat as cpsat_module
from dynamo_modelopt.planner.bounds import combinatorial_lower_bound
from dynamo_modelopt.planner.decompose import blocks, cut_operations
from dynamo_modelopt.planner.graph import build_graph
from dynamo_modelopt.planner.synthetic import chain, diamonds, fwbw, random_dag, unet

from .helpers import branchy, brute_force_peak

SWITCHES = [
    "use_windows",
    "use_decomposition",
    "prune_pairs",
    "scale_sizes",
    "symmetry_breaking",
    "warm_start",
    "exact_offsets",
]

STAT_KEYS = {
    "given_order_peak",
    "heuristic_peak",
    "order_status",
    "offset_status",
    "heuristic_seconds",
    "order_seconds",
    "offset_seconds",
}


def test_stats_and_fields():
    p = branchy()
    r = plan(p)
    assert STAT_KEYS <= set(r.stats)
    assert r.solver in ("cpsat", "gurobi")
    assert r.gap == 0.0
    assert r.solve_seconds >= 0


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_off_still_valid_and_optimal_on_small(switch):
    p = random_dag(9, seed=3, alignment=4, sizes=(4, 8, 12, 16))
    options = dataclasses.replace(PlannerOptions(time_limit=10), **{switch: False})
    r = plan(p, options)
    check_plan(p, r)
    assert r.peak_bytes == brute_force_peak(p)


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_off_on_a_medium_graph(switch):
    p = diamonds(6, 3, seed=1)
    options = dataclasses.replace(PlannerOptions(time_limit=5), **{switch: False})
    r = plan(p, options)
    check_plan(p, r)
    assert r.peak_bytes <= r.stats["given_order_peak"]
    assert r.lower_bound_bytes <= r.peak_bytes


def test_joint_mode():
    p = random_dag(8, seed=11, alignment=2, sizes=(2, 4, 6))
    r = plan(p, PlannerOptions(plan_mode="joint", solver="cpsat", time_limit=10))
    check_plan(p, r)
    assert r.peak_bytes == brute_force_peak(p)
    two = plan(p, PlannerOptions(solver="cpsat", time_limit=10))
    assert (r.peak_bytes, r.arena_bytes) <= (two.peak_bytes, two.arena_bytes)


def test_joint_mode_falls_back_for_milp_solvers():
    p = branchy()
    r = plan(p, PlannerOptions(plan_mode="joint", solver="highs", time_limit=5))
    check_plan(p, r)
    assert r.peak_bytes == 120


def test_deterministic_for_a_seed():
    p = diamonds(8, 4, seed=5)
    opts = PlannerOptions(solver="cpsat", time_limit=5, threads=2, seed=7)
    a, b = plan(p, opts), plan(p, opts)
    assert (a.order, a.offsets, a.peak_bytes) == (b.order, b.offsets, b.peak_bytes)


def test_solver_failure_falls_back(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(cpsat_module.CpSatSolver, "solve_order", boom)
    monkeypatch.setattr(cpsat_module.CpSatSolver, "solve_offsets", boom)
    p = random_dag(12, seed=9, sizes=(3, 5, 7, 11))  # heuristic leaves gaps on both stages
    r = plan(p, PlannerOptions(solver="cpsat", exact_offsets=False, use_decomposition=False))
    check_plan(p, r)
    assert r.peak_bytes <= r.stats["given_order_peak"]
    assert any("solver exploded" in n for n in r.stats["notes"])
    assert r.status == "heuristic"


def test_named_solver_substitution_is_recorded(monkeypatch):
    from dynamo_modelopt.planner import gurobi

    monkeypatch.setattr(gurobi, "license_limit", lambda: (False, None, "test: no license"))
    p = random_dag(12, seed=9, sizes=(3, 5, 7, 11))  # heuristic leaves gaps on both stages
    options = PlannerOptions(solver="gurobi", exact_offsets=False, use_decomposition=False)
    r = plan(p, options)
    check_plan(p, r)
    assert r.solver == "cpsat"
    assert r.stats["substituted"] == ["gurobi unusable: test: no license"]
    assert plan(p, dataclasses.replace(options, solver="cpsat")).stats["substituted"] == []


def test_cycle_is_an_invalid_problem():
    t = Tensor
    p = make_problem(["x", "y"], [t("a", 1, "x", ("y",)), t("b", 1, "y", ("x",))])
    with pytest.raises(ValueError):
        plan(p)


def test_empty_problem():
    p = Problem(operations=[], tensors=[])
    r = plan(p)
    check_plan(p, r)
    assert (r.peak_bytes, r.arena_bytes, r.order) == (0, 0, [])


def test_unplaced_tensors_count_in_peak_not_arena():
    t = Tensor
    p = make_problem(
        ["x"], [t("w", 100, None, ("x",), placed=False), t("y", 10, "x", (), live_to_end=True)]
    )
    r = plan(p)
    check_plan(p, r)
    assert r.peak_bytes == 110
    assert r.arena_bytes == 10
    assert set(r.offsets) == {"y"}


def test_alignment_is_respected():
    t = Tensor
    p = make_problem(
        ["x", "y"],
        [t("a", 3, "x", ("y",), alignment=8), t("b", 5, "x", ("y",), alignment=16)],
    )
    r = plan(p)
    check_plan(p, r)
    assert r.offsets["a"] % 8 == 0 and r.offsets["b"] % 16 == 0


def test_decomposition_is_exact_on_a_chain_of_diamonds():
    p = diamonds(5, 3, seed=4)
    g = build_graph(p)
    assert len(cut_operations(g)) >= 5
    parts = blocks(g, min_ops=1)
    assert len(parts) > 1
    order = list(range(g.n))
    whole = g.profile(order)
    # the block instances reproduce the live bytes of the whole graph, step by step
    pieces = [x for b in parts for x in b.graph.profile(b.to_local(order))]
    assert pieces == whole
    with_d = plan(p, PlannerOptions(solver="cpsat", time_limit=10))
    without = plan(p, PlannerOptions(solver="cpsat", time_limit=10, use_decomposition=False))
    assert with_d.status == without.status == "optimal"
    assert with_d.peak_bytes == without.peak_bytes


def test_combinatorial_bound_is_valid_and_useful():
    p = branchy()
    lb = combinatorial_lower_bound(build_graph(p))
    assert 0 < lb <= brute_force_peak(p)


@pytest.mark.parametrize(
    "make",
    [lambda: chain(30, 1), lambda: unet(3, 4, 2), lambda: fwbw(3, 3)],
    ids=["chain", "unet", "fwbw"],
)
def test_synthetic_shapes(make):
    p = make()
    r = plan(p, PlannerOptions(time_limit=5))
    check_plan(p, r)
    assert r.peak_bytes <= r.stats["given_order_peak"]
    assert r.lower_bound_bytes <= r.peak_bytes


def test_given_order_not_topological_is_still_planned():
    t = Tensor
    p = Problem(
        operations=[Operation("y"), Operation("x")],
        tensors=[t("a", 4, "x", ("y",)), t("b", 2, "y", (), live_to_end=True)],
    )
    r = plan(p)
    check_plan(p, r)
    assert r.order == ["x", "y"]
    assert r.stats["given_order_peak"] is None
