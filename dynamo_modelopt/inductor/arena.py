"""Emit the static memory plan: arenas, every intermediate buffer at its planned offset.

Inductor's wrapper normally allocates each buffer on its own (`empty_strided`) and only reuses a
freed buffer of the same size. Its pool planner (`codegen/memory_planning.py`) is the extension
point for allocating from pools instead: `MemoryPlanner` turns the wrapper's allocation lines into
`alloc_from_pool(pool, offset, ...)` views, and its `allocate_groups` decides pools and offsets.
We subclass it, choosing which buffers take part and where they go: those that are not outputs go
into arenas (one per device and per stretch of the graph in which buffers overlap), at offsets
from the planner's exact offset search (MiniMalloc-style, see `planner/offsets_exact.py`) over
the live ranges the wrapper really has, after kernel-local buffers were removed and in-place
reuses joined. Outputs (a training forward's saved activations, gradients, the user's results)
keep an allocation of their own, so nothing returned by a graph pins an arena, and each call
allocates fresh arenas: two steps in flight, `retain_graph`, gradient accumulation or evaluation
between steps never share their memory.

What the arenas leave outside is counted in the report: graph inputs (freed by a backward as it
consumes them), outputs, and what extern kernels allocate themselves (fallback ops, their
workspace). The arenas are emitted where our cost model predicts they do not raise the graph's
peak over Inductor's own allocation (option `arena`: "auto"), or always ("on").
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import sympy

from .._torch_compat import (
    AllocateLine,
    Allocation,
    AllocationPool,
    AllocationTreeNode,
    AllocFromPoolLine,
    BufferGroup,
    DeallocFromPoolLine,
    EnterSubgraphLine,
    FreeIfNotReusedLine,
    LiveRanges,
    MemoryPlanner,
    ReuseLine,
    V,
)
from ..capture.scheduler import as_emitted, merge_steps
from ..config import ModeloptConfig
from ..planner import fold_aliases, live_bytes_profile, live_ranges
from ..planner.heuristics import Item, arena_lower_bound, placement_ok, slot_size
from ..planner.intervals import LiveRange
from ..planner.offsets_exact import components, exact_offsets
from ..report import GraphReport

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Inductor's pools align every offset to 64 bytes (`memory_planning._align`); we do the same.
ARENA_ALIGNMENT = 64


class NoArena(Exception):
    """This graph's allocations cannot go into an arena; the reason says why."""


class PlacedRoot(AllocationTreeNode):
    """The root of an arena: allocations at fixed offsets, decided beforehand."""

    def __init__(self, placed: list[tuple[Allocation, int]], size: int) -> None:
        self.placed = placed
        self.size = size

    @property
    def allocations(self) -> list[Allocation]:
        return [allocation for allocation, _ in self.placed]

    def allocate(self, block: Allocation, is_last: bool) -> bool:
        return False  # the plan is fixed: nothing else goes in

    def get_live_ranges(self) -> LiveRanges:
        return LiveRanges(allocation.live_range for allocation, _ in self.placed)

    def get_size_hint(self) -> int:
        return self.size

    def get_symbolic_size(self) -> sympy.Expr:
        return sympy.Integer(self.size)

    def finalize(self, pool: AllocationPool, offset: Any) -> PlacedRoot:
        for allocation, at in self.placed:
            allocation.finalize(pool, offset + at)
        return self


def typed_view_name(pool: str, dtype: torch.dtype) -> str:
    return f"{pool}_{str(dtype).removeprefix('torch.')}"


@dataclasses.dataclass(eq=False)  # pools are compared by identity, as Inductor's are
class ArenaPool(AllocationPool):
    """One arena: a byte array, with one typed view per dtype that its buffers use.

    Carving a buffer out as `reinterpret_tensor(typed view, size, stride, offset)` costs about
    0.5 us on the CPU side against 2.8 us for Inductor's `alloc_from_pool` op (measured), which
    matters for small, fast graphs with many buffers.
    """

    dtypes: tuple[torch.dtype, ...] = ()

    def codegen_create(self, wrapper: Any, code: Any) -> None:
        import torch

        nbytes = int(self.root.get_size_hint())
        code.writeline(
            wrapper.make_allocation(
                self.name, device=self.device, dtype=torch.uint8, shape=(nbytes,), stride=(1,)
            )
        )
        for dtype in self.dtypes:
            view = typed_view_name(self.name, dtype)
            code.writeline(f"{view} = {self.name}.view({dtype})")
            self.names_to_del.append(view)


