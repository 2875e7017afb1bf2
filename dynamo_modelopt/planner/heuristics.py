"""Fast heuristics: memory-aware topological sorts and best-fit offset assignment.

The orders are list scheduling rules: at each step pick one ready operation by a score. The
"least peak first" rule follows the idea of Inductor's LPMF (choose the ready operation whose
own step peak is smallest); "net" prefers the one that frees the most bytes relative to what
it allocates; BFS and DFS are plain Kahn variants. Offsets use greedy-by-size best fit (place
big buffers first into the tightest gap among time-overlapping buffers), a classic static
allocation rule also used as the warm start of the exact methods.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass

from .graph import Graph, build_graph, positions
from .intervals import LiveRange, covers
from .problem import Problem

ORDER_RULES = ("given", "lpmf", "net", "bfs", "dfs")


@dataclass(frozen=True)
class Item:
    """A placed buffer for the offsets stage: size, alignment and live range `[start, end)`."""

    size: int
    alignment: int
    start: int
    end: int

    @property
    def live(self) -> LiveRange:
        return LiveRange(self.start, self.end)


def align_up(x: int, a: int) -> int:
    return -(-x // a) * a


def slot_size(size: int, alignment: int, pad: bool = True) -> int:
    """Bytes a buffer occupies in the arena: its size rounded up to its alignment (the block
    an allocator hands out) when `pad`, else its size. Padding changes no feasible placement
    when all alignments are equal (the next aligned offset above a buffer is already past its
    padding), but it makes the live-bytes bound tight: unpadded, that bound sits up to one
    alignment per live buffer below every possible arena, so no search can prove it."""
    return align_up(size, alignment) if pad else size


# -- orders --------------------------------------------------------------------------------
def _memory_list_schedule(g: Graph, rule: str) -> list[int]:
    """List scheduling that tracks live bytes exactly under the timing model."""
    n = g.n
    pending = [len(b.consumers) for b in g.bufs]
    indeg = [len(p) for p in g.pred]
    keep = [b.live_to_end or b.resident for b in g.bufs]
    alloc = [sum(g.bufs[i].size for i in g.outs[v] if not g.bufs[i].resident) for v in range(n)]
    current = sum(b.size for b in g.bufs if b.producer < 0 or b.resident)
    dying_inputs = [i for i, b in enumerate(g.bufs) if b.producer < 0 and not b.consumers]
    ready = {v for v in range(n) if indeg[v] == 0}
    order: list[int] = []
    while ready:
        best_key: tuple[int, ...] | None = None
        best = -1
        for v in ready:
            freed = 0
            for i in g.ins[v]:
                if pending[i] == 1 and not keep[i]:
                    freed += g.bufs[i].size
            for i in g.outs[v]:
                b = g.bufs[i]
                if not b.consumers and not keep[i]:
                    freed += b.size
            step = current + alloc[v]
            if rule == "lpmf":
                key = (step, alloc[v] - freed, v)
            else:  # "net"
                key = (alloc[v] - freed, step, v)
            if best_key is None or key < best_key:
                best_key, best = key, v
        v = best
        ready.remove(v)
        order.append(v)
        current += alloc[v]
        for i in g.ins[v]:
            pending[i] -= 1
            if pending[i] == 0 and not keep[i]:
                current -= g.bufs[i].size
        for i in g.outs[v]:
            if not g.bufs[i].consumers and not keep[i]:
                current -= g.bufs[i].size
        if len(order) == 1:
            current -= sum(g.bufs[i].size for i in dying_inputs)
        for w in g.succ[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.add(w)
    return order


def _kahn(g: Graph, key: Callable[[int, int], tuple[int, ...]]) -> list[int]:
    """Kahn's algorithm with a priority key(v, time_made_ready)."""
    indeg = [len(p) for p in g.pred]
    heap = [(key(v, 0), v) for v in range(g.n) if indeg[v] == 0]
    heapq.heapify(heap)
    out: list[int] = []
    tick = 0
    while heap:
        _, v = heapq.heappop(heap)
        out.append(v)
        tick += 1
        for w in g.succ[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                heapq.heappush(heap, (key(w, tick), w))
    return out


def order_by_rule(g: Graph, rule: str) -> list[int]:
    """One heuristic topological order (operation indices)."""
    if rule == "given":
        return list(range(g.n))
    if rule in ("lpmf", "net"):
        return _memory_list_schedule(g, rule)
    if rule == "bfs":
        depth = [w[0] for w in g.windows]
        return _kahn(g, lambda v, t: (depth[v], v))
    if rule == "dfs":
        return _kahn(g, lambda v, t: (-t, v))
    raise ValueError(f"unknown order rule {rule!r}")


def heuristic_orders(g: Graph) -> dict[str, list[int]]:
    """Every rule's order; 'given' only when the given order is topological."""
    out = {}
    for rule in ORDER_RULES:
        order = order_by_rule(g, rule)
        if g.is_topological(order):
            out[rule] = order
    return out


def _moved(order: list[int], a: int, k: int) -> list[int]:
    """`order` with the operation at position a moved just past position k (a < k) or just
    before it (a > k)."""
    u = order[a]
    if a < k:
        return [*order[:a], *order[a + 1 : k + 1], u, *order[k + 1 :]]
    return [*order[:k], u, *order[k:a], *order[a + 1 :]]


def _peak_key(g: Graph, order: list[int]) -> tuple[tuple[int, int], list[int]]:
    """((peak, steps at the peak), profile): fewer steps at the same peak is progress too."""
    prof = g.profile(order)
    peak = max(prof, default=0)
    return (peak, prof.count(peak)), prof


def improve_order(
    g: Graph, order: list[int], time_limit: float, tries_per_round: int = 50
) -> list[int]:
    """Local search on a topological order: move one operation across the (first) peak step,
    deferring one that runs before it to just after it, or hoisting one that runs after it to
    just before it, and keep the move if the peak (then the number of steps at the peak)
    drops. Candidates are ranked by the bytes they would take off the peak step (outputs no
    longer live there, or inputs freed before it) net of what they add. Catches what list
    scheduling misses: on GPT-2-XL backward it defers weight-gradient operations past the
    embedding-gradient step (-6%)."""
    deadline = time.perf_counter() + max(0.0, time_limit)
    order = list(order)
    best, prof = _peak_key(g, order)
    while g.n > 1 and time.perf_counter() < deadline:
        k = prof.index(best[0])
        pos = positions(order, g.n)
        ivs = g.intervals(order)
        ranked = []
        for a, u in enumerate(order):
            # inputs with `ivs[i].end == a + 1` are used last by u (freed after its step a)
            if a < k and all(pos[w] > k for w in g.succ[u]):
                gain = sum(g.bufs[i].size for i in g.outs[u] if ivs[i].covers(k))
                loss = sum(g.bufs[i].size for i in g.ins[u] if ivs[i].end == a + 1)
            elif a > k and all(pos[w] < k for w in g.pred[u]):
                gain = sum(
                    g.bufs[i].size for i in g.ins[u] if ivs[i].end == a + 1 and ivs[i].start <= k
                )
                loss = sum(g.bufs[i].size for i in g.outs[u])
            else:
                continue
            if gain > loss:
                ranked.append((loss - gain, a))
        ranked.sort()
        for _, a in ranked[:tries_per_round]:
            cand = _moved(order, a, k)
            key, cand_prof = _peak_key(g, cand)
            if key < best:
                order, best, prof = cand, key, cand_prof
                break
            if time.perf_counter() > deadline:
                return order
        else:
            return order  # no move helps: a local optimum
    return order


def best_heuristic(g: Graph) -> tuple[str, list[int], int, int]:
    """(rule, order, peak, best-fit arena) minimising peak, then arena, then rule rank."""
    best: tuple[int, int, int, str, list[int]] | None = None
    for rank, (rule, order) in enumerate(heuristic_orders(g).items()):
        peak = g.peak(order)
        if best is not None and peak > best[0]:
            continue
        _, arena = best_fit(items_for(g, order))
        cand = (peak, arena, rank, rule, order)
        if best is None or cand[:3] < best[:3]:
            best = cand
    assert best is not None
    return best[3], best[4], best[0], best[1]


def best_order(problem: Problem) -> list[str]:
    """The best heuristic order (least peak, then least best-fit arena) as operation names."""
    g = build_graph(problem)
    return g.names(best_heuristic(g)[1])


# -- offsets -------------------------------------------------------------------------------
def items_for(g: Graph, order: list[int], pad: bool = True) -> dict[int, Item]:
    """Placed buffers (by buffer index) with their live steps for `order`; sizes are slot
    sizes (see `slot_size`)."""
    ivs = g.intervals(order)
    return {
        i: Item(slot_size(b.size, b.alignment, pad), b.alignment, *ivs[i])
        for i, b in enumerate(g.bufs)
        if b.placed
    }


def time_neighbours(items: dict[int, Item]) -> dict[int, list[int]]:
    """For every item, the items whose live ranges overlap its own (sweep over starts)."""
    ranked = sorted(items, key=lambda i: (items[i].start, i))
    out: dict[int, list[int]] = {i: [] for i in items}
    active: list[int] = []
    for i in ranked:
        s = items[i].start
        active = [j for j in active if covers(items[j], s)]  # started by s: live at s
        for j in active:
            out[i].append(j)
            out[j].append(i)
        active.append(i)
    return out


def _best_fit_pass(
    items: dict[int, Item], ranked: list[int], near: dict[int, list[int]]
) -> tuple[dict[int, int], int]:
    offsets: dict[int, int] = {}
    arena = 0
    for i in ranked:
        it = items[i]
        if it.size == 0:
            offsets[i] = 0
            continue
        busy = sorted(
            [(o, o + items[j].size) for j in near[i] if (o := offsets.get(j)) is not None]
        )
        best_off, best_waste = -1, -1
        cur = 0
        size, al = it.size, it.alignment
        for lo, hi in busy:
            cand = -(-cur // al) * al
            if cand + size <= lo:
                waste = lo - cur - size
                if best_off < 0 or waste < best_waste:
                    best_off, best_waste = cand, waste
            if hi > cur:
                cur = hi
        if best_off < 0:
            best_off = -(-cur // al) * al
        offsets[i] = best_off
        if best_off + size > arena:
            arena = best_off + size
    return offsets, arena


def best_fit(items: dict[int, Item]) -> tuple[dict[int, int], int]:
    """Greedy best fit under a few placement orders (by size, by area, by start); the best."""
    keys: list[Callable[[int], tuple[int, ...]]] = [
        lambda i: (-items[i].size, -(items[i].end - items[i].start), items[i].start, i),
        lambda i: (-items[i].size * (items[i].end - items[i].start), items[i].start, i),
        lambda i: (items[i].start, -items[i].size, i),
    ]
    if len(items) > 1500:  # quadratic passes: keep the two that win most often
        keys = [keys[0], keys[2]]
    near = time_neighbours(items)
    best: tuple[dict[int, int], int] | None = None
    for key in keys:
        cand = _best_fit_pass(items, sorted(items, key=key), near)
        if best is None or cand[1] < best[1]:
            best = cand
    assert best is not None
    return best


def placement_ok(items: dict[int, Item], offsets: dict[int, int]) -> bool:
    """Every item has an aligned, non-negative offset and no two live ones overlap."""
    if any(
        i not in offsets or offsets[i] < 0 or offsets[i] % it.alignment for i, it in items.items()
    ):
        return False
    near = time_neighbours(items)
    for i, js in near.items():
        a, oa = items[i], offsets[i]
        for j in js:
            b, ob = items[j], offsets[j]
            if j > i and a.size and b.size and oa < ob + b.size and ob < oa + a.size:
                return False
    return True


def arena_lower_bound(items: dict[int, Item]) -> int:
    """Max over steps of live placed (slot) bytes: no placement can do better."""
    if not items:
        return 0
    n = max(it.end for it in items.values()) + 1
    diff = [0] * n
    for it in items.values():
        diff[it.start] += it.size
        diff[it.end] -= it.size
    best = cur = 0
    for d in diff:
        cur += d
        best = max(best, cur)
    return best


def best_fit_offsets(
    problem: Problem, order: list[str], pad: bool = True
) -> tuple[dict[str, int], int]:
    """Best-fit offsets of the placed alias roots for `order`: (offsets by name, arena bytes)."""
    g = build_graph(problem)
    idx = [g.index[o] for o in order]
    offsets, arena = best_fit(items_for(g, idx, pad))
    return {g.bufs[i].name: off for i, off in offsets.items()}, arena


def placed_live_peak(problem: Problem, order: list[str], pad: bool = True) -> int:
    """Peak over steps of the slot bytes of placed buffers live in `order`: the arena's own
    lower bound, which an optimal placement reaches unless fragmentation is unavoidable."""
    g = build_graph(problem)
    return arena_lower_bound(items_for(g, [g.index[o] for o in order], pad))
