"""Lower bounds on the peak live bytes over all topological orders.

Combinatorial bound: when operation v runs, a buffer is live in *every* order if it is
certainly allocated (a graph input, a resident, or produced by v or an ancestor of v) and
certainly not yet freed (resident, live to the end, consumed by v or a descendant of v, or
produced by v itself). The bytes of such buffers at v bound the peak from below; the maximum
over v is the bound. A solver's proven dual bound is combined by taking the maximum.
"""

from __future__ import annotations

from .graph import Graph, build_graph
from .problem import Problem


def forced_masks(g: Graph) -> list[int]:
    """Per buffer, the bitset of operations at whose step it is live in every order."""
    full = (1 << g.n) - 1
    out = []
    for b in g.bufs:
        if b.size == 0:
            out.append(0)
            continue
        if b.producer < 0 or b.resident:
            made = full
        else:
            made = g.descendants[b.producer] | (1 << b.producer)
        if b.resident or b.live_to_end:
            kept = full
        else:
            kept = 0 if b.producer < 0 else 1 << b.producer
            for c in b.consumers:
                kept |= g.ancestors[c] | (1 << c)
        out.append(made & kept)
    return out


def forced_profile(g: Graph) -> list[int]:
    """Bytes live at each operation's step in every topological order (by operation)."""
    import numpy as np

    n = g.n
    if n == 0:
        return []
    nbytes = (n + 7) // 8
    total = np.zeros(nbytes * 8, dtype=np.int64)
    for b, mask in zip(g.bufs, forced_masks(g), strict=True):
        if mask:
            bits = np.unpackbits(
                np.frombuffer(mask.to_bytes(nbytes, "little"), dtype=np.uint8), bitorder="little"
            )
            total += bits.astype(np.int64) * b.size
    return [int(x) for x in total[:n]]


def forced_live_bytes(g: Graph, v: int) -> int:
    """Bytes live at v's step in every topological order."""
    return sum(b.size for b, m in zip(g.bufs, forced_masks(g), strict=True) if (m >> v) & 1)


def first_step_bound(g: Graph) -> int:
    """Bytes live at step 0 in every order: every graph input and resident, plus the outputs
    of whichever source operation runs first (the cheapest one)."""
    if g.n == 0:
        return 0
    base = sum(b.size for b in g.bufs if b.producer < 0 or b.resident)
    cheapest = min(
        sum(g.bufs[i].size for i in g.outs[v] if not g.bufs[i].resident)
        for v in range(g.n)
        if not g.pred[v]
    )
    return base + cheapest


def combinatorial_lower_bound(g: Graph) -> int:
    """max over operations of the forced live bytes, and the first-step bound (0 for an
    empty graph)."""
    return max(max(forced_profile(g), default=0), first_step_bound(g))


def peak_lower_bound(problem: Problem, solver_bound: int = 0) -> int:
    """The combinatorial bound combined with a solver's proven bound."""
    return max(combinatorial_lower_bound(build_graph(problem)), solver_bound)
