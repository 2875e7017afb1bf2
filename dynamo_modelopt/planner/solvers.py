"""The small interface every exact solver adapter implements, and helpers they share."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Protocol

from .graph import Graph
from .heuristics import Item
from .options import PlannerOptions


@dataclass
class StageResult:
    """What one solver call returned. Sizes are in bytes (already unscaled).

    status: "optimal" | "feasible" | "infeasible" | "unknown" | "error" | "unavailable".
    objective: peak (order), arena (offsets) or arena (joint) of the returned solution.
    bound: a proven lower bound on that objective (0 when none).
    """

    status: str
    objective: int | None = None
    bound: int = 0
    order: list[int] | None = None
    offsets: dict[int, int] | None = None
    peak_bound: int = 0
    seconds: float = 0.0
    reason: str = ""
    info: dict[str, object] = field(default_factory=dict)

    @property
    def has_solution(self) -> bool:
        return self.status in ("optimal", "feasible")


@dataclass
class OrderTask:
    """Minimise the peak live bytes over topological orders of `graph`."""

    graph: Graph
    hint: list[int] | None
    lower: int
    upper: int
    time_limit: float


@dataclass
class OffsetTask:
    """Minimise the arena for fixed live steps of `items` (buffer index -> Item)."""

    items: dict[int, Item]
    hint: dict[int, int] | None
    lower: int
    upper: int
    time_limit: float


@dataclass
class JointTask:
    """Order and addresses together: minimise the peak, then the arena (lexicographic)."""

    graph: Graph
    hint_order: list[int] | None
    hint_offsets: dict[int, int] | None
    lower: int
    upper_peak: int
    upper_arena: int
    time_limit: float


class Solver(Protocol):
    """A solver adapter. `available` answers (usable, reason) without raising."""

    name: str

    def available(self) -> tuple[bool, str]: ...

    def fits(self, task: OrderTask | OffsetTask | JointTask, options: PlannerOptions) -> str:
        """Empty string when the solver can take this task, else why not."""
        ...

    def solve_order(self, task: OrderTask, options: PlannerOptions) -> StageResult: ...

    def solve_offsets(self, task: OffsetTask, options: PlannerOptions) -> StageResult: ...

    def solve_joint(self, task: JointTask, options: PlannerOptions) -> StageResult: ...


def size_unit(sizes: list[int], enabled: bool = True) -> int:
    """GCD of the given sizes/alignments (1 when disabled or all zero): models count in units."""
    if not enabled:
        return 1
    g = 0
    for s in sizes:
        g = math.gcd(g, s)
    return max(g, 1)


def graph_unit(graph: Graph, enabled: bool, with_alignment: bool = False) -> int:
    sizes = [b.size for b in graph.bufs]
    if with_alignment:
        sizes += [b.alignment for b in graph.bufs if b.placed]
    return size_unit(sizes, enabled)


def interchangeable_pairs(graph: Graph) -> list[tuple[int, int]]:
    """Pairs (u, v), u < v, of operations that can be swapped in any order without changing
    any buffer's lifetime profile: same predecessors and successors, consume exactly the same
    buffers, and produce outputs with identical (size, consumers, flags). Forcing u before v
    removes the mirror solutions (a valid symmetry break)."""
    sig: dict[tuple[object, ...], list[int]] = {}
    for v in range(graph.n):
        outs = tuple(
            sorted(
                (b.size, b.consumers, b.live_to_end, b.resident, b.placed, b.alignment)
                for b in (graph.bufs[i] for i in graph.outs[v])
            )
        )
        key = (tuple(graph.pred[v]), tuple(graph.succ[v]), tuple(sorted(graph.ins[v])), outs)
        sig.setdefault(key, []).append(v)
    pairs = []
    for group in sig.values():
        pairs.extend(itertools.pairwise(group))
    return sorted(pairs)


def buffer_interval_window(
    graph: Graph, i: int, windows: list[tuple[int, int]], steps: int | None = None
) -> tuple[int, int, int, int]:
    """(earliest start, latest start, earliest end, latest end) of buffer i's live range
    `[start, end)`, in a model of `steps` timesteps (default: one per operation); `windows`
    are the operations' (earliest, latest) steps."""
    b = graph.bufs[i]
    end = graph.n if steps is None else steps
    if b.producer < 0 or b.resident:
        s_lo = s_hi = 0
    else:
        s_lo, s_hi = windows[b.producer]
    if b.resident or b.live_to_end:
        return s_lo, s_hi, end, end
    if b.consumers:  # one past the last consumer's step
        e_lo = max(max(windows[c][0] for c in b.consumers), s_lo) + 1
        e_hi = max(max(windows[c][1] for c in b.consumers), s_hi) + 1
        return s_lo, s_hi, e_lo, e_hi
    return s_lo, s_hi, s_lo + 1, s_hi + 1


def op_windows(graph: Graph, use_windows: bool) -> list[tuple[int, int]]:
    if use_windows:
        return graph.windows
    return [(0, graph.n - 1)] * graph.n


def step_count(graph: Graph, options: PlannerOptions) -> int:
    """Timesteps of an order model. One per operation, unless `fewer_steps`: then
    max(critical path, step_fraction * operations), as MODeL allows (see `step_windows`)."""
    n = graph.n
    if not options.fewer_steps or n == 0:
        return n
    depth, _ = graph.levels
    return min(n, max(max(depth) + 1, math.ceil(options.step_fraction * n)))


def step_windows(graph: Graph, options: PlannerOptions) -> tuple[int, list[tuple[int, int]]]:
    """(timesteps, window of each operation) of an order model.

    With one step per operation the windows are the ASAP/ALAP positions. With fewer steps
    (MODeL's simplification) independent operations may share a step, and the model counts
    a step as if they all ran at once: every input and output of the step live together.
    Running a shared step's operations one after the other never needs more than that, so
    every model solution decodes (by step, then given index) to an order whose true peak is
    at most the model's objective; but the model can miss the optimum (some orders have no
    cheap grouping), so its dual bound is not a bound on the problem and is discarded."""
    steps = step_count(graph, options)
    if steps == graph.n:
        return steps, op_windows(graph, options.use_windows)
    if not options.use_windows:
        return steps, [(0, steps - 1)] * graph.n
    depth, height = graph.levels
    return steps, [(depth[v], steps - 1 - height[v]) for v in range(graph.n)]


def step_hint(graph: Graph, order: list[int], shared: bool) -> list[int]:
    """Step of each operation for a solver hint of `order`: its position, or with shared
    steps the order cut into runs of independent operations (an operation opens a new step
    when one of its predecessors is in the current one), which keeps the order's sequence."""
    step = [0] * graph.n
    if not shared:
        for k, v in enumerate(order):
            step[v] = k
        return step
    current = 0
    for v in order:
        current = max([current] + [step[u] + 1 for u in graph.pred[v]])
        step[v] = current
    return step
