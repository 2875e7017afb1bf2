"""Independent checker of a `Plan` against its `Problem` (order, lifetimes, addresses, peak)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .graph import build_graph
from .problem import Plan, Problem


class ErrorKind(Enum):
    ORDER_INCOMPLETE = "order_incomplete"
    ORDER_NOT_TOPOLOGICAL = "order_not_topological"
    OUTSIDE_LIFETIME = "outside_lifetime"
    MISSING_OFFSET = "missing_offset"
    UNKNOWN_OFFSET = "unknown_offset"
    MISALIGNED = "misaligned"
    OVERLAP = "overlap"
    ARENA_EXCEEDED = "arena_exceeded"
    PEAK_MISMATCH = "peak_mismatch"
    BOUND_EXCEEDS_PEAK = "bound_exceeds_peak"


@dataclass(frozen=True)
class PlanError:
    kind: ErrorKind
    message: str


class InvalidPlanError(ValueError):
    """Raised by `check_plan`; `errors` lists every problem found."""

    def __init__(self, errors: list[PlanError]) -> None:
        self.errors = errors
        lines = "\n".join(f"  {e.kind.name}: {e.message}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"invalid plan ({len(errors)} errors):\n{lines}{more}")


def _check_order(problem: Problem, order: list[str]) -> list[PlanError]:
    errs: list[PlanError] = []
    ops = problem.op_names
    known = set(ops)
    seen: set[str] = set()
    for o in order:
        if o not in known:
            errs.append(PlanError(ErrorKind.ORDER_INCOMPLETE, f"unknown operation {o!r}"))
        elif o in seen:
            errs.append(PlanError(ErrorKind.ORDER_INCOMPLETE, f"operation {o!r} twice"))
        seen.add(o)
    missing = [o for o in ops if o not in seen]
    if missing:
        errs.append(
            PlanError(
                ErrorKind.ORDER_INCOMPLETE, f"{len(missing)} operations missing: {missing[:5]}"
            )
        )
    return errs


def validate(problem: Problem, plan: Plan) -> list[PlanError]:
    """Every way in which `plan` breaks the problem's rules (empty list = valid)."""
    errs = _check_order(problem, plan.order)
    if errs:
        return errs
    g = build_graph(problem)
    order = [g.index[o] for o in plan.order]
    pos = [0] * g.n
    for i, v in enumerate(order):
        pos[v] = i
    for u in range(g.n):
        for v in g.succ[u]:
            if pos[u] >= pos[v]:
                errs.append(
                    PlanError(
                        ErrorKind.ORDER_NOT_TOPOLOGICAL,
                        f"{g.ops[u]!r} (step {pos[u]}) must run before "
                        f"{g.ops[v]!r} (step {pos[v]})",
                    )
                )
    for b in g.bufs:
        if b.producer < 0:
            continue
        for c in b.consumers:
            if pos[c] < pos[b.producer]:
                errs.append(
                    PlanError(
                        ErrorKind.OUTSIDE_LIFETIME,
                        f"tensor {b.name!r} used by {g.ops[c]!r} at step {pos[c]} before "
                        f"its producer {g.ops[b.producer]!r} at step {pos[b.producer]}",
                    )
                )
    ivs = g.intervals(order)
    placed = [i for i, b in enumerate(g.bufs) if b.placed]
    placed_names = {g.bufs[i].name for i in placed}
    for name in sorted(plan.offsets):
        if name not in placed_names:
            errs.append(
                PlanError(ErrorKind.UNKNOWN_OFFSET, f"offset for {name!r}, not a placed root")
            )
    have: list[int] = []
    for i in placed:
        b = g.bufs[i]
        off = plan.offsets.get(b.name)
        if off is None:
            errs.append(PlanError(ErrorKind.MISSING_OFFSET, f"placed tensor {b.name!r} has none"))
            continue
        if off < 0 or off % b.alignment:
            errs.append(
                PlanError(
                    ErrorKind.MISALIGNED,
                    f"tensor {b.name!r} at {off} (alignment {b.alignment})",
                )
            )
        if off + b.size > plan.arena_bytes:
            errs.append(
                PlanError(
                    ErrorKind.ARENA_EXCEEDED,
                    f"tensor {b.name!r} ends at {off + b.size} > arena {plan.arena_bytes}",
                )
            )
        have.append(i)
    # sweep over steps: pairs that share a step and overlap in memory
    events = sorted(have, key=lambda i: (ivs[i].start, i))
    active: list[int] = []
    for i in events:
        s = ivs[i].start
        active = [j for j in active if ivs[j].covers(s)]  # started by s: live at s
        bi = g.bufs[i]
        if bi.size == 0:
            continue
        lo = plan.offsets[bi.name]
        for j in active:
            bj = g.bufs[j]
            lo2 = plan.offsets[bj.name]
            if lo < lo2 + bj.size and lo2 < lo + bi.size:
                errs.append(
                    PlanError(
                        ErrorKind.OVERLAP,
                        f"{bi.name!r} [{lo}, {lo + bi.size}) and {bj.name!r} "
                        f"[{lo2}, {lo2 + bj.size}) are live together at step {s}",
                    )
                )
        active.append(i)
    peak = g.peak(order)
    if plan.peak_bytes != peak:
        errs.append(
            PlanError(
                ErrorKind.PEAK_MISMATCH, f"plan says peak {plan.peak_bytes}, recomputed {peak}"
            )
        )
    if plan.lower_bound_bytes > peak:
        errs.append(
            PlanError(
                ErrorKind.BOUND_EXCEEDS_PEAK,
                f"lower bound {plan.lower_bound_bytes} > recomputed peak {peak}",
            )
        )
    return errs


def check_plan(problem: Problem, plan: Plan) -> None:
    """Raise `InvalidPlanError` unless `validate` finds nothing."""
    errs = validate(problem, plan)
    if errs:
        raise InvalidPlanError(errs)
