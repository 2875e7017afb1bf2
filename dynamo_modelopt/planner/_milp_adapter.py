"""Shared driver for MILP back ends: build the neutral model, hand it over, decode."""

from __future__ import annotations

import time
from collections.abc import Callable

from .heuristics import arena_lower_bound, slot_size
from .milp import Milp, joint_milp, offsets_milp, order_milp
from .options import PlannerOptions
from .solvers import JointTask, OffsetTask, OrderTask, StageResult, step_hint, step_windows

# (milp, options, time_limit) -> (status, values or None, best bound)
Backend = Callable[[Milp, PlannerOptions, float], tuple[str, list[float] | None, float]]


def run_order(task: OrderTask, options: PlannerOptions, backend: Backend) -> StageResult:
    t0 = time.perf_counter()
    om = order_milp(task.graph, options, task.upper, task.lower, shared=options.fewer_steps)
    if options.warm_start and task.hint is not None:
        step = step_hint(task.graph, task.hint, om.shared)
        for (u, s), j in om.x.items():
            om.milp.start[j] = 1.0 if s == step[u] else 0.0
    status, values, bound = backend(om.milp, options, task.time_limit)
    res = StageResult(status=status, seconds=time.perf_counter() - t0)
    if values is not None and status in ("optimal", "feasible"):
        order = om.decode(values, task.graph.n)
        if task.graph.is_topological(order):
            res.order = order
            res.objective = task.graph.peak(order)
        else:
            res.status, res.reason = "error", "decoded order is not topological"
    res.bound = max(task.lower, int(-(-(bound - 1e-6) // 1)) * om.unit if bound > 0 else 0)
    if res.objective is not None:
        res.bound = min(res.bound, res.objective)
    if om.shared:  # the model's optimum is not the problem's: it proves nothing
        res.bound = task.lower
        if res.status == "optimal":
            res.status = "feasible"
    res.peak_bound = res.bound
    res.info = {"vars": om.milp.n_vars, "rows": om.milp.n_rows}
    return res


def run_offsets(task: OffsetTask, options: PlannerOptions, backend: Backend) -> StageResult:
    t0 = time.perf_counter()
    om = offsets_milp(task.items, options, task.upper, task.lower)
    if options.warm_start and task.hint is not None:
        for i, (j, al) in om.k.items():
            om.milp.start[j] = task.hint[i] // om.unit // al
    status, values, bound = backend(om.milp, options, task.time_limit)
    res = StageResult(status=status, seconds=time.perf_counter() - t0)
    if values is not None and status in ("optimal", "feasible"):
        res.offsets = om.decode(values, task.items)
        res.objective = max((res.offsets[i] + it.size for i, it in task.items.items()), default=0)
    lb = arena_lower_bound(task.items)
    res.bound = max(lb, int(-(-(bound - 1e-6) // 1)) * om.unit if bound > 0 else 0)
    if res.objective is not None:
        res.bound = min(res.bound, res.objective)
    res.info = {"vars": om.milp.n_vars, "rows": om.milp.n_rows}
    return res


def order_size_estimate(task: OrderTask, options: PlannerOptions) -> int:
    """A cheap lower estimate of the order MILP's variable count (the x[v, s] booleans)."""
    if options.fewer_steps:
        return sum(hi - lo + 1 for lo, hi in step_windows(task.graph, options)[1])
    g = task.graph
    if not options.use_windows:
        return g.n * g.n
    return sum(hi - lo + 1 for lo, hi in g.windows)


def order_size(task: OrderTask, options: PlannerOptions) -> tuple[int, int]:
    om = order_milp(task.graph, options, task.upper, task.lower, shared=options.fewer_steps)
    return om.milp.n_vars, om.milp.n_rows


def offsets_size(task: OffsetTask, options: PlannerOptions) -> tuple[int, int]:
    om = offsets_milp(task.items, options, task.upper, task.lower)
    return om.milp.n_vars, om.milp.n_rows


def run_joint(task: JointTask, options: PlannerOptions, backend: Backend) -> StageResult:
    t0 = time.perf_counter()
    g = task.graph
    jm = joint_milp(g, options, task.upper_peak, task.upper_arena, task.lower)
    om = jm.order
    if options.warm_start and task.hint_order is not None:
        for step, v in enumerate(task.hint_order):
            for (u, s), j in om.x.items():
                if u == v:
                    om.milp.start[j] = 1.0 if s == step else 0.0
        if task.hint_offsets is not None:
            for i, (j, al) in jm.k.items():
                om.milp.start[j] = task.hint_offsets.get(i, 0) // om.unit // al
    status, values, bound = backend(om.milp, options, task.time_limit)
    res = StageResult(status=status, seconds=time.perf_counter() - t0)
    if values is not None and status in ("optimal", "feasible"):
        order = om.decode(values, g.n)
        if g.is_topological(order):
            res.order = order
            offs = {i: 0 for i, b in enumerate(g.bufs) if b.placed}
            for i, (j, al) in jm.k.items():
                offs[i] = round(values[j]) * al * om.unit
            res.offsets = offs
            res.objective = max(
                (
                    offs[i] + slot_size(g.bufs[i].size, g.bufs[i].alignment, options.pad_sizes)
                    for i in offs
                ),
                default=0,
            )
        else:
            res.status, res.reason = "error", "decoded order is not topological"
    peak_units = int((bound + 1e-6) // jm.weight) if bound > 0 else 0
    res.peak_bound = max(task.lower, peak_units * om.unit)
    if res.order is not None:
        res.peak_bound = min(res.peak_bound, g.peak(res.order))
    res.info = {"vars": om.milp.n_vars, "rows": om.milp.n_rows}
    return res


def joint_size(task: JointTask, options: PlannerOptions) -> tuple[int, int]:
    jm = joint_milp(task.graph, options, task.upper_peak, task.upper_arena, task.lower)
    return jm.order.milp.n_vars, jm.order.milp.n_rows


def model_size(
    task: OrderTask | OffsetTask | JointTask, options: PlannerOptions, limit: int
) -> tuple[int, int] | str:
    """(variables, rows) of the task's MILP, or why it is over `limit` before being built."""
    if isinstance(task, OrderTask):
        if order_size_estimate(task, options) > limit:
            return "order model too large (estimated before building)"
        return order_size(task, options)
    if isinstance(task, OffsetTask):
        if len(task.items) > limit:
            return "offsets model too large (estimated before building)"
        return offsets_size(task, options)
    if order_size_estimate(OrderTask(task.graph, None, 0, 0, 0.0), options) > limit:
        return "joint model too large (estimated before building)"
    return joint_size(task, options)


class MilpSolver:
    """A solver that takes the neutral MILPs of `milp` through its `backend` function."""

    name = "milp"

    @staticmethod
    def backend(
        m: Milp, options: PlannerOptions, time_limit: float
    ) -> tuple[str, list[float] | None, float]:
        raise NotImplementedError

    def solve_order(self, task: OrderTask, options: PlannerOptions) -> StageResult:
        return self._guard(lambda: run_order(task, options, self.backend))

    def solve_offsets(self, task: OffsetTask, options: PlannerOptions) -> StageResult:
        return self._guard(lambda: run_offsets(task, options, self.backend))

    def solve_joint(self, task: JointTask, options: PlannerOptions) -> StageResult:
        return self._guard(lambda: run_joint(task, options, self.backend))

    def _guard(self, run: Callable[[], StageResult]) -> StageResult:
        """A solver's failure is a stage result, never an exception out of the planner."""
        try:
            return run()
        except Exception as exc:
            return StageResult(status="error", reason=f"{self.name}: {exc}")
