"""Exact offsets for fixed lifetimes by a canonical-placement search (after MiniMalloc,
Moffitt, ASPLOS 2023).

Any feasible placement can be pushed down until every buffer rests on address 0 or on top of
a buffer that is live at the same time. Listing the buffers of such a placement by increasing
offset, each one sits exactly at the aligned maximum top of the earlier-listed buffers that
overlap it in time. So a depth-first search that repeatedly picks the next buffer and puts it
at that "floor", with offsets never decreasing along the path, reaches an optimal placement.
Pruning: at every step t the unplaced buffers live at t must fit above max(floor so far, the
highest placed top at t), which gives a per-step lower bound against the incumbent; identical
unplaced buffers are only tried once. Buffers whose lifetimes form separate groups (no buffer
crosses between them) are solved independently; the arena is the highest group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .heuristics import Item, arena_lower_bound, best_fit, time_neighbours


@dataclass
class ExactResult:
    offsets: dict[int, int]
    arena: int
    lower: int
    proved: bool
    nodes: int


def components(items: dict[int, Item]) -> list[list[int]]:
    """Groups of buffers connected through overlapping live ranges, in time order."""
    ranked = sorted(items, key=lambda i: (items[i].start, items[i].end, i))
    groups: list[list[int]] = []
    reach = 0  # end of the current group's live ranges (half-open)
    for i in ranked:
        if not groups or items[i].start >= reach:
            groups.append([])
        groups[-1].append(i)
        reach = max(reach, items[i].end)
    return groups


class _Timeout(Exception):
    pass


@dataclass(slots=True)
class _Placed:
    """One buffer placed on the search path, with what placing it overwrote."""

    buffer: int
    saved_top: list[int]
    raised: list[tuple[int, int]]


@dataclass(slots=True)
class _Frame:
    """A search node on the stack: its candidates, the next one to try and the buffer placed
    for the branch being explored."""

    cands: list[tuple[int, ...]]
    height: int
    position: int = 0
    tried: set[tuple[object, ...]] = field(default_factory=set)
    placed: _Placed | None = None


def _search(
    items: dict[int, Item],
    keys: list[int],
    incumbent: int,
    target: int,
    deadline: float,
    tie: str = "start",
    node_limit: int = 0,
) -> tuple[dict[int, int] | None, int, bool, int]:
    """Branch and bound over canonical orders for one group. Returns (best offsets found or
    None, their arena, proved, nodes). Only placements with arena < incumbent are sought;
    the search stops as soon as one reaches `target` (a lower bound)."""
    # compress time to the distinct boundaries of this group
    cuts = sorted({items[i].start for i in keys} | {items[i].end for i in keys})
    where = {t: k for k, t in enumerate(cuts)}
    span = {i: (where[items[i].start], where[items[i].end]) for i in keys}
    T = len(cuts)
    top = [0] * T
    need = [0] * T
    for i in keys:
        s, e = span[i]
        for t in range(s, e):
            need[t] += items[i].size
    near = time_neighbours({i: items[i] for i in keys})
    base = dict.fromkeys(keys, 0)  # highest top among placed time-neighbours
    unplaced = set(keys)
    size = {i: items[i].size for i in keys}
    align = {i: items[i].alignment for i in keys}
    sig = {i: (size[i], align[i], span[i]) for i in keys}
    offsets: dict[int, int] = {}
    best: dict[int, int] | None = None
    best_arena = incumbent
    nodes = 0

    def visit(last: int, height: int) -> list[tuple[int, ...]] | bool:
        """Enter a search node: True when a placement reached `target` (stop), False when this
        node is a leaf or is pruned, else its candidates (floor first) to branch on."""
        nonlocal best, best_arena, nodes
        nodes += 1
        if nodes & 255 == 0 and time.perf_counter() > deadline:
            raise _Timeout
        if node_limit and nodes > node_limit:
            raise _Timeout
        if not unplaced:
            best, best_arena = dict(offsets), height
            return best_arena <= target
        cap = best_arena - 1
        for t in range(T):
            nt = need[t]
            if nt and (top[t] if top[t] > last else last) + nt > cap:
                return False
        cands = []
        for i in unplaced:
            b = base[i] if base[i] > last else last
            al = align[i]
            floor = -(-b // al) * al
            if floor + size[i] > cap:
                return False
            if tie == "start":
                cands.append((floor, span[i][0], -size[i], i))
            else:
                cands.append((floor, -size[i], span[i][0], i))
        cands.sort()
        return cands

    def search() -> None:
        """Depth first over the candidates, with an explicit stack (no recursion limit): each
        frame is a search node, its candidates and the buffer its current branch placed."""
        root = visit(0, 0)
        if isinstance(root, bool):
            return
        stack = [_Frame(root, height=0)]
        while stack:
            frame = stack[-1]
            placed = frame.placed
            if placed is not None:  # back from a branch: take its buffer off again
                i = placed.buffer
                s, e = span[i]
                sz = size[i]
                del offsets[i]
                unplaced.add(i)
                for j, old in placed.raised:
                    base[j] = old
                need[s:e] = [x + sz for x in need[s:e]]
                top[s:e] = placed.saved_top
                frame.placed = None
            # the next candidate, skipping ones identical to a buffer tried here already
            cands, tried = frame.cands, frame.tried
            while frame.position < len(cands):
                floor, *_, i = cands[frame.position]
                frame.position += 1
                if sig[i] not in tried:
                    tried.add(sig[i])
                    break
            else:
                stack.pop()
                continue
            s, e = span[i]
            sz = size[i]
            new_top = floor + sz
            saved = top[s:e]
            top[s:e] = [new_top] * (e - s)
            need[s:e] = [x - sz for x in need[s:e]]
            raised = []
            for j in near[i]:
                if j in unplaced and base[j] < new_top:
                    raised.append((j, base[j]))
                    base[j] = new_top
            unplaced.discard(i)
            offsets[i] = floor
            frame.placed = _Placed(i, saved, raised)
            height = frame.height if frame.height > new_top else new_top
            child = visit(floor, height)
            if child is True:
                return
            if child is not False:
                stack.append(_Frame(child, height))

    try:
        search()
        proved = True
    except _Timeout:
        proved = False
    return best, best_arena, proved, nodes


def exact_offsets(
    items: dict[int, Item],
    time_limit: float,
    hint: dict[int, int] | None = None,
) -> ExactResult:
    """Minimise the arena for fixed lifetimes; `proved` when optimality is established."""
    deadline = time.perf_counter() + max(0.0, time_limit)
    if hint is None:
        hint, _ = best_fit(items)
    lower = arena_lower_bound(items)
    groups = components({i: it for i, it in items.items() if it.size > 0})
    offsets = {i: 0 for i in items}
    arena = 0
    proved = True
    nodes = 0
    # hardest (highest bound) groups first: they decide the arena
    ranked = sorted(groups, key=lambda grp: -arena_lower_bound({i: items[i] for i in grp}))
    for grp in ranked:
        sub = {i: items[i] for i in grp}
        sub_hint = max(hint[i] + items[i].size for i in grp)
        sub_lower = arena_lower_bound(sub)
        target = max(sub_lower, arena)
        for i in grp:
            offsets[i] = hint[i]
        if sub_hint <= target:
            arena = max(arena, sub_hint)
            continue
        # restarts: short dives with two tie-breaking rules, then a full search
        found, found_arena, done = None, sub_hint, False
        for tie, limit in (("start", 50 * len(grp)), ("size", 50 * len(grp)), ("start", 0)):
            got, got_arena, done, k = _search(sub, grp, found_arena, target, deadline, tie, limit)
            nodes += k
            if got is not None:
                found, found_arena = got, got_arena
            if done or found_arena <= target or time.perf_counter() > deadline:
                break
        done = done or found_arena <= target
        if found is not None:
            offsets.update(found)
            arena = max(arena, found_arena)
        else:
            arena = max(arena, sub_hint)
        if not done:
            proved = False
    # the arena is proved optimal when every group reached its bound or was searched out,
    # or when it meets the global bound anyway
    proved = proved or arena <= lower
    return ExactResult(offsets, arena, lower, proved, nodes)
