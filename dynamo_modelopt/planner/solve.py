"""`plan`: heuristics, then exact solvers warm-started from them, then validation.

Two stages by default (MODeL observed, and our measurements agree, that ordering for the peak
and then placing for the arena reaches the joint optimum in practice): (1) order minimising
the peak live bytes, split exactly at cut operations; (2) offsets minimising the arena for
that order, by the exact canonical search and/or a solver. `plan_mode="joint"` solves both at
once with CP-SAT. Whatever happens in the solvers, the returned plan is valid and no worse
(peak, then arena) than the given order with best-fit offsets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .bounds import combinatorial_lower_bound
from .cpsat import CpSatSolver
from .decompose import Block, blocks
from .graph import Graph, build_graph
from .gurobi import GurobiSolver
from .heuristics import (
    Item,
    arena_lower_bound,
    best_fit,
    heuristic_orders,
    improve_order,
    items_for,
    placement_ok,
)
from .highs import HighsSolver
from .offsets_exact import ExactResult, exact_offsets
from .options import PlannerOptions
from .problem import Plan, Problem
from .solvers import JointTask, OffsetTask, OrderTask, Solver, StageResult
from .validate import validate

__all__ = ["PlannerOptions", "get_solver", "plan"]

_SOLVERS: dict[str, type] = {"cpsat": CpSatSolver, "gurobi": GurobiSolver, "highs": HighsSolver}


def get_solver(name: str) -> Solver:
    return _SOLVERS[name]()  # type: ignore[no-any-return]


#: what a note says of a solver that could not take a task (CP-SAT or no solver took it)
UNUSABLE = "unusable"


def _pick(options: PlannerOptions, task: Any, notes: list[str]) -> Solver | None:
    """The solver for one task: the requested one when it can take it, else CP-SAT."""
    if options.solver == "heuristic":
        return None
    wanted = ["gurobi"] if options.solver == "auto" else [options.solver]
    if "cpsat" not in wanted:
        wanted.append("cpsat")
    for name in wanted:
        s = get_solver(name)
        try:
            ok, why = s.available()
            if ok:
                why = s.fits(task, options)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
        if not why:
            return s
        if options.solver != "auto" or name != "gurobi":
            notes.append(f"{name} {UNUSABLE}: {why}")
    return None


class _Clock:
    def __init__(self, budget: float) -> None:
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + budget

    def left(self) -> float:
        return max(0.0, self.deadline - time.perf_counter())

    def since(self, t: float) -> float:
        return time.perf_counter() - t


# -- order stage ---------------------------------------------------------------------------
def _order_stage(
    g: Graph,
    hint: list[int],
    lower: int,
    budget: float,
    options: PlannerOptions,
    notes: list[str],
    stats: dict[str, Any],
) -> tuple[list[int], int, bool, str]:
    """(order, proven lower bound, any solver improved, solver name used)."""
    parts = blocks(g) if options.use_decomposition else [Block(list(range(g.n)), g)]
    stats["blocks"] = len(parts)
    local_hints = [b.to_local(hint) for b in parts]
    peaks = [b.graph.peak(h) for b, h in zip(parts, local_hints, strict=True)]
    for k, b in enumerate(parts):
        # a block with a single possible order has an exact peak, a valid bound on the whole
        lower = max(lower, peaks[k] if b.trivial else combinatorial_lower_bound(b.graph))
    todo = [k for k, b in enumerate(parts) if peaks[k] > lower and not b.trivial]
    stats["blocks_solved"] = len(todo)
    improved, used = False, ""
    result_orders = list(local_hints)
    total_ops = sum(parts[k].graph.n for k in todo) or 1
    t_start = time.perf_counter()
    block_status: list[str] = []
    # blocks with the highest peaks first: they decide the objective
    for k in sorted(todo, key=lambda k: (-peaks[k], k)):
        b = parts[k]
        remaining = budget - (time.perf_counter() - t_start)
        if remaining <= 0.05 or peaks[k] <= lower:
            continue
        share = max(0.05, remaining * b.graph.n / total_ops) if len(todo) > 1 else remaining
        task = OrderTask(b.graph, local_hints[k], lower, peaks[k], share)
        solver = _pick(options, task, notes)
        if solver is None:
            break
        total_ops -= b.graph.n
        res = _safe(lambda s=solver, t=task: s.solve_order(t, options), solver.name)
        used = solver.name
        block_status.append(res.status)
        if res.reason:
            notes.append(res.reason)
        if res.order is not None and b.graph.is_topological(res.order):
            p = b.graph.peak(res.order)
            if p < peaks[k]:
                result_orders[k], peaks[k], improved = res.order, p, True
        if res.status == "optimal":
            lower = max(lower, min(peaks[k], max(res.bound, res.peak_bound)))
        else:
            lower = max(lower, min(peaks[k], res.peak_bound))
    stats["block_status"] = block_status
    order = [v for b, o in zip(parts, result_orders, strict=True) for v in b.to_global(o)]
    return order, lower, improved, used


def _safe(fn: Any, name: str) -> StageResult:
    try:
        res: StageResult = fn()
        return res
    except Exception as exc:
        return StageResult(status="error", reason=f"{name}: {type(exc).__name__}: {exc}")


# -- offsets stage -------------------------------------------------------------------------
def _offsets_stage(
    items: dict[int, Item],
    budget: float,
    options: PlannerOptions,
    notes: list[str],
    stats: dict[str, Any],
) -> tuple[dict[int, int], int, bool, bool, str]:
    """(offsets, arena, proved optimal, improved on best fit, method)."""
    offsets, arena = best_fit(items)
    lb = arena_lower_bound(items)
    stats["arena_lower_bound"] = lb
    stats["best_fit_arena"] = arena
    if arena <= lb:
        return offsets, arena, True, False, "best_fit"
    if options.solver == "heuristic":
        return offsets, arena, False, False, "best_fit"
    t0 = time.perf_counter()
    improved, method = False, "best_fit"
    ex: ExactResult | None = None
    large = len(items) > 1000 and options.exact_offsets
    if options.exact_offsets:
        try:
            # CP-SAT proves small instances fast; on large ones the canonical search's first
            # dive (quadratic in the buffers) is what reaches the bound, so give it that time;
            # past ~1000 buffers CP-SAT finds no placement at all in our budgets (GPT-2-XL
            # backward: none in 10 s, where the search reaches the bound in 11 s) and its
            # presolve overruns its time limit by seconds, so the search gets all the time
            share = max(0.2, min(2.0, budget * 0.1), 1e-6 * len(items) ** 2)
            share = budget if large else min(budget * 0.5, share)
            ex = exact_offsets(items, share, hint=offsets)
        except RecursionError as exc:  # very deep groups on small stacks
            notes.append(f"exact offsets: {exc}")
            ex = None
    if ex is not None:
        stats["exact_offsets_nodes"] = ex.nodes
        if ex.arena < arena:
            offsets, arena, improved, method = ex.offsets, ex.arena, True, "exact"
        if ex.proved:
            return offsets, arena, True, improved, "exact"
    left = budget - (time.perf_counter() - t0)
    task = OffsetTask(items, offsets, lb, arena, left)
    solver = _pick(options, task, notes) if left > 0.05 and not large else None
    if solver is None:
        return offsets, arena, False, improved, method
    res = _safe(lambda: solver.solve_offsets(task, options), solver.name)
    if res.reason:
        notes.append(res.reason)
    if res.offsets is not None and not placement_ok(items, res.offsets):
        notes.append(f"{solver.name}: offsets overlap or misalign; discarded")
        res.offsets, res.status = None, "error"
    if res.offsets is not None and res.objective is not None and res.objective < arena:
        offsets, arena, improved, method = res.offsets, res.objective, True, solver.name
    proved = res.status == "optimal" and res.objective is not None and arena <= res.objective
    return offsets, arena, proved or arena <= max(lb, res.bound), improved, method


def _local_budget(options: PlannerOptions) -> float:
    # a local optimum comes within a second on our largest graphs (GPT-2-XL: 0.4 s)
    return min(2.0, 0.1 * options.time_limit)


# -- heuristics stage ---------------------------------------------------------------------
@dataclass
class _Scored:
    """A heuristic order with its best-fit offsets: a plan every result is checked against."""

    peak: int
    arena: int
    rank: int  # position among the heuristic rules: the tie-break
    rule: str
    order: list[int]
    offsets: dict[int, int]


def _heuristic_stage(
    g: Graph, options: PlannerOptions, stats: dict[str, Any]
) -> tuple[_Scored, _Scored | None]:
    """The best heuristic order (least peak, then arena) and the given order, when it is
    topological, each with best-fit offsets."""
    orders = heuristic_orders(g)
    peaks = {rule: g.peak(order) for rule, order in orders.items()}
    least = min(peaks.values())
    if options.local_search:
        start = min(orders, key=lambda rule: peaks[rule])
        local = improve_order(g, orders[start], _local_budget(options))
        if g.peak(local) < least:
            orders["local"], peaks["local"] = local, g.peak(local)
            least = peaks["local"]
    scored: list[_Scored] = []
    seen: list[list[int]] = []
    for rank, (rule, order) in enumerate(orders.items()):
        if rule != "given" and (peaks[rule] > least or order in seen or len(seen) >= 2):
            continue  # best-fit (quadratic) only for the given order and one least-peak order
        seen.append(order)
        offs, arena = best_fit(items_for(g, order, options.pad_sizes))
        scored.append(_Scored(peaks[rule], arena, rank, rule, order, offs))
    scored.sort(key=lambda c: (c.peak, c.arena, c.rank))
    best = scored[0]
    given = next((c for c in scored if c.rule == "given"), None)
    stats.update(
        heuristic_rule=best.rule,
        heuristic_peak=best.peak,
        heuristic_arena=best.arena,
        given_order_peak=given.peak if given else None,
        given_order_arena=given.arena if given else None,
        given_order_topological=given is not None,
    )
    return best, given


# -- joint stage --------------------------------------------------------------------------
@dataclass
class _Staged:
    """The plan the stages have reached and what is known of it."""

    order: list[int]
    offsets: dict[int, int]
    peak: int
    arena: int
    lower: int  # bound on the peak
    order_improved: bool  # a solver improved on the heuristic order
    off_proved: bool  # the arena is optimal for the order
    solver_name: str


def _joint_stage(
    g: Graph,
    staged: _Staged,
    clock: _Clock,
    options: PlannerOptions,
    notes: list[str],
    stats: dict[str, Any],
) -> None:
    """Order and offsets at once, warm-started from `staged`; its plan replaces `staged`'s
    where lower (peak, then arena), and its bound raises `staged.lower`."""
    t = time.perf_counter()
    task = JointTask(
        g, staged.order, staged.offsets, staged.lower, staged.peak, staged.arena, clock.left()
    )
    solver = _pick(options, task, notes)
    if solver is not None and clock.left() > 0.05:
        res = _safe(lambda: solver.solve_joint(task, options), solver.name)
        if res.reason:
            notes.append(res.reason)
        stats["joint_status"] = res.status
        j_items = (
            items_for(g, res.order, options.pad_sizes)
            if res.order is not None and g.is_topological(res.order)
            else None
        )
        if (
            j_items is not None
            and res.order is not None
            and res.offsets is not None
            and placement_ok(j_items, res.offsets)
        ):
            jp = g.peak(res.order)
            ja = max((res.offsets[i] + it.size for i, it in j_items.items()), default=0)
            if (jp, ja) < (staged.peak, staged.arena):
                staged.order, staged.offsets, staged.arena, staged.peak = (
                    res.order,
                    res.offsets,
                    ja,
                    jp,
                )
                staged.order_improved = True
                staged.off_proved = res.status == "optimal"
            staged.lower = max(staged.lower, min(res.peak_bound, staged.peak))
            if res.status == "optimal":
                staged.lower = max(staged.lower, staged.peak)
                staged.off_proved = True
        staged.solver_name = solver.name
    stats["joint_seconds"] = clock.since(t)
    stats["order_status"] = "optimal" if staged.peak <= staged.lower else "time_limit"
    stats["offset_status"] = "optimal" if staged.off_proved else "time_limit"


# -- assembling ----------------------------------------------------------------------------
def _plan_of(g: Graph, order: list[int], offsets: dict[int, int], arena: int, lower: int) -> Plan:
    return Plan(
        order=g.names(order),
        offsets={g.bufs[i].name: int(o) for i, o in sorted(offsets.items())},
        arena_bytes=int(arena),
        peak_bytes=g.peak(order),
        lower_bound_bytes=int(lower),
        solver="heuristic",
        status="heuristic",
        solve_seconds=0.0,
    )


def _best_valid(problem: Problem, candidates: list[Plan], notes: list[str]) -> Plan:
    """The candidate of least peak, then arena, then position that validates (a note for each
    one that does not)."""
    ranked = sorted(
        range(len(candidates)),
        key=lambda k: (candidates[k].peak_bytes, candidates[k].arena_bytes, k),
    )
    for k in ranked:
        errs = validate(problem, candidates[k])
        if not errs:
            return candidates[k]
        notes.append(f"candidate {k} invalid: {errs[0].kind.name}: {errs[0].message}")
    # cannot happen for a valid problem: the given/heuristic plans validate
    raise ValueError(f"problem {problem.name!r}: no valid plan found ({notes[:3]})")


def plan(problem: Problem, options: PlannerOptions | None = None) -> Plan:
    """Plan the order and offsets of `problem` (see the module docstring).

    Raises ValueError only for an invalid problem (dangling names, cycles)."""
    options = options or PlannerOptions()
    clock = _Clock(options.time_limit)
    problem.check()
    g = build_graph(problem)
    notes: list[str] = []
    stats: dict[str, Any] = {}

    # heuristics ---------------------------------------------------------------------------
    t = time.perf_counter()
    heuristic, given = _heuristic_stage(g, options, stats)
    h_peak, h_order = heuristic.peak, heuristic.order
    comb = combinatorial_lower_bound(g)
    stats["combinatorial_bound"] = comb
    stats["heuristic_seconds"] = clock.since(t)
    lower = comb

    # order --------------------------------------------------------------------------------
    t = time.perf_counter()
    order, order_improved, order_solver = h_order, False, ""
    joint = options.plan_mode == "joint" and options.solver != "heuristic"
    if h_peak > lower and options.solver != "heuristic":
        share = clock.left() * (0.3 if joint else 0.7)
        order, lower, order_improved, order_solver = _order_stage(
            g, h_order, lower, share, options, notes, stats
        )
    peak = g.peak(order)
    if options.local_search and order_solver and peak > lower:  # polish what the solver left
        local = improve_order(g, order, min(_local_budget(options), clock.left() * 0.2))
        if g.peak(local) < peak:
            order, peak, order_improved = local, g.peak(local), True
            stats["local_search_after_solver"] = True
    lower = min(lower, peak)
    stats["order_solver"] = order_solver or "heuristic"
    stats["order_seconds"] = clock.since(t)
    stats["order_status"] = (
        "optimal" if peak <= lower else ("time_limit" if order_solver else "heuristic")
    )

    # offsets ------------------------------------------------------------------------------
    t = time.perf_counter()
    items = items_for(g, order, options.pad_sizes)
    offsets, arena, off_proved, off_improved, method = _offsets_stage(
        items, clock.left() * (0.4 if joint else 0.9), options, notes, stats
    )
    stats["offset_method"] = method
    stats["offset_seconds"] = clock.since(t)
    stats["offset_status"] = (
        "optimal"
        if off_proved
        else (
            "time_limit" if method != "best_fit" or options.solver != "heuristic" else "heuristic"
        )
    )
    solver_name = order_solver or ("" if method == "best_fit" else method)

    # joint --------------------------------------------------------------------------------
    staged = _Staged(order, offsets, peak, arena, lower, order_improved, off_proved, solver_name)
    if joint and not (peak <= lower and off_proved):
        _joint_stage(g, staged, clock, options, notes, stats)

    # choose the best valid plan -----------------------------------------------------------
    lower = min(staged.lower, staged.peak)
    candidates = [_plan_of(g, staged.order, staged.offsets, staged.arena, lower)]
    for baseline in (heuristic, given):
        if baseline is not None:
            candidates.append(
                _plan_of(
                    g, baseline.order, baseline.offsets, baseline.arena, min(lower, baseline.peak)
                )
            )
    chosen = _best_valid(problem, candidates, notes)
    improved = chosen is candidates[0] and (staged.order_improved or off_improved)
    proved = chosen.peak_bytes <= lower and (
        staged.off_proved
        if chosen is candidates[0]
        else chosen.arena_bytes
        <= arena_lower_bound(items_for(g, [g.index[o] for o in chosen.order], options.pad_sizes))
    )
    chosen.lower_bound_bytes = min(lower, chosen.peak_bytes)
    chosen.status = "optimal" if proved else ("time_limit" if improved else "heuristic")
    chosen.solver = staged.solver_name or "heuristic"
    chosen.solve_seconds = clock.since(clock.t0)
    stats["notes"] = notes
    # the solver asked for by name could not take some task: another one planned it
    stats["substituted"] = sorted(
        {n for n in notes if n.startswith(f"{options.solver} {UNUSABLE}: ")}
    )
    stats["total_seconds"] = chosen.solve_seconds
    chosen.stats = stats
    return chosen