@dataclasses.dataclass
class ArenaAllocation(Allocation):
    """A buffer in an arena, carved out through its dtype's view of the arena."""

    def codegen_alloc_from_pool(self, wrapper: Any) -> tuple[str, list[str]]:

        if self.pool is None:
            return super().codegen_alloc_from_pool(wrapper)
        dtype = self.node.get_dtype()
        offset = int(self.offset) // dtype.itemsize  # offsets are 64-byte aligned
        size = wrapper.codegen_python_shape_tuple(tuple(self.node.get_size()))
        stride = wrapper.codegen_python_shape_tuple(tuple(self.node.get_stride()))
        view = typed_view_name(self.pool.name, dtype)
        return f"reinterpret_tensor({view}, {size}, {stride}, {offset})", []


@dataclasses.dataclass
class ArenaPlan:
    """The offsets chosen for one arena (one device, one stretch of the graph)."""

    device: str
    arena_bytes: int
    live_peak_bytes: int  # max over time of live bytes in it: no placement can do better
    proved: bool
    buffers: dict[str, int]  # first buffer name of each group -> offset
    group_names: list[list[str]]  # all names sharing each group's memory (in-place reuse)
    # first buffer name -> live range [start, end) over the wrapper's memory lines
    lifetimes: dict[str, LiveRange]


def _static_size(group: BufferGroup) -> int:
    size = group.sym_nbytes()
    try:
        return int(size)
    except TypeError as exc:
        raise NoArena(f"symbolic size {size} of {group.names[0]}") from exc


class ArenaMemoryPlanner(MemoryPlanner):
    """Inductor's pool planner with our placement: arenas for the non-outputs."""

    def __init__(
        self,
        wrapper: Any,
        time_limit: float,
        dynamic: frozenset[str],
        bundle_of: dict[str, int] | None,
    ) -> None:
        super().__init__(wrapper)
        self.time_limit = time_limit
        self.dynamic = dynamic  # groups (by first name) left to Inductor's own allocation
        self.bundle_of = bundle_of  # first name -> arena, where stretches share one
        self.arenas: list[ArenaPlan] = []

    def convert_to_pool_lines(self, lines: list[Any]) -> None:
        """Inductor's conversion, for intermediates only: outputs keep their own allocation."""
        name_to_group = self.compute_buffer_groups(lines)
        assert self.buffer_groups is not None
        _mark_outputs_read_by_output_node(self.buffer_groups)
        self.buffer_groups = [
            g for g in self.buffer_groups if not g.is_output and g.names[0] not in self.dynamic
        ]
        kept = {id(g) for g in self.buffer_groups}
        planned = {name: g for name, g in name_to_group.items() if id(g) in kept}
        for i, line in enumerate(lines):
            if isinstance(line, AllocateLine) and line.node.get_name() in planned:
                lines[i] = AllocFromPoolLine(self.wrapper, planned[line.node.get_name()])
            elif isinstance(line, FreeIfNotReusedLine) and line.node.get_name() in planned:
                lines[i] = DeallocFromPoolLine(self.wrapper, planned[line.node.get_name()])
            elif isinstance(line, ReuseLine) and line.node.get_name() in planned:
                line.delete_old = False  # both names view the arena; it is freed as a whole

    def allocate_groups(self) -> None:
        """Arenas per device: one per stretch of time in which buffers overlap, by default.

        Buffers whose lifetimes form separate stretches (no buffer live across the gap) are
        placed separately. In separate arenas each is live only over its stretch; stretches
        bundled into one arena (`bundle_of`) share its memory at their own offsets, the arena
        is as large as their largest and lives over all of them, and the call makes one
        allocation for them instead of one each.
        """
        assert self.buffer_groups is not None
        by_device: dict[torch.device, list[BufferGroup]] = defaultdict(list)
        for group in self.buffer_groups:
            group.make_allocation()
            plain = group.allocation
            group.allocation = ArenaAllocation(
                **{f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)}
            )
            by_device[group.node.get_device()].append(group)
        for device, groups in by_device.items():
            items = {i: _item(group) for i, group in enumerate(groups)}
            bundles = components(items)
            if self.bundle_of is not None:
                by_bundle: dict[int, list[int]] = defaultdict(list)
                for i, group in enumerate(groups):
                    by_bundle[self.bundle_of.get(group.names[0], -1 - i)].append(i)
                bundles = sorted(by_bundle.values(), key=lambda b: min(items[i].start for i in b))
            for bundle in bundles:
                pool = self._arena(device, [groups[i] for i in bundle], [items[i] for i in bundle])
                self.pools.get_pools(groups[bundle[0]].allocation).append(pool)
        self.pools.finalize()

    def _arena(
        self, device: torch.device, groups: list[BufferGroup], items: list[Item]
    ) -> AllocationPool:
        """Place `groups` (one or more stretches; each placed on its own from offset 0)."""
        offsets = {i: 0 for i in range(len(items))}
        arena, proved = 0, True
        placed_all = {i: it for i, it in enumerate(items) if it.size > 0}
        for stretch in components(placed_all):
            placed = {i: placed_all[i] for i in stretch}
            result = exact_offsets(placed, self.time_limit / max(1, len(placed_all)) * len(placed))
            if not placement_ok(placed, result.offsets):
                raise NoArena("the offset search returned an overlapping placement")
            offsets.update(result.offsets)
            arena, proved = max(arena, result.arena), proved and result.proved
        arena = slot_size(max(arena, ARENA_ALIGNMENT), ARENA_ALIGNMENT)  # typed views divide it
        self.arenas.append(
            ArenaPlan(
                device=str(device),
                arena_bytes=arena,
                live_peak_bytes=arena_lower_bound(placed_all),
                proved=proved,
                buffers={g.names[0]: offsets[i] for i, g in enumerate(groups)},
                group_names=[list(g.names) for g in groups],
                lifetimes={g.names[0]: it.live for g, it in zip(groups, items, strict=True)},
            )
        )
        root = PlacedRoot([(g.allocation, offsets[i]) for i, g in enumerate(groups)], arena)
        for allocation, _ in root.placed:
            allocation.mark_allocated()
        dtypes = tuple(sorted({g.node.get_dtype() for g in groups}, key=str))
        return ArenaPool(device, root, can_expand=False, dtypes=dtypes)  # type: ignore[arg-type]


