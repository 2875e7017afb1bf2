"""Which activations to recompute in the backward: a peak-aware choice under a run-time budget.

The forward saves tensors for the backward; each one stays live from the boundary until its
last backward use. Recomputing one instead costs its run time again and keeps it live only
from its first to its last backward use. Inductor's min-cut partitioner trades these with a
knapsack under a *memory* budget (saved bytes as a fraction of the default), which is blind to
*when* a tensor is live: a tensor whose last use comes early in the backward does not meet a
peak that builds up later, from the parameters' gradients.

This model, after the rematerialization ILPs of Checkmate (Jain et al., MLSys 2020) and MODeL
(Steiner et al., ICML 2023) but with the backward's order held fixed, decides for each candidate
tensor whether to recompute it, so that the peak over the backward's steps is lowest while the
recomputation's run time stays within a budget: an exact 0-1 program, solved with CP-SAT from a
greedy start. The problem is torch-free: `capture/joint.py` builds it from a joint graph.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from .intervals import LiveRange

if TYPE_CHECKING:
    from ortools.sat.python import cp_model


@dataclass(frozen=True)
class RecomputeOption:
    """A tensor the backward needs, that it could either receive saved or recompute.

    `saved_live`: the live range `[start, end)` it occupies memory over if saved (from the
    boundary, step 0, through its last backward use); `recomputed_live`: the range it occupies
    if recomputed (around its backward uses; its recomputation runs at its start). Plain
    `(start, end)` tuples are accepted. `cost`: run time of recomputing it, in the unit of
    `RematProblem.max_cost`.
    """

    name: str
    size: int
    cost: float
    saved_live: LiveRange
    recomputed_live: LiveRange
    reads: tuple[str, ...] = ()  # options or holds its recomputation reads

    def __post_init__(self) -> None:
        object.__setattr__(self, "saved_live", LiveRange(*self.saved_live))
        object.__setattr__(self, "recomputed_live", LiveRange(*self.recomputed_live))


@dataclass(frozen=True)
class Hold:
    """A saved tensor that is not an option: counted in the base before step `end` (its live
    range is `[0, end)`), and kept live through the first step of any recomputation that
    reads it."""

    name: str
    size: int
    end: int


@dataclass(frozen=True)
class RematProblem:
    """Options, the bytes live at each backward step whatever is decided, and the budget.

    A recomputation runs at its option's first recomputed step and needs what it `reads` then:
    a saved tensor it reads stays live until that step, one recomputed itself is recomputed by
    then. Without reads, each option's liveness depends on its own decision only."""

    options: tuple[RecomputeOption, ...]
    base: tuple[int, ...]
    max_cost: float
    holds: tuple[Hold, ...] = ()

    @property
    def steps(self) -> int:
        return len(self.base)


@dataclass(frozen=True)
class RematPlan:
    """What to recompute, the peak over the backward's steps it gives, and at what cost."""

    recompute: frozenset[str]
    peak_bytes: int
    cost: float
    lower_bound: int
    solver: str
    status: str
    solve_seconds: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)


class RematErrorKind(Enum):
    UNKNOWN_OPTION = "unknown option"
    OVER_BUDGET = "recomputation cost over budget"
    WRONG_PEAK = "stated peak differs from the profile"
    BOUND_ABOVE_PEAK = "lower bound above the peak"


@dataclass(frozen=True)
class RematError:
    kind: RematErrorKind
    message: str


def _needed_at(problem: RematProblem, recompute: frozenset[str] | set[str]) -> dict[str, list[int]]:
    """For each tensor read by a chosen recomputation, the steps those recomputations run."""
    needed: dict[str, list[int]] = {}
    for option in problem.options:
        if option.name in recompute:
            for source in option.reads:
                needed.setdefault(source, []).append(option.recomputed_live.start)
    return needed


