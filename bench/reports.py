"""Combine the backend's per-graph reports into one figure per step.

A training step runs its forward graph, then its backward graph; an inference step runs one
graph (more where dynamo breaks the graph). The graphs run one after another, never at once,
and each graph's reported peak already counts the tensors live across it (its inputs, such as
the activations the forward saved for the backward). So the step's peak is the largest of its
graphs' peaks, not their sum, and so is its lower bound (each graph's bound is a bound on that
graph's share of the step). Solve times add up. The step's status is its worst graph's.
A graph that fell back runs in Inductor's own order, so its planned peak is its Inductor
peak, and its bound (which the backend may not have computed) is left out of the max.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dynamo_modelopt.step import peak_report

# From best to worst: a step is only as sure as its least sure graph.
STATUS_ORDER = ("optimal", "time_limit", "heuristic", "fallback")


@dataclass(frozen=True)
class StepPlan:
    """The reports of one step's graphs, combined as the module docstring says."""

    num_graphs: int
    inductor_peak_bytes: int
    planned_peak_bytes: int
    lower_bound_bytes: int
    solvers: str
    status: str
    solve_seconds: float
    fallbacks: str
    per_graph: str
    peak_at: str = ""
    settings: str = ""
    predicted_overhead: float | None = None


def worst_status(statuses: Sequence[str]) -> str:
    """The least sure status; unknown names count as worst and are kept verbatim."""
    unknown = [status for status in statuses if status not in STATUS_ORDER]
    if unknown:
        return unknown[0]
    return max(statuses, key=STATUS_ORDER.index, default="")


def _mib(num_bytes: int | None) -> str:
    return "-" if num_bytes is None else f"{num_bytes / 2**20:.1f}"


def describe_graph(report: Any) -> str:
    """One graph in a few words: kind, planned/Inductor/bound in MiB, status."""
    return (
        f"{report.graph_kind}[{report.num_nodes}]: {_mib(report.planned_peak_bytes)}/"
        f"{_mib(report.inductor_peak_bytes)}/{_mib(report.lower_bound_bytes)} MiB "
        f"{report.status}"
    )


def peak_location(reports: Sequence[Any]) -> str:
    """Where the step's peak is: the graph with the highest emitted peak, the step and
    operation there, the largest tensors live at that point, and whether arenas were used."""
    report = peak_report(reports)
    peak = {} if report is None else report.details.get("peak")
    if not peak:
        return ""
    live = ", ".join(f"{name} {_mib(size)}" for name, size in peak.get("largest_live", [])[:3])
    arena = report.details.get("arena", {})
    arenas = f"; arenas {_mib(arena['arena_bytes'])} MiB" if arena.get("used") else ""
    return f"{report.graph_kind} op {peak['step']}: {live}{arenas}"


def fell_back(report: Any) -> bool:
    return report.status == "fallback" or bool(report.fallback_reason)


def planned_peak_of(report: Any) -> int:
    """The peak the graph runs with: Inductor's when it fell back to Inductor's order (0
    where the fallback has no figure)."""
    return (report.inductor_peak_bytes if fell_back(report) else report.planned_peak_bytes) or 0


def inductor_defaults_peak(reports: Sequence[Any]) -> int:
    """Inductor's own figure for the step: its order under its default settings.

    When modelopt chose other compile settings (layout, activation budget), each report
    carries the figures of every candidate it tried, the defaults among them.
    """
    for report in reports:
        tried = report.details.get("settings", {}).get("alternatives", {})
        if "default" in tried:
            return int(tried["default"]["inductor_peak_bytes"])
    return max(r.inductor_peak_bytes or 0 for r in reports)  # a fallback's None counts as 0


def chosen_settings(reports: Sequence[Any]) -> tuple[str, float | None]:
    """The settings each graph pair chose ("+"-joined where they differ) and the predicted
    recompute overhead of the step (summed over pairs; None where no choice was made)."""
    from dynamo_modelopt.step import predicted_overhead, settings_of

    choices = settings_of(reports)
    if not choices:
        return "default", None
    names = list(dict.fromkeys(c["chosen"] for c in choices))
    return "+".join(names), predicted_overhead(choices)


def combine_reports(reports: Sequence[Any]) -> StepPlan | None:
    """One step's figures from its graphs' reports (None when there are no reports)."""
    if not reports:
        return None
    fallbacks = [r for r in reports if fell_back(r)]
    fallback_text = "; ".join(f"{r.graph_kind}: {r.fallback_reason}" for r in fallbacks)
    return StepPlan(
        num_graphs=len(reports),
        inductor_peak_bytes=inductor_defaults_peak(reports),
        planned_peak_bytes=max(planned_peak_of(r) for r in reports),
        lower_bound_bytes=max(
            (r.lower_bound_bytes for r in reports if not fell_back(r)), default=0
        ),
        solvers=",".join(sorted({str(r.solver) for r in reports})),
        status=worst_status([r.status for r in reports]),
        solve_seconds=sum(r.solve_seconds for r in reports),
        fallbacks=f"{len(fallbacks)}/{len(reports)} {fallback_text}".strip() if fallbacks else "",
        per_graph="; ".join(describe_graph(r) for r in reports),
        peak_at=peak_location(reports),
        settings=chosen_settings(reports)[0],
        predicted_overhead=chosen_settings(reports)[1],
    )
