"""Property tests over random small DAGs (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_modelopt.planner import (
    Operation,
    PlannerOptions,
    Problem,
    Tensor,
    check_plan,
    peak_live_bytes,
    plan,
)
from dynamo_modelopt.planner.bounds import combinatorial_lower_bound
from dynamo_modelopt.planner.cpsat import CpSatSolver
from dynamo_modelopt.planner.graph import build_graph
from dynamo_modelopt.planner.gurobi import license_limit
from dynamo_modelopt.planner.heuristics import arena_lower_bound, best_fit, items_for
from dynamo_modelopt.planner.highs import HighsSolver
from dynamo_modelopt.planner.offsets_exact import exact_offsets
from dynamo_modelopt.planner.solvers import OffsetTask

from .helpers import all_orders, brute_force_peak


@st.composite
def problems(draw, max_ops: int = 7) -> Problem:
    n = draw(st.integers(1, max_ops))
    ops = [f"op{i}" for i in range(n)]  # hidden topological order
    tensors: list[Tensor] = []
    sizes = st.integers(0, 24)
    aligns = st.sampled_from([1, 1, 2, 4])
    for k in range(draw(st.integers(0, 2))):
        cons = draw(st.lists(st.sampled_from(ops), max_size=3, unique=True))
        tensors.append(
            Tensor(
                f"in{k}",
                draw(sizes),
                None,
                tuple(cons),
                alignment=draw(aligns),
                placed=draw(st.booleans()),
                live_to_end=draw(st.booleans()),
            )
        )
    for i in range(n):
        for k in range(draw(st.integers(1, 2))):
            later = ops[i + 1 :]
            cons = draw(st.lists(st.sampled_from(later), max_size=3, unique=True)) if later else []
            name = f"t{i}_{k}"
            tensors.append(
                Tensor(
                    name,
                    draw(sizes),
                    ops[i],
                    tuple(cons),
                    alignment=draw(aligns),
                    live_to_end=draw(st.integers(0, 4)) == 0,
                    resident=draw(st.integers(0, 15)) == 0,
                    placed=draw(st.integers(0, 6)) != 0,
                )
            )
            if later and draw(st.integers(0, 5)) == 0:  # a view used later
                user = draw(st.sampled_from(later))
                tensors.append(Tensor(f"{name}_v", 0, ops[i], (user,), alias_of=name))
    precedences = []
    if n > 1:
        for _ in range(draw(st.integers(0, 2))):
            a, b = sorted(
                draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
            )
            precedences.append((ops[a], ops[b]))
    given = draw(st.permutations(ops)) if draw(st.integers(0, 3)) == 0 else ops
    return Problem(
        operations=[Operation(o) for o in given],
        tensors=tensors,
        precedences=precedences,
        name="hyp",
    )


@given(problems())
def test_every_plan_validates_and_is_never_worse(p):
    r = plan(p, PlannerOptions(time_limit=2))
    check_plan(p, r)
    opt = brute_force_peak(p)
    assert opt <= r.peak_bytes <= r.stats["heuristic_peak"]
    if r.stats["given_order_topological"]:
        given = peak_live_bytes(p, p.op_names)
        assert r.peak_bytes <= given
        if r.peak_bytes == given:
            assert r.arena_bytes <= r.stats["given_order_arena"]
    assert r.lower_bound_bytes <= opt
    # tiny instances: the order is always proved optimal
    assert r.stats["order_status"] == "optimal"
    assert r.peak_bytes == r.lower_bound_bytes == opt
    g = build_graph(p)
    items = items_for(g, [g.index[o] for o in r.order])
    assert arena_lower_bound(items) <= r.arena_bytes <= best_fit(items)[1]
    if r.status == "optimal":
        assert r.stats["offset_status"] == "optimal"


@given(problems())
def test_heuristic_only_plans_validate(p):
    r = plan(p, PlannerOptions(solver="heuristic"))
    check_plan(p, r)
    assert r.lower_bound_bytes <= r.peak_bytes
    assert r.solver == "heuristic"


@given(problems())
def test_combinatorial_bound_is_a_lower_bound(p):
    assert combinatorial_lower_bound(build_graph(p)) <= brute_force_peak(p)


@settings(max_examples=15)
@given(problems(max_ops=6))
def test_solvers_agree_on_tiny_instances(p):
    opt = brute_force_peak(p)
    names = ["cpsat"]
    if license_limit()[0]:
        names.append("gurobi")
    if HighsSolver().available()[0]:
        names.append("highs")
    arenas = {}
    for name in names:
        r = plan(p, PlannerOptions(solver=name, time_limit=10, exact_offsets=False))
        check_plan(p, r)
        assert r.peak_bytes == opt, name
        assert r.status == "optimal", name
        arenas[name] = (r.order, r.arena_bytes)
    # for one common order, every offsets method finds the same optimal arena
    g = build_graph(p)
    order = [g.index[o] for o in arenas["cpsat"][0]]
    items = items_for(g, order)
    hint, ub = best_fit(items)
    lb = arena_lower_bound(items)
    ex = exact_offsets(items, 5.0)
    cp = CpSatSolver().solve_offsets(OffsetTask(items, hint, lb, ub, 5.0), PlannerOptions())
    if ex.proved and cp.status == "optimal":
        assert ex.arena == cp.objective
    assert lb <= ex.arena <= ub


@given(problems(max_ops=6))
def test_json_round_trip(p):
    q = Problem.from_json(p.to_json())
    assert q == p
    assert len(all_orders(q)) >= 1