def _span(
    problem_item: RecomputeOption | Hold, recomputed: bool, needed: list[int]
) -> LiveRange | None:
    """Steps an option (or the extension of a hold) occupies, given its decision and the
    first steps of the chosen recomputations reading it; None for no steps."""
    if isinstance(problem_item, Hold):
        end = max(needed, default=problem_item.end - 1) + 1
        return LiveRange(problem_item.end, end) if end > problem_item.end else None
    interval = problem_item.recomputed_live if recomputed else problem_item.saved_live
    return interval.hull(needed)


def _shift(live: np.ndarray, span: LiveRange | None, size: int) -> None:
    if span is not None:
        first, end = span.clipped(len(live))
        if first < end:
            live[first:end] += size


def _profile_array(problem: RematProblem, recompute: frozenset[str] | set[str]) -> np.ndarray:
    live = np.array(problem.base, dtype=np.int64)
    needed = _needed_at(problem, recompute)
    for option in problem.options:
        span = _span(option, option.name in recompute, needed.get(option.name, []))
        _shift(live, span, option.size)
    for hold in problem.holds:  # the base has it before `end`
        _shift(live, _span(hold, False, needed.get(hold.name, [])), hold.size)
    return live


def _top(live: np.ndarray) -> int:
    return int(live.max()) if len(live) else 0


def profile(problem: RematProblem, recompute: frozenset[str] | set[str]) -> list[int]:
    """Bytes live at each backward step when the tensors named in `recompute` are recomputed."""
    return [int(v) for v in _profile_array(problem, recompute)]


def peak(problem: RematProblem, recompute: frozenset[str] | set[str]) -> int:
    return _top(_profile_array(problem, recompute))


def cost(problem: RematProblem, recompute: frozenset[str] | set[str]) -> float:
    return sum(o.cost for o in problem.options if o.name in recompute)


def lower_bound(problem: RematProblem) -> int:
    """No plan goes below what is live whatever is decided: the base plus, at each step, the
    options live there both when saved and when recomputed."""
    best = 0
    for step in range(problem.steps):
        forced = sum(
            o.size
            for o in problem.options
            if o.saved_live.covers(step) and o.recomputed_live.covers(step)
        )
        best = max(best, problem.base[step] + forced)
    return best


def _segments(problem: RematProblem) -> list[LiveRange]:
    """Maximal runs of steps `[start, end)` over which no option's liveness changes.

    The peak over a run is reached where the base is highest, so one constraint per run
    suffices."""
    bounds: list[int] = [0, problem.steps]
    for option in problem.options:
        for live in (option.saved_live, option.recomputed_live):
            bounds += [live.start, live.end]
        if option.reads:  # what it reads is live through its first step
            bounds.append(option.recomputed_live.start + 1)
    bounds += [hold.end for hold in problem.holds]
    cuts = {max(0, min(b, problem.steps)) for b in bounds}
    points = sorted(cuts)
    return [LiveRange(a, b) for a, b in itertools.pairwise(points) if b > a]


def greedy(problem: RematProblem) -> frozenset[str]:
    """Recompute, while the budget allows, the option that lowers the peak most per unit cost.

    Deterministic: ties go to the larger tensor, then to the name. Each trial changes only the
    option's own span and those of what it reads, so it is scored on the current profile."""
    items: dict[str, RecomputeOption | Hold] = {h.name: h for h in problem.holds}
    items.update((o.name, o) for o in problem.options)
    chosen: set[str] = set()
    spent = 0.0
    live = _profile_array(problem, chosen)
    current = _top(live)
    while True:
        needed = _needed_at(problem, chosen)
        best: tuple[float, int, str] | None = None
        for option in problem.options:
            if option.name in chosen or spent + option.cost > problem.max_cost:
                continue
            trial = live.copy()
            for name in {option.name, *option.reads} & items.keys():
                points = needed.get(name, [])
                before = _span(items[name], name in chosen, points)
                if name in option.reads:
                    points = [*points, option.recomputed_live.start]
                after = _span(items[name], name in chosen or name == option.name, points)
                _shift(trial, before, -items[name].size)
                _shift(trial, after, items[name].size)
            gain = current - _top(trial)
            if gain <= 0:
                continue
            key = (-gain / max(option.cost, 1e-12), -option.size, option.name)
            if best is None or key < best:
                best = key
        if best is None:
            return frozenset(chosen)
        chosen.add(best[2])
        spent = cost(problem, chosen)
        live = _profile_array(problem, chosen)
        current = _top(live)


