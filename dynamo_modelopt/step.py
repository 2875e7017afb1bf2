"""One training (or inference) step, measured and set against what modelopt predicted for it.

    compiled = torch.compile(model, backend="modelopt")
    step()                                   # compiles
    print(dynamo_modelopt.measure_step(step))

gives the step's measured peak next to the predicted one, the graph and operation where the
predicted peak sits and what is live there, the settings each graph pair chose and why, and the
recompute overhead: predicted from Inductor's run-time estimates, measured where a `baseline`
step (the same model compiled with `options={"settings": "default"}`, or plain Inductor) is given.

Peaks count bytes allocated above the level at the start of the step (CPU: the kineto profiler's
allocator events; CUDA: `max_memory_allocated`), like the per-graph predictions, which count a
graph's inputs as already there. Run one step first so that compiling is not measured. On CPU,
frees before the step's first allocation (the last step's gradients dropped by
`zero_grad(set_to_none=True)`) are not counted: the peak is above the level after them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .measure import step_peak_bytes
from .report import GraphReport, get_reports
from .timing import call_seconds

MIB = 1 << 20
# output gradients worth a hint: this share of the step's peak, and at least this many bytes
HINT_FRACTION = 0.05
HINT_MIN_BYTES = 1 << 20


@dataclass
class StepReport:
    """Measured and predicted figures of one step (bytes, seconds)."""

    device: str
    measured_peak_bytes: int
    predicted_peak_bytes: int | None
    # the prediction if the caller keeps the forward's outputs until its backward has run
    predicted_peak_if_outputs_held: int | None
    peak_graph: str
    peak_at: dict[str, Any]
    settings: list[dict[str, Any]] = field(default_factory=list)
    # per graph pair whose chosen settings include the planner's recomputation plan
    recompute_plans: list[dict[str, Any]] = field(default_factory=list)
    output_gradients: dict[str, int] = field(default_factory=dict)
    step_seconds: float = 0.0
    baseline_step_seconds: float | None = None

    @property
    def predicted_overhead(self) -> float:
        """Estimated extra run time of the chosen settings over Inductor's defaults, summed over
        the step's graph pairs (0 where every pair kept the defaults)."""
        return predicted_overhead(self.settings)

    @property
    def measured_overhead(self) -> float | None:
        """Step time over the baseline's, minus one; None without a baseline."""
        if not self.baseline_step_seconds:
            return None
        return self.step_seconds / self.baseline_step_seconds - 1.0

    def summary(self) -> str:
        lines = [f"modelopt step on {self.device}:"]
        predicted = (
            "no prediction (no graph planned)"
            if self.predicted_peak_bytes is None
            else f"predicted {self.predicted_peak_bytes / MIB:.2f} MiB"
        )
        held = self.predicted_peak_if_outputs_held
        if held is not None and held != self.predicted_peak_bytes:
            predicted += (
                f" ({held / MIB:.2f} MiB where the outputs are still referenced during backward)"
            )
        lines.append(f"  peak: measured {self.measured_peak_bytes / MIB:.2f} MiB, {predicted}")
        if self.peak_at:
            live = ", ".join(
                f"{name} {size / MIB:.1f}" for name, size in self.peak_at.get("largest_live", [])
            )
            lines.append(
                f"  predicted peak at: {self.peak_graph}, {self.peak_at.get('operation')}"
                f" (step {self.peak_at.get('step')}); largest live MiB: {live}"
            )
        for s in self.settings:
            remembered = " (chosen by an earlier compile)" if s.get("from_decision_cache") else ""
            lines.append(f"  settings: {s['chosen']}{remembered}: {s.get('why', '')}")
        for plan in self.recompute_plans:
            names = plan.get("recompute", [])
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            budget = plan.get("budget_seconds") or 0.0
            spent = plan.get("cost_seconds", 0.0)
            share = f", {spent / budget:.0%} of the budget" if budget > 0 else ""
            lines.append(
                f"  recomputed in the backward: {len(names)} saved tensors ({shown}){share}"
            )
        received = sum(self.output_gradients.values())
        if received >= HINT_FRACTION * self.measured_peak_bytes and received >= HINT_MIN_BYTES:
            lines.append(
                f"  hint: the backward receives {received / MIB:.1f} MiB of gradients for"
                " forward outputs; autograd fills outputs the loss does not use with zeros of"
                " full size: return only the loss (or detach the other outputs) to save them"
            )
        overhead = f"  recompute overhead: predicted {self.predicted_overhead:+.1%}"
        if any(s.get("measured_overhead") is not None for s in self.settings):
            overhead += " (timed at compile time)"
        measured = self.measured_overhead
        if measured is not None:
            overhead += (
                f", measured {measured:+.1%} ({self.step_seconds * 1e3:.1f} ms against"
                f" {self.baseline_step_seconds * 1e3:.1f} ms)"  # type: ignore[operator]
            )
        else:
            overhead += f" (step {self.step_seconds * 1e3:.1f} ms; give a baseline to measure)"
        lines.append(overhead)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _median_seconds(step: Callable[[], Any], repeats: int, device: torch.device | str) -> float:
    return statistics.median(call_seconds(step, device) for _ in range(repeats))