def _mark_outputs_read_by_output_node(groups: list[BufferGroup]) -> None:
    """Count as outputs the groups whose buffer the graph's OUTPUT node reads.

    Newer torch does this in `MemoryPlanner.compute_buffer_groups`; torch 2.11 marks only
    the names in `V.graph.get_output_names()`. A no-op where Inductor already did it.
    """
    name_to_buf = V.graph.scheduler.name_to_buf
    for group in groups:
        if not group.is_output:
            group.is_output = any(
                any(user.node.get_name() == "OUTPUT" for user in buf.users)
                for name in group.names
                if (buf := name_to_buf.get(name)) is not None
            )


def _item(group: BufferGroup) -> Item:
    """A group's bytes and live range. Inductor's live ranges are half-open, as ours are: a
    buffer freed in the same run of memory lines where another is allocated may share its
    memory. An empty one is taken as live over its first line."""
    begin, end = int(group.live_range.begin), int(group.live_range.end)
    # sized as the aligned slot it occupies: then the live peak is a bound the search can meet
    size = slot_size(_static_size(group), ARENA_ALIGNMENT)
    return Item(size, ARENA_ALIGNMENT, begin, max(begin + 1, end))


def check_wrapper_lines(lines: list[Any]) -> None:
    """Raise NoArena where the wrapper holds something our arena does not handle."""
    if V.graph.cpp_wrapper:
        raise NoArena("the C++ wrapper (cpp_wrapper=True) is not supported yet")
    for line in lines:
        if isinstance(line, EnterSubgraphLine):
            raise NoArena("the graph has subgraphs (control flow)")
        if isinstance(line, AllocateLine) and getattr(line, "comm_buffer", False):
            raise NoArena("communication buffers")


