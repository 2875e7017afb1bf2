"""OR-Tools CP-SAT models: order (peak), offsets (arena) and joint order+addresses.

Order model (after MODeL's formulation, written for a constraint solver): each operation has
an integer position inside its ASAP/ALAP window, positions are all different and follow the
edges; each buffer is an interval from its producer's position to its last consumer's
position (or the end), and a cumulative constraint on buffer sizes is bounded by the peak
variable, which is minimised. Offsets model: fixed time intervals, a variable address
interval per buffer, NoOverlap2D, minimise the arena height. The joint model combines both
with variable time intervals inside NoOverlap2D.
"""

from __future__ import annotations

import time
from typing import Any

from .graph import Graph
from .heuristics import slot_size
from .options import PlannerOptions
from .solvers import (
    JointTask,
    OffsetTask,
    OrderTask,
    StageResult,
    buffer_interval_window,
    graph_unit,
    interchangeable_pairs,
    op_windows,
    size_unit,
    step_hint,
    step_windows,
)


def _cp() -> Any:
    from ortools.sat.python import cp_model

    return cp_model


def _params(solver: Any, options: PlannerOptions, time_limit: float) -> None:
    p = solver.parameters
    # time_limit is what is left after building the model; CP-SAT stops a little late on
    # large models (up to ~1 s over on GPT-2-XL), so leave it a margin
    p.max_time_in_seconds = max(0.05, 0.95 * time_limit - 0.1)
    p.num_workers = max(1, options.threads)
    p.random_seed = options.seed
    p.relative_gap_limit = options.relative_gap
    p.log_search_progress = False
    if options.threads > 1 and options.deterministic:
        # Interleaved workers make a multi-worker search reproducible for a fixed seed
        # (slower: a real parallel portfolio is about 2-4x faster on our instances).
        p.interleave_search = True


def _status(cp_model: Any, code: int) -> str:
    return {
        cp_model.OPTIMAL: "optimal",
        cp_model.FEASIBLE: "feasible",
        cp_model.INFEASIBLE: "infeasible",
        cp_model.MODEL_INVALID: "error",
    }.get(code, "unknown")