def settings_of(reports: Sequence[GraphReport]) -> list[dict[str, Any]]:
    """One settings summary per graph pair (the forward and backward of a pair share one)."""
    seen: list[dict[str, Any]] = []
    for report in reports:
        settings = report.details.get("settings")
        if settings is not None and not any(settings is s for s in seen):
            seen.append(settings)
    return seen


def recompute_plans_of(reports: Sequence[GraphReport]) -> list[dict[str, Any]]:
    """The recomputation plans behind the reports, one per graph pair (both graphs of a pair
    carry the same plan)."""
    seen: list[dict[str, Any]] = []
    for report in reports:
        plan = report.internals.recompute_plan
        if plan is not None and plan.get("recompute") and not any(plan is p for p in seen):
            seen.append(plan)
    return seen


def predicted_overhead(settings: Sequence[dict[str, Any]]) -> float:
    """The summed predicted recompute overhead of graph pairs' settings summaries."""
    return sum(s.get("predicted_overhead") or 0.0 for s in settings)


def peak_report(reports: Sequence[GraphReport]) -> GraphReport | None:
    """The report of the graph that sets a step's peak: the highest emitted peak (a step's
    graphs run one after another). None when no graph was planned."""
    planned = [r for r in reports if r.emitted_peak_bytes is not None]
    return max(planned, key=lambda r: r.emitted_peak_bytes or 0, default=None)


def measure_step(
    step: Callable[[], Any],
    *,
    reports: Sequence[GraphReport] | None = None,
    baseline: Callable[[], Any] | None = None,
    repeats: int = 3,
    device: torch.device | str = "cpu",
) -> StepReport:
    """Run `step()` once measuring its peak memory, time it `repeats` times (and `baseline`,
    if given), and pair the figures with the predictions of `reports` (default: every report
    since `clear_reports()`, which should be the graphs this step runs).

    The predicted peak of a step is the highest of its graphs' (they run one after another).
    """
    reports = list(get_reports() if reports is None else reports)
    measured = step_peak_bytes(step, device)
    planned = [r for r in reports if r.emitted_peak_bytes is not None]
    top = peak_report(reports)
    seconds = _median_seconds(step, repeats, device)
    baseline_seconds = _median_seconds(baseline, repeats, device) if baseline else None
    return StepReport(
        device=str(torch.device(device)),
        measured_peak_bytes=measured,
        predicted_peak_bytes=None if top is None else top.emitted_peak_bytes,
        predicted_peak_if_outputs_held=max(
            (int(r.details.get("peak_if_outputs_held", r.emitted_peak_bytes)) for r in planned),
            default=None,
        ),
        peak_graph="" if top is None else f"{top.graph_kind} graph {top.graph_name}",
        peak_at={} if top is None else dict(top.details.get("peak", {})),
        settings=settings_of(reports),
        recompute_plans=recompute_plans_of(reports),
        output_gradients={
            name: size
            for r in reports
            for name, size in r.details.get("output_gradients", {}).items()
        },
        step_seconds=seconds,
        baseline_step_seconds=baseline_seconds,
    )
