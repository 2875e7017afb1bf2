"""One record per compiled graph: what Inductor would have done, what we planned, how sure we are.

`get_reports()` returns the records made since the last `clear_reports()`, in compile order.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .capture.joint import BackwardBoundary
    from .capture.workspace import KernelMeasurement

GRAPH_KINDS = ("forward", "backward", "inference")
STATUSES = ("optimal", "time_limit", "heuristic", "fallback")


@dataclass
class GraphInternals:
    """What the backend's stages hand each other about one graph, beside its report.

    Not part of the report's public form: `GraphReport.internals` is left out of the report's
    repr and comparisons, and nothing here is documented for users. It travels with the report
    object, so it survives the FX graph cache's round trip (`inductor/report_cache.py` pickles
    the reports whole) and a cache hit hands on what a miss did.

    boundary: a backward's compiled code, step by step, and when it reads what its forward
        saved (`capture.joint.backward_boundary`; written by `inductor/emitted.py`, read by
        `decide.prepare` for the planned saved set). None for other graphs, or where it could
        not be made.
    measured_kernels: the extern kernels timed for the graph's estimated run time (written by
        `inductor/order_pass.py`; `decide.retime_trials` times them again side by side).
    recompute_plan: the summary of the saved-set plan the graph was compiled with
        (`inductor.saved_set.PlannedPartitioner.plans`; written by `decide.compile_trial`, read
        by `decide.recompute_plan_of` and `step.recompute_plans_of`), or None.
    """

    boundary: BackwardBoundary | None = None
    measured_kernels: list[KernelMeasurement] = field(default_factory=list)
    recompute_plan: dict[str, Any] | None = None


@dataclass
class GraphReport:
    """Planning outcome of one compiled graph; all byte figures come from our cost model.

    inductor_peak_bytes: peak of live bytes in the order Inductor itself would have chosen.
    planned_peak_bytes: peak of live bytes in the order the generated code runs: ours where
        `order_changed`, else Inductor's (ours declined: not lower in the emitted code); never
        above inductor_peak_bytes. The planner's own order's figure is
        `details["planner_peak_bytes"]`.
    lower_bound_bytes: proved lower bound on the peak of any valid order.
    emitted_peak_bytes: peak of what the generated code allocates in that order, once Inductor
        has removed kernel-local buffers and reused dying inputs in place (None until codegen).
    arena_bytes: bytes of the arenas the generated code allocates (`details["arena"]`); 0
        where it allocates none. The planner's offset plan: `details["planner_arena_bytes"]`.
    order_changed: whether the generated code runs our order rather than Inductor's.
    status: "optimal" (proved), "time_limit" (best found when time ran out), "heuristic"
        (no solver improved on the heuristics), "fallback" (plain Inductor; see fallback_reason).
        A fallback report has no figures: inductor_peak_bytes, planned_peak_bytes and
        lower_bound_bytes are None (nothing was captured or planned), as is
        emitted_peak_bytes; readers that combine reports count None as absent.
    """

    graph_kind: str
    num_nodes: int
    inductor_peak_bytes: int | None
    planned_peak_bytes: int | None
    lower_bound_bytes: int | None
    solver: str
    status: str
    solve_seconds: float
    fallback_reason: str | None = None
    graph_name: str = ""
    arena_bytes: int = 0
    order_changed: bool = False
    emitted_peak_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # hand-offs between the backend's stages, not part of the public report (see the class)
    internals: GraphInternals = field(default_factory=GraphInternals, repr=False, compare=False)

    @property
    def saved_bytes(self) -> int:
        if self.inductor_peak_bytes is None or self.planned_peak_bytes is None:
            return 0  # a fallback runs Inductor's order: nothing saved
        return self.inductor_peak_bytes - self.planned_peak_bytes

    def summary(self) -> str:
        mib = 1 << 20
        text = (
            f"{self.graph_kind:<9} nodes={self.num_nodes:<5} "
            f"inductor={_mib(self.inductor_peak_bytes)} MiB "
            f"planned={_mib(self.planned_peak_bytes)} MiB "
            f"bound={_mib(self.lower_bound_bytes)} MiB "
            f"{self.solver}/{self.status} {self.solve_seconds:.2f}s"
        )
        if self.emitted_peak_bytes is not None:
            text += f" emitted={self.emitted_peak_bytes / mib:.2f} MiB"
        arena = self.details.get("arena")
        if arena and arena.get("used"):
            text += f" arenas={arena['arena_bytes'] / mib:.2f} MiB in {len(arena['arenas'])}"
        elif arena:
            text += f" no arena ({arena.get('reason')})"
        if self.fallback_reason:
            text += f" fallback: {self.fallback_reason}"
        return text


def _mib(num_bytes: int | None) -> str:
    """A byte figure in MiB, 9 wide; "-" where the report has none (a fallback)."""
    return f"{'-':>9}" if num_bytes is None else f"{num_bytes / (1 << 20):9.2f}"


_lock = threading.Lock()
_reports: list[GraphReport] = []
_collecting = threading.local()
_recording = threading.local()


class ModeloptFallbackWarning(UserWarning):
    """A graph was compiled by plain Inductor because modelopt could not plan it."""


class ModeloptSettingWarning(UserWarning):
    """An option could not act as asked on some graph (a forced setting that does not apply,
    a solver that could not be used), and something else was done instead; said once."""


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A `ModeloptSettingWarning`, the first time this process meets `message`."""
    with _lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(message, ModeloptSettingWarning, stacklevel=3)


def add_report(report: GraphReport) -> None:
    """Publish a report, or hand it to the innermost `collect_reports()` of this thread."""
    for recorder in getattr(_recording, "stack", ()):
        recorder.append(report)
    collector = getattr(_collecting, "stack", None)
    if collector:
        collector[-1].append(report)
        return
    publish_report(report)


def publish_report(report: GraphReport) -> None:
    """Make a report visible to `get_reports()`; a fallback also warns, once, here."""
    if report.status == "fallback":
        warnings.warn(
            f"modelopt: graph {report.graph_name} falls back to plain Inductor: "
            f"{report.fallback_reason}",
            ModeloptFallbackWarning,
            stacklevel=3,
        )
    with _lock:
        _reports.append(report)


@contextmanager
def _pushed(local: threading.local) -> Iterator[list[GraphReport]]:
    """A fresh list on this thread's stack of `local` for the `with` block."""
    stack = local.__dict__.setdefault("stack", [])
    reports: list[GraphReport] = []
    stack.append(reports)
    try:
        yield reports
    finally:
        stack.pop()


def collect_reports() -> AbstractContextManager[list[GraphReport]]:
    """Hold back the reports made inside (a trial compile); publish some with `add_report`."""
    return _pushed(_collecting)


def recording_reports() -> AbstractContextManager[list[GraphReport]]:
    """The reports made inside (published or collected as usual, and listed here too): what
    an FX graph cache hit publishes again (`inductor/report_cache.py`)."""
    return _pushed(_recording)


def get_reports() -> list[GraphReport]:
    """Records of the graphs compiled by the `modelopt` backend since `clear_reports()`."""
    with _lock:
        return list(_reports)


def clear_reports() -> None:
    with _lock:
        _reports.clear()


def format_reports(reports: list[GraphReport] | None = None) -> str:
    """A plain-text table of the reports, one line per graph."""
    reports = get_reports() if reports is None else reports
    return "\n".join(r.summary() for r in reports)