class _OrderVars:
    """Positions and buffer intervals of an order model, shared by order and joint models."""

    def __init__(
        self, model: Any, g: Graph, options: PlannerOptions, unit: int, shared: bool = False
    ) -> None:
        """`shared`: operations may share timesteps (`step_windows`); else one per step."""
        n = g.n
        steps, win = step_windows(g, options) if shared else (n, op_windows(g, options.use_windows))
        self.shared = steps < n
        self.pos = [model.NewIntVar(win[v][0], win[v][1], f"pos{v}") for v in range(n)]
        if n > 1 and not self.shared:
            model.AddAllDifferent(self.pos)
        for u in range(n):
            for v in g.succ[u]:
                model.Add(self.pos[u] < self.pos[v])
        if options.symmetry_breaking:
            for u, v in interchangeable_pairs(g):
                model.Add(self.pos[u] <= self.pos[v] if self.shared else self.pos[u] < self.pos[v])
        self.start: list[Any] = []
        self.end: list[Any] = []  # live ranges are half-open: end = last live step + 1
        self.ivl: list[Any] = []
        self.sizes: list[int] = []
        for i, b in enumerate(g.bufs):
            s_lo, _s_hi, e_lo, e_hi = buffer_interval_window(g, i, win, steps)
            start = 0 if (b.producer < 0 or b.resident) else self.pos[b.producer]
            if b.resident or b.live_to_end:
                end = steps
            elif b.consumers:  # e: the last live step, the latest of the uses
                e = model.NewIntVar(e_lo - 1, e_hi - 1, f"end{i}")
                terms = [self.pos[c] for c in b.consumers]
                if b.producer >= 0 and not b.resident:
                    terms.append(self.pos[b.producer])
                model.AddMaxEquality(e, terms)
                end = e + 1
            else:
                end = start + 1
            length = model.NewIntVar(1, max(1, e_hi - s_lo), f"len{i}")
            ivl = model.NewIntervalVar(start, length, end, f"life{i}")
            self.start.append(start)
            self.end.append(end)
            self.ivl.append(ivl)
            self.sizes.append(b.size // unit)

    def hint(self, model: Any, g: Graph, order: list[int]) -> None:
        for v, step in enumerate(step_hint(g, order, self.shared)):
            model.AddHint(self.pos[v], step)

    def order(self, solver: Any) -> list[int]:
        vals = [(solver.Value(p), v) for v, p in enumerate(self.pos)]
        return [v for _, v in sorted(vals)]


class CpSatSolver:
    """Adapter for OR-Tools CP-SAT."""

    name = "cpsat"

    def available(self) -> tuple[bool, str]:
        try:
            _cp()
        except Exception as exc:
            return False, f"ortools not importable: {exc}"
        return True, ""

    def fits(self, task: object, options: PlannerOptions) -> str:
        return ""

    # -- order ------------------------------------------------------------------------------
    def solve_order(self, task: OrderTask, options: PlannerOptions) -> StageResult:
        cp_model = _cp()
        t0 = time.perf_counter()
        g = task.graph
        unit = graph_unit(g, options.scale_sizes)
        model = cp_model.CpModel()
        ov = _OrderVars(model, g, options, unit, shared=options.fewer_steps)
        # shared steps count more than an order needs: the heuristic peak may be out of reach
        upper = sum(ov.sizes) if ov.shared else -(-task.upper // unit)
        peak = model.NewIntVar(task.lower // unit, max(upper, task.lower // unit), "peak")
        if g.n:
            model.AddCumulative(ov.ivl, ov.sizes, peak)
        model.Minimize(peak)
        if options.warm_start and task.hint is not None:
            ov.hint(model, g, task.hint)
        solver = cp_model.CpSolver()
        _params(solver, options, task.time_limit - (time.perf_counter() - t0))
        code = solver.Solve(model)
        status = _status(cp_model, code)
        res = StageResult(status=status, seconds=time.perf_counter() - t0)
        if status in ("optimal", "feasible"):
            res.order = ov.order(solver)
            res.objective = g.peak(res.order)
            res.bound = int(solver.BestObjectiveBound()) * unit
            if status == "optimal":
                res.bound = res.objective
        if ov.shared:  # the model's optimum is not the problem's: it proves nothing
            res.status = "feasible" if res.order is not None else status
            res.bound = task.lower
        res.bound = max(res.bound, task.lower) if status != "infeasible" else task.lower
        res.peak_bound = res.bound
        res.info = {"unit": unit, "branches": solver.NumBranches()}
        return res

    # -- offsets ----------------------------------------------------------------------------
    def solve_offsets(self, task: OffsetTask, options: PlannerOptions) -> StageResult:
        cp_model = _cp()
        t0 = time.perf_counter()
        items = task.items
        unit = size_unit(
            [it.size for it in items.values()] + [it.alignment for it in items.values()],
            options.scale_sizes,
        )
        ub = task.upper // unit
        model = cp_model.CpModel()
        arena = model.NewIntVar(-(-task.lower // unit), ub, "arena")
        xs: dict[int, Any] = {}
        t_ivls, a_ivls, demands = [], [], []
        for i, it in sorted(items.items()):
            size, al = it.size // unit, max(1, it.alignment // unit)
            if size == 0:
                continue
            k = model.NewIntVar(0, max(0, (ub - size) // al), f"k{i}")
            x = k * al if al > 1 else k
            xs[i] = (k, al)
            a_ivls.append(model.NewIntervalVar(x, size, x + size, f"addr{i}"))
            t_ivls.append(model.NewIntervalVar(it.start, it.end - it.start, it.end, f"t{i}"))
            demands.append(size)
            model.Add(x + size <= arena)
        model.AddNoOverlap2D(t_ivls, a_ivls)
        if t_ivls:
            model.AddCumulative(t_ivls, demands, arena)  # redundant, strengthens propagation
        model.Minimize(arena)
        if options.warm_start and task.hint is not None:
            for i, (k, al) in xs.items():
                model.AddHint(k, task.hint[i] // unit // al)
        solver = cp_model.CpSolver()
        _params(solver, options, task.time_limit - (time.perf_counter() - t0))
        status = _status(cp_model, solver.Solve(model))
        res = StageResult(status=status, seconds=time.perf_counter() - t0)
        if status in ("optimal", "feasible"):
            offs = {i: 0 for i in items}
            for i, (k, al) in xs.items():
                offs[i] = solver.Value(k) * al * unit
            res.offsets = offs
            res.objective = max((offs[i] + it.size for i, it in items.items()), default=0)
            res.bound = (
                res.objective if status == "optimal" else (int(solver.BestObjectiveBound()) * unit)
            )
        res.bound = max(res.bound, task.lower)
        return res

    # -- joint ------------------------------------------------------------------------------
    def solve_joint(self, task: JointTask, options: PlannerOptions) -> StageResult:
        cp_model = _cp()
        t0 = time.perf_counter()
        g = task.graph
        unit = graph_unit(g, options.scale_sizes, with_alignment=True)
        model = cp_model.CpModel()
        ov = _OrderVars(model, g, options, unit)
        peak = model.NewIntVar(task.lower // unit, -(-task.upper_peak // unit), "peak")
        if g.n:
            model.AddCumulative(ov.ivl, ov.sizes, peak)
        ub = -(-task.upper_arena // unit)
        arena = model.NewIntVar(0, ub, "arena")
        xs: dict[int, Any] = {}
        t_ivls, a_ivls, demands = [], [], []
        slots = {}
        for i, b in enumerate(g.bufs):
            if not b.placed or b.size == 0:
                continue
            slots[i] = slot_size(b.size, b.alignment, options.pad_sizes)
            size, al = slots[i] // unit, max(1, b.alignment // unit)
            k = model.NewIntVar(0, max(0, (ub - size) // al), f"k{i}")
            x = k * al if al > 1 else k
            xs[i] = (k, al)
            a_ivls.append(model.NewIntervalVar(x, size, x + size, f"addr{i}"))
            t_ivls.append(ov.ivl[i])
            demands.append(size)
            model.Add(x + size <= arena)
        model.AddNoOverlap2D(t_ivls, a_ivls)
        if t_ivls:
            model.AddCumulative(t_ivls, demands, arena)
        weight = ub + 1
        model.Minimize(peak * weight + arena)
        if options.warm_start and task.hint_order is not None:
            ov.hint(model, g, task.hint_order)
            if task.hint_offsets is not None:
                for i, (k, al) in xs.items():
                    model.AddHint(k, task.hint_offsets.get(i, 0) // unit // al)
        solver = cp_model.CpSolver()
        _params(solver, options, task.time_limit - (time.perf_counter() - t0))
        status = _status(cp_model, solver.Solve(model))
        res = StageResult(status=status, seconds=time.perf_counter() - t0)
        if status in ("optimal", "feasible"):
            res.order = ov.order(solver)
            offs = {i: 0 for i, b in enumerate(g.bufs) if b.placed}
            for i, (k, al) in xs.items():
                offs[i] = solver.Value(k) * al * unit
            res.offsets = offs
            res.objective = max((offs[i] + slots[i] for i in slots), default=0)
            bound = int(solver.BestObjectiveBound())
            res.peak_bound = (bound // weight) * unit
            if status == "optimal":
                res.peak_bound = g.peak(res.order)
                res.bound = res.objective
        res.peak_bound = max(res.peak_bound, task.lower)
        return res


__all__ = ["CpSatSolver"]