def _cost_units(problem: RematProblem, resolution: int = 10_000) -> list[int]:
    """Costs as integers on a scale where the budget is `resolution`, rounded up so that a
    plan within the scaled budget is within the real one."""
    if problem.max_cost <= 0:
        return [0 if o.cost <= 0 else resolution + 1 for o in problem.options]
    return [-int(-o.cost * resolution // problem.max_cost) for o in problem.options]


def solve_cpsat(
    problem: RematProblem,
    time_limit: float = 2.0,
    seed: int = 0,
    threads: int = 1,
    use_hint: bool = True,
) -> RematPlan:
    """The exact 0-1 program: minimise the peak, then the cost, within the budget."""
    from ortools.sat.python import cp_model

    started = time.perf_counter()
    start = greedy(problem) if use_hint else frozenset()
    resolution = 10_000
    units = _cost_units(problem, resolution)
    model = cp_model.CpModel()
    recompute = [model.NewBoolVar(f"r_{i}") for i in range(len(problem.options))]
    top = max(problem.base, default=0) + sum(o.size for o in problem.options)
    peak_var = model.NewIntVar(lower_bound(problem), max(top, lower_bound(problem)), "peak")
    spent = sum(u * r for u, r in zip(units, recompute, strict=True))
    model.Add(spent <= resolution)
    readers: dict[str, list[tuple[int, cp_model.IntVar]]] = {}
    for option, r in zip(problem.options, recompute, strict=True):
        for source in option.reads:
            readers.setdefault(source, []).append((option.recomputed_live.start, r))
    made: list[tuple[cp_model.IntVar, RecomputeOption | Hold, int]] = []  # liveness variables
    for first, end in _segments(problem):
        terms = []
        constant = max(problem.base[first:end])
        for option, r in zip(problem.options, recompute, strict=True):
            fixed, term = _option_terms(model, option, r, readers.get(option.name, []), first, made)
            constant += fixed
            if term is not None:
                terms.append(term)
        for hold in problem.holds:
            late = [r for start, r in readers.get(hold.name, []) if hold.end <= first <= start]
            if late:
                live = model.NewBoolVar(f"held_{hold.name}_{first}")
                made.append((live, hold, first))
                for r in late:
                    model.Add(live >= r)
                terms.append(hold.size * live)
        model.Add(peak_var >= constant + sum(terms))
    # Lexicographic in one objective: a byte of peak outweighs the whole budget.
    model.Minimize(peak_var * (resolution + 1) + spent)
    if use_hint:  # a complete hint: CP-SAT starts from a solution
        for option, r in zip(problem.options, recompute, strict=True):
            model.AddHint(r, option.name in start)
        needed = _needed_at(problem, start)
        for live, item, step in made:
            span = _span(item, item.name in start, needed.get(item.name, []))
            model.AddHint(live, span is not None and span.covers(step))
        model.AddHint(peak_var, peak(problem, start))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.05, time_limit)
    solver.parameters.num_workers = max(1, threads)
    solver.parameters.random_seed = seed
    code = solver.Solve(model)
    status = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible"}.get(code)
    if status is None:
        return _plan(problem, start, "greedy", "solver_failed", started)
    chosen = frozenset(
        o.name for o, r in zip(problem.options, recompute, strict=True) if solver.Value(r)
    )
    # Never worse than the greedy start (a time-limited search may stop above it).
    if peak(problem, start) < peak(problem, chosen):
        return _plan(problem, start, "greedy", status, started)
    bound = max(lower_bound(problem), int(solver.BestObjectiveBound() // (resolution + 1)))
    return _plan(problem, chosen, "cpsat", status, started, bound)


def _option_terms(
    model: cp_model.CpModel,
    option: RecomputeOption,
    recomputed: cp_model.IntVar,
    readers: list[tuple[int, cp_model.IntVar]],
    step: int,
    made: list[tuple[cp_model.IntVar, RecomputeOption | Hold, int]],
) -> tuple[int, cp_model.LinearExpr | None]:
    """The option's bytes at `step`: a constant part and a term in the decisions.

    Where chosen recomputations read it, it is live over the hull of its own interval and
    their first steps. The hull of several readers is the union of the hulls with each one, so
    a lower bound on a `live` variable per reader is exact (the objective pushes `live` down
    to it). Readers whose hull adds nothing at this step are left out, and without any the
    term is linear in the option's own decision. Variables made are added to `made`."""
    if_saved = option.saved_live.covers(step)
    if_recomputed = option.recomputed_live.covers(step)
    if if_saved and if_recomputed:
        return option.size, None
    extending = []
    for start, reader in readers:
        by_saved = option.saved_live.hull([start]).covers(step)
        by_recomputed = option.recomputed_live.hull([start]).covers(step)
        if (by_saved and not if_saved) or (by_recomputed and not if_recomputed):
            extending.append((reader, by_saved, by_recomputed))
    if not extending:
        if if_saved:
            return option.size, -option.size * recomputed
        return 0, (option.size * recomputed if if_recomputed else None)
    live = model.NewBoolVar(f"live_{option.name}_{step}")
    made.append((live, option, step))
    if if_saved:
        model.Add(live >= 1 - recomputed)
    if if_recomputed:
        model.Add(live >= recomputed)
    for reader, by_saved, by_recomputed in extending:
        if by_saved and by_recomputed:
            model.Add(live >= reader)
        elif by_saved:
            model.Add(live >= reader - recomputed)
        else:
            model.Add(live >= reader + recomputed - 1)
    return 0, option.size * live


def _plan(
    problem: RematProblem,
    recompute: frozenset[str],
    solver: str,
    status: str,
    started: float,
    bound: int | None = None,
) -> RematPlan:
    result_peak = peak(problem, recompute)
    return RematPlan(
        recompute=recompute,
        peak_bytes=result_peak,
        cost=cost(problem, recompute),
        lower_bound=min(result_peak, lower_bound(problem) if bound is None else bound),
        solver=solver,
        status=status,
        solve_seconds=time.perf_counter() - started,
        stats={"options": len(problem.options), "steps": problem.steps},
    )


def solve_remat(
    problem: RematProblem, time_limit: float = 2.0, seed: int = 0, threads: int = 1
) -> RematPlan:
    """CP-SAT where OR-Tools is there, else the greedy plan; never raises on a solver failure."""
    started = time.perf_counter()
    try:
        return solve_cpsat(problem, time_limit=time_limit, seed=seed, threads=threads)
    except ImportError:
        return _plan(problem, greedy(problem), "greedy", "no_solver", started)


def validate_remat(problem: RematProblem, plan: RematPlan) -> list[RematError]:
    """Named errors of a plan against its problem; empty when the plan is sound."""
    errors = []
    names = {o.name for o in problem.options}
    unknown = sorted(plan.recompute - names)
    if unknown:
        errors.append(RematError(RematErrorKind.UNKNOWN_OPTION, f"not options: {unknown}"))
    spent = cost(problem, plan.recompute)
    if spent > problem.max_cost * (1 + 1e-9):
        errors.append(
            RematError(RematErrorKind.OVER_BUDGET, f"cost {spent:g} > budget {problem.max_cost:g}")
        )
    actual = peak(problem, plan.recompute)
    if actual != plan.peak_bytes:
        errors.append(
            RematError(RematErrorKind.WRONG_PEAK, f"stated {plan.peak_bytes}, profile {actual}")
        )
    if plan.lower_bound > actual:
        errors.append(
            RematError(RematErrorKind.BOUND_ABOVE_PEAK, f"bound {plan.lower_bound} > {actual}")
        )
    return errors