def plan_arena(
    wrapper: Any,
    time_limit: float,
    dynamic: frozenset[str] = frozenset(),
    bundle_of: dict[str, int] | None = None,
) -> tuple[list[Any], list[ArenaPlan]]:
    """The wrapper's lines rewritten to allocate from arenas, and the arenas' plans.

    `dynamic` names groups (by their first buffer) that keep Inductor's own allocation. Works
    on copies of the lines that either planner mutates, so Inductor's own pass can still run on
    the originals and the caller can pick either result.
    """
    check_wrapper_lines(wrapper.lines)
    # Inductor's own pass, run after us on the originals, flags reused frees and reuse lines
    mutable = (ReuseLine, FreeIfNotReusedLine)
    lines = [copy.copy(line) if isinstance(line, mutable) else line for line in wrapper.lines]
    planner = ArenaMemoryPlanner(wrapper, time_limit, dynamic, bundle_of)
    return planner.plan(lines), planner.arenas


def long_lived_first(arenas: list[ArenaPlan]) -> list[str]:
    """Planned groups by decreasing lifetime: the candidates to leave out of the arenas.

    An arena is live, whole, for as long as its longest buffer; a buffer that spans much of the
    graph keeps the arena's full size live through steps where little else is, so such buffers
    are the first to try allocating on their own."""
    spans = [
        (-(end - start), name) for arena in arenas for name, (start, end) in arena.lifetimes.items()
    ]
    return [name for _, name in sorted(spans)]


# -- choosing the arenas of a graph ---------------------------------------------------------
def arena_candidates_or_reason(
    wrapper: Any,
    problem: Any,
    steps: list[list[str]],
    report: GraphReport,
    config: ModeloptConfig,
) -> tuple[list[tuple[int, frozenset[str], list[Any], list[ArenaPlan]]], ArenaProfile] | None:
    """The arena candidates of this graph and the profile that predicted them, or None with
    the reason in the report.

    `steps`: the planned order's nodes grouped by kernel call (`kernel_call_steps`).
    """
    try:
        # with arenas, only in-place reuse remains: Inductor's reuse pass does not run
        emitted = as_emitted(problem, V.graph.removed_buffers, dict(wrapper.reuses))
        plain, order = merge_steps(emitted, steps)
        predict = ArenaProfile(plain, order, live_bytes_profile(plain, order))
        return _arena_candidates(wrapper, predict, config), predict
    except NoArena as exc:
        report.details["arena"] = {"used": False, "reason": str(exc)}
    except Exception as exc:
        if config.strict:
            raise
        log.warning("modelopt: no arena for %s: %s", report.graph_name, exc)
        report.details["arena"] = {"used": False, "reason": f"{type(exc).__name__}: {exc}"}
    return None


def choose_arena(
    wrapper: Any,
    candidates: list[tuple[int, frozenset[str], list[Any], list[ArenaPlan]]],
    without: int,
    report: GraphReport,
    config: ModeloptConfig,
) -> list[ArenaPlan] | None:
    """Install the best arena candidate where it is predicted not above Inductor's allocation;
    return its arenas (None where Inductor's allocation stays).

    Ties go to the candidate with more in arenas (less fragmentation where an allocator has
    it), then to fewer arenas (fewer allocations per call).
    """
    predicted, left_out, lines, arenas = min(candidates, key=_preference)
    used = config.arena == "on" or predicted <= without
    total = sum(a.arena_bytes for a in arenas)
    report.arena_bytes = total if used else 0
    report.details["arena"] = {
        "used": used,
        "reason": "" if used else "predicted above Inductor's own allocation",
        "predicted_peak_with_arena": predicted,
        "predicted_peak_without_arena": without,
        "arena_bytes": total,
        "outside_arena_at_peak": predicted - total,
        "left_to_inductor": sorted(left_out),
        "candidates_tried": len(candidates),
        "arenas": [
            {
                "device": a.device,
                "bytes": a.arena_bytes,
                "live_peak_bytes": a.live_peak_bytes,
                "proved": a.proved,
                "offsets": dict(a.buffers),
            }
            for a in arenas
        ],
    }
    if not used:
        return None
    wrapper.lines = lines
    report.emitted_peak_bytes = predicted
    return arenas


