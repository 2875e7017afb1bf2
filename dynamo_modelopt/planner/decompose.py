"""Exact decomposition of the order problem at cut operations.

An operation v is a cut when every other operation is its ancestor or its descendant: all
topological orders put v's ancestors first, then v, then its descendants. Splitting at the
cuts gives consecutive blocks that every order keeps contiguous and in the same sequence.
Inside a block, the live bytes depend only on the block's own order: a buffer made earlier
and used later is a constant there, a buffer made earlier and used in the block is live from
the block's first step, a buffer made in the block and used later stays live to the block's
end. So each block is an independent, smaller instance; the whole peak is the largest block
peak, and optimal block orders concatenate to an optimal order (the split is exact). ROAM
(Shu et al., 2023) likewise cuts large graphs into segments that are ordered separately;
here we only cut where the split loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .graph import Buf, Graph


@dataclass
class Block:
    """Operations (global indices, given order) and the block's own sub-instance."""

    ops: list[int]
    graph: Graph

    def to_global(self, local_order: list[int]) -> list[int]:
        return [self.ops[v] for v in local_order]

    def to_local(self, global_order: list[int]) -> list[int]:
        where = {v: k for k, v in enumerate(self.ops)}
        return [where[v] for v in global_order if v in where]

    @property
    def trivial(self) -> bool:
        """Only one topological order exists."""
        return all(lo == hi for lo, hi in self.graph.windows)


def cut_operations(g: Graph) -> list[int]:
    """Operations related to every other one (on the graph's bitsets: networkx measured 500x
    slower on GPT-2-XL, see `Graph.ancestors`)."""
    full = (1 << g.n) - 1
    return [v for v in range(g.n) if (g.ancestors[v] | g.descendants[v] | (1 << v)) == full]


def blocks(g: Graph, min_ops: int = 12) -> list[Block]:
    """Split `g` at its cut operations; neighbouring small blocks are merged until each holds
    at least `min_ops` operations (any union of consecutive blocks is still exact)."""
    cuts = cut_operations(g)
    if g.n == 0:
        return []
    cut_mask = 0
    for c in cuts:
        cut_mask |= 1 << c
    key = [((g.ancestors[v] | (1 << v)) & cut_mask).bit_count() for v in range(g.n)]
    groups: dict[int, list[int]] = {}
    for v in range(g.n):
        groups.setdefault(key[v], []).append(v)
    parts: list[list[int]] = []
    for k in sorted(groups):
        if parts and len(parts[-1]) < min_ops:
            parts[-1].extend(groups[k])
        else:
            parts.append(list(groups[k]))
    if len(parts) > 1 and len(parts[-1]) < min_ops:
        tail = parts.pop()
        parts[-1].extend(tail)
    block_of = parts_index(parts)
    return [Block(sorted(p), sub_graph(g, sorted(p), block_of)) for p in parts]


def parts_index(parts: list[list[int]]) -> dict[int, int]:
    return {v: k for k, p in enumerate(parts) for v in p}


def sub_graph(g: Graph, ops: list[int], block_of: dict[int, int]) -> Graph:
    """The block's own instance (see the module docstring for the buffer rules)."""
    me = block_of[ops[0]]
    local = {v: k for k, v in enumerate(ops)}
    bufs: list[Buf] = []
    for b in g.bufs:
        if b.resident:  # occupies memory over the whole graph
            bufs.append(Buf(b.name, b.size, -1, (), False, True, b.placed, b.alignment))
            continue
        pb = block_of[b.producer] if b.producer >= 0 else -1
        here = tuple(sorted(local[c] for c in b.consumers if block_of[c] == me))
        later = any(block_of[c] > me for c in b.consumers)
        if pb > me:
            continue
        if pb == me:
            bufs.append(
                Buf(
                    b.name,
                    b.size,
                    local[b.producer],
                    here,
                    b.live_to_end or later,
                    False,
                    b.placed,
                    b.alignment,
                )
            )
            continue
        # made before this block (or a graph input)
        first_block = pb < 0 and me == 0
        if b.live_to_end or later:
            bufs.append(Buf(b.name, b.size, -1, (), False, True, b.placed, b.alignment))
        elif here or (first_block and not b.consumers):
            bufs.append(Buf(b.name, b.size, -1, here, False, False, b.placed, b.alignment))
    succ = [[local[w] for w in g.succ[v] if w in local] for v in ops]
    pred = [[local[u] for u in g.pred[v] if u in local] for v in ops]
    return Graph([g.ops[v] for v in ops], bufs, succ, pred, f"{g.name}[{me}]")
