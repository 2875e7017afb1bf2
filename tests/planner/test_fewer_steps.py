"""MODeL's fewer timesteps than operations (PlannerOptions.fewer_steps)."""

from __future__ import annotations

import pytest

from dynamo_modelopt.planner import PlannerOptions, Tensor, check_plan, make_problem, plan
from dynamo_modelopt.planner.cpsat import CpSatSolver
from dynamo_modelopt.planner.graph import build_graph
from dynamo_modelopt.planner.highs import HighsSolver
from dynamo_modelopt.planner.milp import order_milp
from dynamo_modelopt.planner.problem import Problem
from dynamo_modelopt.planner.solvers import OrderTask, step_windows

from .helpers import branchy, brute_force_peak


def chain_with_side_ops() -> Problem:
    """A chain c0..c4 (the critical path: 5 steps) and four side operations that read the
    input and feed c4 tiny tensors: 9 operations fit in 5 shared steps at no cost."""
    t = Tensor
    side = [t(f"a{k}", 4, f"s{k}", ("c4",)) for k in range(1, 5)]
    return make_problem(
        ["c0", "c1", "c2", "c3", "c4", "s1", "s2", "s3", "s4"],
        [
            t("x", 8, None, ("c0", "s1", "s2", "s3", "s4")),
            t("h0", 40, "c0", ("c1",)),
            t("h1", 60, "c1", ("c2",)),
            t("h2", 30, "c2", ("c3",)),
            t("h3", 50, "c3", ("c4",)),
            t("out", 100, "c4", (), live_to_end=True),
            *side,
        ],
        name="chain_with_side_ops",
    )


def options(fewer: bool, solver: str = "cpsat") -> PlannerOptions:
    return PlannerOptions(solver=solver, fewer_steps=fewer, time_limit=10)


def test_model_shrinks():
    g = build_graph(chain_with_side_ops())
    assert step_windows(g, options(False))[0] == 9
    assert step_windows(g, options(True))[0] == 5  # the critical path
    full = order_milp(g, options(False), 1000, 0)
    fewer = order_milp(g, options(True), 1000, 0, shared=True)
    assert fewer.milp.n_vars < full.milp.n_vars / 2
    assert fewer.milp.n_rows < full.milp.n_rows


@pytest.mark.parametrize("solver", ["cpsat", "highs"])
def test_optimum_unchanged(solver):
    s = CpSatSolver() if solver == "cpsat" else HighsSolver()
    if not s.available()[0]:
        pytest.skip(f"{solver} unavailable")
    p = chain_with_side_ops()
    g = build_graph(p)
    best = brute_force_peak(p)
    for fewer in (False, True):
        res = s.solve_order(OrderTask(g, None, 0, 10_000, 10.0), options(fewer, solver))
        assert res.order is not None and g.is_topological(res.order)
        assert g.peak(res.order) == res.objective == best
    # with shared steps an optimal model proves nothing about the problem
    assert res.status == "feasible" and res.bound == 0


def test_shared_steps_can_miss_the_optimum_but_plan_does_not():
    """branchy's optimum runs one branch after the other; its critical path (3 steps) forces
    the two big intermediates into one step, so the model's best order peaks higher."""
    p = branchy()
    g = build_graph(p)
    res = CpSatSolver().solve_order(OrderTask(g, None, 0, 10_000, 10.0), options(True))
    assert res.order is not None and g.peak(res.order) > 120
    assert res.bound == 0  # no false proof
    result = plan(p, options(True))  # the heuristics still find 120
    check_plan(p, result)
    assert result.peak_bytes == 120 == brute_force_peak(p)
