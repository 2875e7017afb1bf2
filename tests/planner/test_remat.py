"""The recomputation model: exact against brute force, within budget, checked by its validator."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo_modelopt.planner.remat import (
    Hold,
    RecomputeOption,
    RematErrorKind,
    RematPlan,
    RematProblem,
    greedy,
    lower_bound,
    peak,
    profile,
    solve_cpsat,
    solve_remat,
    validate_remat,
)


def _layers() -> RematProblem:
    """Three saved activations of a 3-layer network, read in reverse order by the backward;
    gradients build up at the end (base). Recomputing the first layer's activation (read last)
    is what lowers the peak; the last layer's is read at once, so recomputing it gains nothing."""
    return RematProblem(
        options=(
            RecomputeOption("a1", size=40, cost=1.0, saved_live=(0, 8), recomputed_live=(6, 8)),
            RecomputeOption("a2", size=40, cost=1.0, saved_live=(0, 6), recomputed_live=(4, 6)),
            RecomputeOption("a3", size=40, cost=1.0, saved_live=(0, 3), recomputed_live=(0, 3)),
        ),
        base=(10, 10, 10, 20, 20, 30, 30, 30),
        max_cost=1.0,
    )


def test_profile_and_peak_follow_the_decisions() -> None:
    problem = _layers()
    assert profile(problem, set()) == [130, 130, 130, 100, 100, 110, 70, 70]
    assert peak(problem, set()) == 130
    assert profile(problem, {"a1"}) == [90, 90, 90, 60, 60, 70, 70, 70]


def test_solver_recomputes_what_is_live_at_the_peak_within_budget() -> None:
    plan = solve_cpsat(_layers())
    assert plan.recompute == frozenset({"a1"})
    assert plan.peak_bytes == 90
    assert plan.status == "optimal"
    assert plan.lower_bound == 90
    assert validate_remat(_layers(), plan) == []


def test_useless_recomputation_is_not_bought() -> None:
    """a3 is read from the boundary on: recomputing it costs time for no lower peak."""
    problem = RematProblem(options=(_layers().options[2],), base=(10, 10, 10), max_cost=5.0)
    assert solve_cpsat(problem).recompute == frozenset()
    assert greedy(problem) == frozenset()


def test_zero_budget_recomputes_nothing() -> None:
    problem = RematProblem(_layers().options, _layers().base, max_cost=0.0)
    plan = solve_remat(problem)
    assert plan.recompute == frozenset()
    assert plan.peak_bytes == 130


def test_a_recomputation_keeps_what_it_reads_live_until_it_runs() -> None:
    """`late` is recomputed at step 6 from `early` (read last at step 1) and from the hold `h`
    (in the base up to step 2): both stay live up to step 6. Recomputing `early` as well moves
    its recomputation to step 6, the first step needing it, and keeps it live from step 1."""
    late = RecomputeOption("late", 10, 1.0, (0, 8), (6, 8), reads=("early", "h"))
    early = RecomputeOption("early", 100, 1.0, (0, 2), (1, 2))
    problem = RematProblem(
        (late, early), base=(1, 1, 1, 0, 0, 0, 0, 0), max_cost=5.0, holds=(Hold("h", 1, 3),)
    )
    assert profile(problem, set()) == [111, 111, 11, 10, 10, 10, 10, 10]
    assert profile(problem, {"late"}) == [101, 101, 101, 101, 101, 101, 111, 10]
    assert profile(problem, {"late", "early"}) == [1, 101, 101, 101, 101, 101, 111, 10]
    assert profile(problem, {"early"}) == [11, 111, 11, 10, 10, 10, 10, 10]
    # Read as if `late` were recomputed from nothing, it would lower the peak to 101; it
    # does not, so nothing is bought.
    plan = solve_cpsat(problem)
    assert (plan.recompute, plan.peak_bytes) == (frozenset(), 111)
    assert validate_remat(problem, plan) == []


@st.composite
def problems(draw: st.DrawFn) -> RematProblem:
    steps = draw(st.integers(1, 8))
    base = tuple(draw(st.lists(st.integers(0, 50), min_size=steps, max_size=steps)))
    holds = tuple(
        Hold(f"h{i}", size=draw(st.integers(1, 30)), end=draw(st.integers(1, steps)))
        for i in range(draw(st.integers(0, 2)))
    )
    options: list[RecomputeOption] = []
    for i in range(draw(st.integers(0, 6))):
        last = draw(st.integers(0, steps - 1))
        first = draw(st.integers(0, last))
        sources = [o.name for o in options] + [h.name for h in holds]
        reads = draw(st.lists(st.sampled_from(sources), unique=True)) if sources else []
        options.append(
            RecomputeOption(
                f"o{i}",
                size=draw(st.integers(1, 60)),
                cost=float(draw(st.integers(0, 5))),
                saved_live=(0, last + 1),
                recomputed_live=(first, last + 1),
                reads=tuple(reads),
            )
        )
    return RematProblem(tuple(options), base, max_cost=float(draw(st.integers(0, 10))), holds=holds)


def _brute_force(problem: RematProblem) -> int:
    names = [o.name for o in problem.options]
    best = peak(problem, set())
    for k in range(1, len(names) + 1):
        for subset in itertools.combinations(names, k):
            chosen = set(subset)
            if sum(o.cost for o in problem.options if o.name in chosen) <= problem.max_cost:
                best = min(best, peak(problem, chosen))
    return best


@settings(max_examples=100, deadline=None)
@given(problems())
def test_cpsat_is_optimal_and_greedy_is_feasible(problem: RematProblem) -> None:
    plan = solve_cpsat(problem, time_limit=5.0)
    assert validate_remat(problem, plan) == []
    assert plan.peak_bytes == _brute_force(problem)
    assert lower_bound(problem) <= plan.peak_bytes
    chosen = greedy(problem)
    assert sum(o.cost for o in problem.options if o.name in chosen) <= problem.max_cost
    assert peak(problem, chosen) >= plan.peak_bytes


@pytest.mark.parametrize(
    ("plan", "kind"),
    [
        (RematPlan(frozenset({"zz"}), 130, 0.0, 0, "x", "x"), RematErrorKind.UNKNOWN_OPTION),
        (RematPlan(frozenset({"a1", "a2"}), 60, 2.0, 0, "x", "x"), RematErrorKind.OVER_BUDGET),
        (RematPlan(frozenset({"a1"}), 80, 1.0, 0, "x", "x"), RematErrorKind.WRONG_PEAK),
        (RematPlan(frozenset({"a1"}), 90, 1.0, 95, "x", "x"), RematErrorKind.BOUND_ABOVE_PEAK),
    ],
)
def test_validator_names_each_error(plan: RematPlan, kind: RematErrorKind) -> None:
    assert kind in {e.kind for e in validate_remat(_layers(), plan)}
