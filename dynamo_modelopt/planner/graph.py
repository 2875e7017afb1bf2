"""Internal, index-based view of a folded `Problem` that every planner stage works on.

Operations become integers in their given order, alias roots become `Buf` records, and the
lifetime rule of the `problem` docstring is implemented once, in `Graph.interval` (half-open
live ranges, see `intervals`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .intervals import LiveRange
from .problem import Operation, Problem, Tensor


@dataclass(frozen=True)
class Buf:
    """One alias root: a storage with its size, producer/consumer operations (indices)."""

    name: str
    size: int
    producer: int  # -1 for a graph input
    consumers: tuple[int, ...]  # sorted, producer excluded
    live_to_end: bool
    resident: bool
    placed: bool
    alignment: int


def fold_tensors(problem: Problem) -> list[Tensor]:
    """Merge every alias into its root: the root keeps its size and alignment, its consumers
    become the union of all uses (an alias's producer counts as a use of the root), and
    `live_to_end` / `resident` hold when they hold for any member."""
    roots: dict[str, Tensor] = {t.name: t for t in problem.tensors if t.alias_of is None}
    uses: dict[str, set[str]] = {n: set(t.consumers) for n, t in roots.items()}
    lte = {n: t.live_to_end for n, t in roots.items()}
    res = {n: t.resident for n, t in roots.items()}
    for t in problem.tensors:
        if t.alias_of is None:
            continue
        r = problem.alias_root(t.name)
        uses[r].update(t.consumers)
        if t.producer is not None:
            uses[r].add(t.producer)
        lte[r] = lte[r] or t.live_to_end
        res[r] = res[r] or t.resident
    out = []
    for n, t in roots.items():
        cons = tuple(sorted(c for c in uses[n] if c != t.producer))
        out.append(
            Tensor(
                name=n,
                size=t.size,
                producer=t.producer,
                consumers=cons,
                alignment=t.alignment,
                live_to_end=lte[n],
                resident=res[n],
                placed=t.placed,
            )
        )
    return out


def fold_aliases(problem: Problem) -> Problem:
    """A copy of `problem` with only alias roots left (see `fold_tensors`)."""
    return Problem(
        operations=[Operation(o.name) for o in problem.operations],
        tensors=fold_tensors(problem),
        precedences=list(problem.precedences),
        name=problem.name,
        meta=dict(problem.meta),
    )


@dataclass
class Graph:
    """Operations as indices 0..n-1 (given order), folded buffers, and the DAG between them."""

    ops: list[str]
    bufs: list[Buf]
    succ: list[list[int]]
    pred: list[list[int]]
    name: str = "problem"
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {o: i for i, o in enumerate(self.ops)}

    @property
    def n(self) -> int:
        return len(self.ops)

    # -- structure ------------------------------------------------------------------------
    @cached_property
    def topo(self) -> list[int]:
        """A topological order (Kahn, smallest given index first); ValueError on a cycle."""
        import heapq

        indeg = [len(p) for p in self.pred]
        heap = [v for v in range(self.n) if indeg[v] == 0]
        heapq.heapify(heap)
        out: list[int] = []
        while heap:
            v = heapq.heappop(heap)
            out.append(v)
            for w in self.succ[v]:
                indeg[w] -= 1
                if indeg[w] == 0:
                    heapq.heappush(heap, w)
        if len(out) != self.n:
            raise ValueError(f"problem {self.name!r}: the operation graph has a cycle")
        return out

    # Reachability stays on Python-int bitsets, not networkx: on GPT-2-XL backward (1256
    # operations) both bitset sets take under 1 ms, networkx's ancestors + descendants per
    # node 272 ms and transitive_closure_dag 290 ms (bench/planner/reachability.py); the
    # bounds also OR these sets per buffer, which a node-set representation would slow more.
    @cached_property
    def ancestors(self) -> list[int]:
        """Bitset of strict ancestors per operation."""
        return _reach(self.topo, self.pred, self.n)

    @cached_property
    def descendants(self) -> list[int]:
        """Bitset of strict descendants per operation."""
        return _reach(list(reversed(self.topo)), self.succ, self.n)

    @cached_property
    def windows(self) -> list[tuple[int, int]]:
        """ASAP/ALAP step window of each operation (MODeL's span restriction): an operation
        cannot run before all its ancestors nor after all its descendants. (earliest, latest)
        are both possible steps: the domain of a position variable, not a live range."""
        n = self.n
        return [
            (self.ancestors[v].bit_count(), n - 1 - self.descendants[v].bit_count())
            for v in range(n)
        ]

    @cached_property
    def levels(self) -> tuple[list[int], list[int]]:
        """(depth, height) per operation: operations on the longest path from a source to it
        and from it to a sink, itself excluded. The critical path holds max(depth) + 1."""
        depth = [0] * self.n
        for v in self.topo:
            for u in self.pred[v]:
                depth[v] = max(depth[v], depth[u] + 1)
        height = [0] * self.n
        for v in reversed(self.topo):
            for w in self.succ[v]:
                height[v] = max(height[v], height[w] + 1)
        return depth, height

    @cached_property
    def outs(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.n)]
        for i, b in enumerate(self.bufs):
            if b.producer >= 0:
                out[b.producer].append(i)
        return out

    @cached_property
    def ins(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.n)]
        for i, b in enumerate(self.bufs):
            for c in b.consumers:
                out[c].append(i)
        return out

    # -- timing model -----------------------------------------------------------------------
    def interval(self, b: Buf, pos: list[int]) -> LiveRange:
        """Live range `[start, end)` of `b` when operation v runs at step pos[v]."""
        start = 0 if b.producer < 0 or b.resident else pos[b.producer]
        if b.resident or b.live_to_end:
            return LiveRange(start, max(start + 1, self.n))
        if b.consumers:
            return LiveRange(start, max(start, max(pos[c] for c in b.consumers)) + 1)
        return LiveRange(start, start + 1)

    def intervals(self, order: list[int]) -> list[LiveRange]:
        pos = positions(order, self.n)
        return [self.interval(b, pos) for b in self.bufs]

    def profile(self, order: list[int], placed_only: bool = False) -> list[int]:
        """Live bytes per step for a complete order."""
        n = self.n
        if n == 0:
            return []
        diff = [0] * (n + 1)
        for b, (s, e) in zip(self.bufs, self.intervals(order), strict=True):
            if b.size and (b.placed or not placed_only):
                diff[s] += b.size
                diff[e] -= b.size
        out, cur = [], 0
        for i in range(n):
            cur += diff[i]
            out.append(cur)
        return out

    def peak(self, order: list[int]) -> int:
        return max(self.profile(order), default=0)

    def is_topological(self, order: list[int]) -> bool:
        if sorted(order) != list(range(self.n)):
            return False
        pos = positions(order, self.n)
        return all(pos[u] < pos[v] for u in range(self.n) for v in self.succ[u])

    def names(self, order: list[int]) -> list[str]:
        return [self.ops[i] for i in order]


def _reach(order: list[int], towards: list[list[int]], n: int) -> list[int]:
    """Bitsets of the operations reachable through `towards`, `order` visiting them first."""
    reach = [0] * n
    for v in order:
        bits = 0
        for u in towards[v]:
            bits |= reach[u] | (1 << u)
        reach[v] = bits
    return reach


def positions(order: list[int], n: int) -> list[int]:
    pos = [0] * n
    for i, v in enumerate(order):
        pos[v] = i
    return pos


def build_graph(problem: Problem) -> Graph:
    """Fold aliases and index everything; raises ValueError on a cyclic problem."""
    ops = problem.op_names
    index = {o: i for i, o in enumerate(ops)}
    bufs = []
    for t in fold_tensors(problem):
        prod = index[t.producer] if t.producer is not None else -1
        cons = tuple(sorted({index[c] for c in t.consumers} - {prod}))
        bufs.append(
            Buf(t.name, t.size, prod, cons, t.live_to_end, t.resident, t.placed, t.alignment)
        )
    succ: list[set[int]] = [set() for _ in ops]
    for b in bufs:
        if b.producer >= 0:
            succ[b.producer].update(b.consumers)
    for a, c in problem.precedences:
        if a != c:
            succ[index[a]].add(index[c])
    pred: list[list[int]] = [[] for _ in ops]
    for u, ss in enumerate(succ):
        for v in ss:
            pred[v].append(u)
    g = Graph(ops, bufs, [sorted(s) for s in succ], [sorted(p) for p in pred], problem.name)
    _ = g.topo  # raise early on cycles
    return g