def _arena_candidates(
    wrapper: Any, predict: ArenaProfile, config: ModeloptConfig
) -> list[tuple[int, frozenset[str], list[Any], list[ArenaPlan]]]:
    """(predicted peak, groups left out, wrapper lines, arenas) of each candidate tried.

    Candidates: every intermediate in arenas, then the 1, 2, 4, ... longest-lived ones left to
    Inductor's own allocation (see `long_lived_first`), until one is not above `profile`; then
    the best of those with consecutive stretches bundled into one arena wherever that does not
    raise its predicted peak (one allocation per call instead of one per stretch: cheaper to
    run, for free).
    """
    without = max(predict.profile, default=0)
    budget = max(0.2, config.time_limit / 4)

    def candidate(
        left_out: frozenset[str], bundle_of: dict[str, int] | None = None
    ) -> tuple[int, frozenset[str], list[Any], list[Any]]:
        lines, arenas = plan_arena(wrapper, budget, left_out, bundle_of)
        predicted = max(predict(arenas), default=0)
        return predicted, left_out, lines, arenas

    found = [candidate(frozenset())]
    if config.arena == "auto":
        ranked = long_lived_first(found[0][3])
        count = 1
        while min(c[0] for c in found) > without and count <= len(ranked) // 2:
            found.append(candidate(frozenset(ranked[:count])))
            count *= 2
    best = min(found, key=_preference)
    bundles = _bundle_stretches(predict, best[3], best[0])
    if len(bundles) < len(best[3]):
        found.append(candidate(best[1], {n: k for k, b in enumerate(bundles) for n in b.buffers}))
    return found


def _bundle_stretches(predict: ArenaProfile, arenas: list[ArenaPlan], peak: int) -> list[ArenaPlan]:
    """Greedily bundle each stretch's arena into the previous one of its device while the
    predicted peak stays at `peak` (offsets within a stretch do not change)."""
    bundles: list[ArenaPlan] = []
    for arena in arenas:
        previous = next((b for b in reversed(bundles) if b.device == arena.device), None)
        if previous is not None:
            joined = _joined(previous, arena)
            trial = [joined if b is previous else b for b in bundles]
            if max(predict(trial), default=0) <= peak:
                bundles = trial
                continue
        bundles.append(arena)
    return bundles


def _joined(first: ArenaPlan, second: ArenaPlan) -> ArenaPlan:
    """One arena for two stretches of a device that never overlap in time."""
    return ArenaPlan(
        device=first.device,
        arena_bytes=max(first.arena_bytes, second.arena_bytes),
        live_peak_bytes=max(first.live_peak_bytes, second.live_peak_bytes),
        proved=first.proved and second.proved,
        buffers={**first.buffers, **second.buffers},
        group_names=first.group_names + second.group_names,
        lifetimes={**first.lifetimes, **second.lifetimes},
    )


def _preference(candidate: tuple[int, frozenset[str], list[Any], list[ArenaPlan]]) -> tuple:
    """Lowest predicted peak; then more buffers in arenas; then fewer arenas to allocate."""
    predicted, left_out, _, arenas = candidate
    return predicted, len(left_out), len(arenas)


class ArenaProfile:
    """Live bytes per step once given arenas hold their buffers, for one graph and order.

    Each arena is live, whole, from its first buffer's allocation to its last buffer's free;
    everything else is as in `profile`. The graph's lifetimes are computed once, so candidates
    and bundlings are each evaluated in time linear in tensors and steps.
    """

    def __init__(self, emitted: Any, order: list[str], profile: list[int]) -> None:
        self.ranges = live_ranges(emitted, order)
        self.sizes = {t.name: t.size for t in fold_aliases(emitted).tensors}
        self.profile = profile

    def __call__(self, arenas: list[ArenaPlan]) -> list[int]:
        steps = len(self.profile)
        delta = [0] * (steps + 1)
        for arena in arenas:
            names = {name for group in arena.group_names for name in group}
            roots = [name for name in self.ranges if name in names]
            for name in roots:
                start, end = self.ranges[name]
                delta[start] -= self.sizes.get(name, 0)
                delta[end] += self.sizes.get(name, 0)
            start, end = 0, steps
            if roots:
                start = min(self.ranges[r].start for r in roots)
                end = max(self.ranges[r].end for r in roots)
            delta[start] += arena.arena_bytes
            delta[end] -= arena.arena_bytes
        out, running = [], 0
        for step in range(steps):
            running += delta[step]
            out.append(self.profile[step] + running)
        return out
