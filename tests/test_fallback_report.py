"""A fallback report has no figures (None), and every reader of the figures copes with that."""

from __future__ import annotations

from bench.reports import combine_reports, describe_graph
from dynamo_modelopt import GraphReport, format_reports
from dynamo_modelopt.decide import Candidate, Trial, summarize


def _report(status: str, peak: int | None) -> GraphReport:
    return GraphReport(
        graph_kind="forward",
        num_nodes=3,
        inductor_peak_bytes=peak,
        planned_peak_bytes=peak,
        lower_bound_bytes=peak,
        solver="cpsat" if peak is not None else "none",
        status=status,
        solve_seconds=0.1,
        fallback_reason="capture refused" if status == "fallback" else None,
        emitted_peak_bytes=peak,
        details={"estimated_runtime": 1.0},
    )


def test_a_fallback_report_reads_without_figures() -> None:
    fallback = _report("fallback", None)
    assert fallback.saved_bytes == 0
    text = fallback.summary()
    assert "inductor=        - MiB" in text and "fallback: capture refused" in text
    assert format_reports([fallback, _report("optimal", 1 << 20)]).count("\n") == 1
    assert "1.00 MiB" in _report("optimal", 1 << 20).summary()


def test_summarize_and_the_bench_table_skip_a_fallback() -> None:
    planned = _report("optimal", 2 << 20)
    default = Trial(Candidate("default"), compiled=lambda *a: None, reports=[planned])
    fallen = Trial(
        Candidate("budget_0.5"), compiled=lambda *a: None, reports=[_report("fallback", None)]
    )
    alternatives = summarize(default, [default, fallen], 0.05)["alternatives"]
    assert alternatives["budget_0.5"]["inductor_peak_bytes"] == 0
    assert alternatives["budget_0.5"]["planned_peak_bytes"] == 0
    assert fallen.predicted_peak_bytes == 0 and fallen.fell_back

    plan = combine_reports([planned, _report("fallback", None)])
    assert plan is not None
    assert (plan.inductor_peak_bytes, plan.planned_peak_bytes) == (2 << 20, 2 << 20)
    assert plan.lower_bound_bytes == 2 << 20  # the fallback's missing bound is left out
    assert plan.fallbacks == "1/2 forward: capture refused"
    assert describe_graph(_report("fallback", None)) == "forward[3]: -/-/- MiB fallback"
