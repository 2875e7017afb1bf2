"""Solver-neutral MILP models (loaded by the Gurobi and HiGHS adapters).

Order model, after MODeL (Steiner et al., ICML 2023): a boolean x[v, s] says operation v runs
at step s, only for s inside v's ASAP/ALAP window. A buffer is live at step s when it has
been created by then and some consumer has not run before s (MODeL's "created"/"preserved"
variables collapse into one live indicator L[b, s] here, kept only inside the buffer's own
window); the peak variable bounds the live bytes of every step and is minimised.

Offsets model: integer addresses in alignment units, an arena variable above every buffer,
and a big-M disjunction (one boolean per pair) for every pair of buffers that are live
together; pairs that are never live together are left out (prune_pairs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .graph import Graph
from .heuristics import Item, slot_size
from .intervals import overlaps
from .options import PlannerOptions
from .solvers import (
    buffer_interval_window,
    graph_unit,
    interchangeable_pairs,
    op_windows,
    size_unit,
    step_windows,
)


@dataclass
class Milp:
    """Minimise sum(obj * var) subject to lo <= row <= hi and variable bounds."""

    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    obj: list[float] = field(default_factory=list)
    start: list[float | None] = field(default_factory=list)
    rows: list[tuple[dict[int, float], float, float]] = field(default_factory=list)

    def var(self, lb: float, ub: float, integer: bool = False, obj: float = 0.0) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(integer)
        self.obj.append(obj)
        self.start.append(None)
        return len(self.lb) - 1

    def row(self, coefs: dict[int, float], lo: float, hi: float) -> None:
        self.rows.append((coefs, lo, hi))

    @property
    def n_vars(self) -> int:
        return len(self.lb)

    @property
    def n_rows(self) -> int:
        return len(self.rows)


INF = float("inf")


@dataclass
class OrderMilp:
    milp: Milp
    x: dict[tuple[int, int], int]
    peak: int
    unit: int
    shared: bool = False  # operations share steps: the model's bound proves nothing

    def decode(self, values: list[float], n: int) -> list[int]:
        pos = {}
        for (v, s), j in self.x.items():
            if values[j] > 0.5:
                pos[v] = s
        return sorted(range(n), key=lambda v: (pos.get(v, n), v))


def order_milp(
    g: Graph,
    options: PlannerOptions,
    upper: int,
    lower: int,
    unit: int | None = None,
    live_vars: dict[tuple[int, int], int] | None = None,
    shared: bool = False,
) -> OrderMilp:
    """Time-indexed order model. When `live_vars` is given it is filled with the (boolean)
    live indicator of every (buffer, step) pair, for the joint model to reuse. `shared`:
    operations may share timesteps (`step_windows`); else exactly one per step."""
    m = Milp()
    n = g.n
    unit = unit or graph_unit(g, options.scale_sizes)
    steps, win = step_windows(g, options) if shared else (n, op_windows(g, options.use_windows))
    x: dict[tuple[int, int], int] = {}
    for v in range(n):
        for s in range(win[v][0], win[v][1] + 1):
            x[v, s] = m.var(0, 1, True)
    for v in range(n):
        m.row({x[v, s]: 1 for s in range(win[v][0], win[v][1] + 1)}, 1, 1)
    if steps == n:
        by_step: dict[int, dict[int, float]] = {}
        for (_v, s), j in x.items():
            by_step.setdefault(s, {})[j] = 1
        for s in range(n):
            m.row(by_step.get(s, {}), 1, 1)

    def position(v: int) -> dict[int, float]:
        return {x[v, s]: s for s in range(win[v][0], win[v][1] + 1)}

    pairs = [(u, v, -1) for u in range(n) for v in g.succ[u]]
    if options.symmetry_breaking:  # interchangeable operations may share a step
        pairs += [(u, v, 0 if steps < n else -1) for u, v in interchangeable_pairs(g)]
    for u, v, gap in pairs:
        coefs = position(u)
        for j, c in position(v).items():
            coefs[j] = coefs.get(j, 0) - c
        m.row(coefs, -INF, gap)
    # shared steps count more than an order needs: the heuristic peak may be out of reach
    top = sum(b.size for b in g.bufs) if steps < n else upper
    peak = m.var(-(-lower // unit), -(-max(top, lower) // unit), False, 1.0)
    const = [0] * steps
    live: dict[int, dict[int, float]] = {s: {} for s in range(steps)}
    for i, b in enumerate(g.bufs):
        size = b.size // unit
        if size == 0:
            continue
        s_lo, _, _, e_hi = buffer_interval_window(g, i, win, steps)
        if b.resident or (b.producer < 0 and b.live_to_end):
            for s in range(steps):
                const[s] += size
            continue
        for s in range(s_lo, e_hi):
            lvar = m.var(0, 1, live_vars is not None)
            live[s][lvar] = size
            if live_vars is not None:
                live_vars[i, s] = lvar
            made: dict[int, float] = {}
            made_const = 0.0
            if b.producer < 0:
                made_const = 1.0
            else:
                p = b.producer
                made = {x[p, t]: 1 for t in range(win[p][0], min(s, win[p][1]) + 1)}
            if b.live_to_end or (b.producer >= 0 and not b.consumers):
                coefs = {lvar: 1.0}
                src = (
                    made
                    if b.live_to_end
                    else ({x[b.producer, s]: 1} if (b.producer, s) in x else {})
                )
                for j, c in src.items():
                    coefs[j] = coefs.get(j, 0) - c
                m.row(coefs, made_const if b.live_to_end else 0, INF)
                continue
            for c in b.consumers:
                coefs = {lvar: 1.0}
                for j, v in made.items():
                    coefs[j] = coefs.get(j, 0) - v
                for t in range(win[c][0], min(s - 1, win[c][1]) + 1):
                    coefs[x[c, t]] = coefs.get(x[c, t], 0) + 1
                m.row(coefs, made_const, INF)
    for s in range(steps):
        coefs = {peak: 1.0}
        for j, c in live[s].items():
            coefs[j] = -c
        m.row(coefs, const[s], INF)
    return OrderMilp(m, x, peak, unit, steps < n)


@dataclass
class OffsetMilp:
    milp: Milp
    k: dict[int, tuple[int, int]]  # buffer -> (variable, alignment in units)
    arena: int
    unit: int

    def decode(self, values: list[float], items: dict[int, Item]) -> dict[int, int]:
        out = {i: 0 for i in items}
        for i, (j, al) in self.k.items():
            out[i] = round(values[j]) * al * self.unit
        return out


def offsets_milp(
    items: dict[int, Item], options: PlannerOptions, upper: int, lower: int
) -> OffsetMilp:
    m = Milp()
    unit = size_unit(
        [it.size for it in items.values()] + [it.alignment for it in items.values()],
        options.scale_sizes,
    )
    ub = upper // unit
    arena = m.var(-(-lower // unit), ub, True, 1.0)
    k: dict[int, tuple[int, int]] = {}
    keys = sorted(i for i, it in items.items() if it.size > 0)
    for i in keys:
        it = items[i]
        size, al = it.size // unit, max(1, it.alignment // unit)
        k[i] = (m.var(0, max(0, (ub - size) // al), True), al)
        m.row({arena: 1.0, k[i][0]: -al}, size, INF)
    big = ub
    for a, i in enumerate(keys):
        for j in keys[a + 1 :]:
            ii, jj = items[i], items[j]
            together = overlaps(ii, jj)
            if not together and options.prune_pairs:
                continue
            slack = 0 if together else big
            y = m.var(0, 1, True)
            (ki, ai), (kj, aj) = k[i], k[j]
            si, sj = ii.size // unit, jj.size // unit
            # i below j when y = 1, j below i when y = 0
            m.row({ki: ai, kj: -aj, y: big}, -INF, big - si + slack)
            m.row({kj: aj, ki: -ai, y: -big}, -INF, -sj + slack)
    return OffsetMilp(m, k, arena, unit)


@dataclass
class JointMilp:
    order: OrderMilp
    k: dict[int, tuple[int, int]]
    arena: int
    weight: int


def joint_milp(
    g: Graph, options: PlannerOptions, upper_peak: int, upper_arena: int, lower: int
) -> JointMilp:
    """MODeL's joint model: the order model with boolean live indicators, plus an address per
    placed buffer and, for every pair that can be live at a common step, a big-M disjunction
    that is enforced only at steps where both are live. Objective: peak first, then arena."""
    unit = graph_unit(g, options.scale_sizes, with_alignment=True)
    live: dict[tuple[int, int], int] = {}
    om = order_milp(g, options, upper_peak, lower, unit=unit, live_vars=live)
    m = om.milp
    ub = -(-upper_arena // unit)
    weight = ub + 1
    m.obj[om.peak] = float(weight)
    arena = m.var(0, ub, True, 1.0)
    k: dict[int, tuple[int, int]] = {}
    steps: dict[int, set[int]] = {}
    for (i, s), _ in live.items():
        steps.setdefault(i, set()).add(s)
    placed = [i for i, b in enumerate(g.bufs) if b.placed and b.size // unit > 0]
    slots = {
        i: slot_size(g.bufs[i].size, g.bufs[i].alignment, options.pad_sizes) // unit for i in placed
    }
    for i in placed:
        b = g.bufs[i]
        size, al = slots[i], max(1, b.alignment // unit)
        k[i] = (m.var(0, max(0, (ub - size) // al), True), al)
        m.row({arena: 1.0, k[i][0]: -al}, size, INF)
    always = set(range(g.n))
    for a, i in enumerate(placed):
        si = steps.get(i, always)
        for j in placed[a + 1 :]:
            sj = steps.get(j, always)
            common = sorted(si & sj) if options.prune_pairs else sorted(si | sj)
            if not common:
                continue
            y = m.var(0, 1, True)
            (ki, ai), (kj, aj) = k[i], k[j]
            szi, szj = slots[i], slots[j]
            for s in common:
                li, lj = live.get((i, s)), live.get((j, s))
                # relax by ub for each of the two buffers not live at s
                c1 = {ki: ai, kj: -aj, y: ub}
                c2 = {kj: aj, ki: -ai, y: -ub}
                rhs1, rhs2 = ub - szi + 2 * ub, -szj + 2 * ub
                for lv, here in ((li, s in si), (lj, s in sj)):
                    if lv is not None:
                        c1[lv] = c1.get(lv, 0) + ub
                        c2[lv] = c2.get(lv, 0) + ub
                    elif here:  # constant live (resident or always-live input)
                        rhs1 -= ub
                        rhs2 -= ub
                m.row(c1, -INF, rhs1)
                m.row(c2, -INF, rhs2)
    return JointMilp(om, k, arena, weight)
