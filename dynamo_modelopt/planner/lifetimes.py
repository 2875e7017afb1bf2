"""Lifetimes of alias roots under the timing model of `problem` (one operation per step), as
half-open live ranges `[start, end)` (`intervals.LiveRange`)."""

from __future__ import annotations

from .graph import build_graph, fold_aliases
from .intervals import LiveRange
from .problem import Problem

__all__ = ["fold_aliases", "is_topological", "live_bytes_profile", "live_ranges", "peak_live_bytes"]


def _positions(problem: Problem, order: list[str]) -> list[int]:
    index = {o: i for i, o in enumerate(problem.op_names)}
    return [index[o] for o in order]


def live_ranges(problem: Problem, order: list[str]) -> dict[str, LiveRange]:
    """Live range `[start, end)` of every alias root when operations run in `order`.

    Operations missing from `order` are ignored (a consumer that never runs extends nothing);
    a consumer scheduled before its producer is clamped to the producer step (the validator
    reports it as OUTSIDE_LIFETIME)."""
    g = build_graph(problem)
    n = len(order)
    pos = [-1] * g.n
    for i, v in enumerate(_positions(problem, order)):
        pos[v] = i
    out: dict[str, LiveRange] = {}
    for b in g.bufs:
        start = 0 if b.producer < 0 or b.resident or pos[b.producer] < 0 else pos[b.producer]
        if b.resident or b.live_to_end:
            last = n - 1
        else:
            uses = [pos[c] for c in b.consumers if pos[c] >= 0]
            last = max(uses) if uses else start
        out[b.name] = LiveRange.of_steps(start, max(start, last))
    return out


def live_bytes_profile(problem: Problem, order: list[str]) -> list[int]:
    """Bytes live at each step, counting every alias root (placed in the arena or not)."""
    ranges = live_ranges(problem, order)
    sizes = {b.name: b.size for b in build_graph(problem).bufs}
    diff = [0] * (len(order) + 1)
    for name, (s, e) in ranges.items():
        diff[s] += sizes[name]
        diff[e] -= sizes[name]
    out, cur = [], 0
    for i in range(len(order)):
        cur += diff[i]
        out.append(cur)
    return out


def peak_live_bytes(problem: Problem, order: list[str]) -> int:
    """Maximum of `live_bytes_profile` (0 for an empty graph)."""
    return max(live_bytes_profile(problem, order), default=0)


def is_topological(problem: Problem, order: list[str]) -> bool:
    """True when `order` holds every operation once and respects data edges and precedences."""
    if sorted(order) != sorted(problem.op_names):
        return False
    g = build_graph(problem)
    return g.is_topological(_positions(problem, order))
