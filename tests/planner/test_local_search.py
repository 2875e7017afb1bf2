"""Local search on orders (PlannerOptions.local_search, heuristics.improve_order)."""

from __future__ import annotations

from dynamo_modelopt.planner import PlannerOptions, Tensor, check_plan, make_problem, plan
from dynamo_modelopt.planner.graph import build_graph
from dynamo_modelopt.planner.heuristics import heuristic_orders, improve_order
from dynamo_modelopt.planner.problem import Problem

from .helpers import branchy, brute_force_peak


def weight_gradients() -> Problem:
    """GPT-2-XL backward in small: two weight-gradient sinks w1, w2 turn small inputs into
    big outputs kept to the end; the last operation c2 holds a big zeros buffer z and its big
    output. Every list schedule runs w1, w2 early (they free their inputs) and peaks at c2
    with 270; deferring both past c2 peaks at 240."""
    t = Tensor
    return make_problem(
        ["z0", "c0", "w1", "w2", "c1", "c2"],
        [
            t("x1", 10, None, ("w1",)),
            t("x2", 10, None, ("w2",)),
            t("a", 10, None, ("c0",)),
            t("z", 100, "z0", ("c2",)),
            t("h", 10, "c0", ("c1", "w1", "w2")),
            t("e", 10, "c1", ("c2",)),
            t("g1", 30, "w1", (), live_to_end=True),
            t("g2", 30, "w2", (), live_to_end=True),
            t("out", 100, "c2", (), live_to_end=True),
        ],
        name="weight_gradients",
    )


def test_local_search_reaches_the_optimum_list_schedules_miss():
    p = weight_gradients()
    g = build_graph(p)
    assert brute_force_peak(p) == 240
    for rule, order in heuristic_orders(g).items():
        assert g.peak(order) == 270, rule
        better = improve_order(g, order, 5.0)
        assert g.is_topological(better)
        assert g.peak(better) == 240, rule


def test_plan_uses_local_search_as_a_switch():
    p = weight_gradients()
    on = plan(p, PlannerOptions(solver="heuristic"))
    off = plan(p, PlannerOptions(solver="heuristic", local_search=False))
    check_plan(p, on)
    check_plan(p, off)
    assert (on.peak_bytes, off.peak_bytes) == (240, 270)
    assert on.stats["heuristic_rule"] == "local"


def test_local_optimum_is_kept():
    p = branchy()
    g = build_graph(p)
    best = [g.index[o] for o in ["a1", "a2", "b1", "b2", "join"]]
    assert improve_order(g, best, 5.0) == best
