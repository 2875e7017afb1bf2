"""Ratios, geometric means, per-step combination of reports, and the markdown/CSV outputs."""

import csv
import io

import pytest

from bench.reports import combine_reports, worst_status
from bench.table import (
    MIB,
    Row,
    csv_columns,
    geometric_mean,
    markdown_table,
    summary_rows,
    write_csv,
    write_markdown,
)
from dynamo_modelopt.report import GraphReport


def make_row(**figures: object) -> Row:
    base = {"model": "m", "mode": "train", "batch": 1, "kind": "measured", "device": "cpu"}
    return Row(**{**base, **figures})


def test_geometric_mean() -> None:
    assert geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    assert geometric_mean([0.5, 2.0, 1.0]) == pytest.approx(1.0)
    assert geometric_mean([2.0, None, 0.0, -1.0, 8.0]) == pytest.approx(4.0)
    assert geometric_mean([]) is None
    assert geometric_mean([None]) is None


def test_row_ratios_and_gap() -> None:
    row = make_row(
        eager_peak_bytes=400, inductor_peak_bytes=200, modelopt_peak_bytes=100,
        planned_peak_bytes=90, lower_bound_bytes=72,
    )  # fmt: skip
    assert row.modelopt_vs_inductor == pytest.approx(0.5)
    assert row.modelopt_vs_eager == pytest.approx(0.25)
    assert row.gap == pytest.approx(0.2)
    empty = make_row(inductor_peak_bytes=0, modelopt_peak_bytes=10, lower_bound_bytes=5)
    assert empty.modelopt_vs_inductor is None
    assert empty.modelopt_vs_eager is None
    assert empty.gap is None


def test_summary_rows_are_per_kind() -> None:
    rows = [
        make_row(inductor_peak_bytes=100, modelopt_peak_bytes=50),
        make_row(inductor_peak_bytes=100, modelopt_peak_bytes=200),
        make_row(kind="planned", inductor_peak_bytes=10, modelopt_peak_bytes=9),
        make_row(error="boom"),
    ]
    by_kind = {summary["kind"]: summary for summary in summary_rows(rows)}
    assert by_kind["measured"]["modelopt_vs_inductor"] == "1.000"
    assert by_kind["measured"]["rows"] == "2"
    assert by_kind["planned"]["modelopt_vs_inductor"] == "0.900"
    assert by_kind["planned"]["modelopt_vs_eager"] == ""


def test_markdown_table_formats_mib_ratios_and_errors() -> None:
    row = make_row(
        eager_peak_bytes=3 * MIB, inductor_peak_bytes=2 * MIB, modelopt_peak_bytes=MIB,
        inductor_step_ms=12.345, error="modelopt: ImportError: no | pipes\\nhere",
    )  # fmt: skip
    lines = markdown_table([row]).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert len(cells) == len(header)
    values = dict(zip(header, cells, strict=True))
    assert values["eager MiB"] == "3.00"
    assert values["modelopt/Inductor"] == "0.500"
    assert values["modelopt/eager"] == "0.333"
    assert values["Inductor step ms"] == "12.3"
    assert values["bound MiB"] == ""
    assert "|" not in values["error"] and values["error"].startswith("modelopt: ImportError")
    assert lines[-1].startswith("| **geomean (measured)** (1 rows)")


def test_reserved_columns_only_where_measured() -> None:
    cpu_row = make_row(inductor_peak_bytes=MIB, modelopt_peak_bytes=MIB)
    assert "reserved" not in markdown_table([cpu_row]).splitlines()[0]
    cuda_row = make_row(inductor_reserved_bytes=4 * MIB, modelopt_reserved_bytes=2 * MIB)
    lines = markdown_table([cpu_row, cuda_row]).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    values = dict(zip(header, [c.strip() for c in lines[3].strip("|").split("|")], strict=True))
    assert values["Inductor reserved MiB"] == "4.00"
    assert values["modelopt reserved MiB"] == "2.00"


def test_csv_has_comment_header_raw_values_and_summary(tmp_path) -> None:
    path = tmp_path / "results.csv"
    rows = [make_row(inductor_peak_bytes=1000, modelopt_peak_bytes=250, solve_seconds=1.5)]
    write_csv(str(path), rows, ["command: `x`", "device: cpu"])
    text = path.read_text()
    assert text.startswith("# command: `x`\n# device: cpu\n")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    records = list(csv.DictReader(io.StringIO("\n".join(body))))
    assert list(records[0]) == csv_columns()
    assert records[0]["modelopt_peak_bytes"] == "250"
    assert records[0]["eager_peak_bytes"] == ""
    assert float(records[0]["modelopt_vs_inductor"]) == pytest.approx(0.25)
    assert records[-1]["model"] == "geomean (measured)"
    assert float(records[-1]["modelopt_vs_inductor"]) == pytest.approx(0.25)


def test_markdown_file_has_header_lines(tmp_path) -> None:
    path = tmp_path / "results.md"
    write_markdown(str(path), [make_row()], ["command: `python -m bench.run`"])
    text = path.read_text()
    assert "- command: `python -m bench.run`" in text
    assert "| model | mode |" in text


def report(kind: str, planned: int, inductor: int, bound: int, **extra: object) -> GraphReport:
    fields = {
        "graph_kind": kind, "num_nodes": 10, "inductor_peak_bytes": inductor,
        "planned_peak_bytes": planned, "lower_bound_bytes": bound, "solver": "cpsat",
        "status": "optimal", "solve_seconds": 1.0, "fallback_reason": None,
    }  # fmt: skip
    return GraphReport(**{**fields, **extra})


def test_combine_reports_compares_with_inductor_defaults_when_settings_changed() -> None:
    tried = {"settings": {"chosen": "no_layout_opt", "alternatives": {
        "default": {"inductor_peak_bytes": 900, "planned_peak_bytes": 880},
        "no_layout_opt": {"inductor_peak_bytes": 500, "planned_peak_bytes": 480},
    }}}  # fmt: skip
    plan = combine_reports(
        [report("inference", planned=480, inductor=500, bound=470, details=tried)]
    )
    assert plan is not None
    assert (plan.planned_peak_bytes, plan.inductor_peak_bytes) == (480, 900)


def test_combine_reports_takes_max_of_peaks_and_sums_solve_time() -> None:
    plan = combine_reports(
        [
            report("forward", planned=300, inductor=400, bound=250),
            report("backward", planned=500, inductor=450, bound=480, status="time_limit",
                   solver="gurobi", solve_seconds=2.5),
        ]
    )  # fmt: skip
    assert plan is not None
    assert (plan.planned_peak_bytes, plan.inductor_peak_bytes, plan.lower_bound_bytes) == (
        500, 450, 480,
    )  # fmt: skip
    assert plan.solve_seconds == pytest.approx(3.5)
    assert plan.status == "time_limit"
    assert plan.solvers == "cpsat,gurobi"
    assert plan.num_graphs == 2
    assert plan.fallbacks == ""


def test_combine_reports_lists_fallbacks() -> None:
    plan = combine_reports(
        [
            report("forward", 1, 1, 1),
            report("backward", 0, 2, 0, status="fallback", fallback_reason="no scheduler"),
        ]
    )
    assert plan is not None
    assert plan.status == "fallback"
    assert plan.fallbacks == "1/2 backward: no scheduler"
    # The fallen-back graph runs in Inductor's order (2) and its bound (0) is not counted.
    assert (plan.planned_peak_bytes, plan.lower_bound_bytes) == (2, 1)
    assert combine_reports([]) is None


def test_worst_status() -> None:
    assert worst_status(["optimal", "heuristic", "time_limit"]) == "heuristic"
    assert worst_status(["optimal", "weird"]) == "weird"
    assert worst_status([]) == ""


def test_peak_location_names_the_highest_graph_and_its_tensors() -> None:
    forward = report(
        "forward",
        3 * MIB,
        3 * MIB,
        MIB,
        emitted_peak_bytes=3 * MIB,
        details={"peak": {"step": 1, "largest_live": [("buf1", MIB)]}},
    )
    backward = report(
        "backward", 5 * MIB, 5 * MIB, MIB, emitted_peak_bytes=5 * MIB,
        details={
            "peak": {"step": 0, "largest_live": [("mm", 2 * MIB), ("addmm", MIB), ("x", 1),
                                                 ("y", 1)]},
            "arena": {"used": True, "arena_bytes": MIB},
        },
    )  # fmt: skip
    text = combine_reports([forward, backward]).peak_at
    assert text.startswith("backward op 0: mm 2.0, addmm 1.0")
    assert "y " not in text and "arenas 1.0 MiB" in text
    assert combine_reports([report("forward", 1, 1, 1)]).peak_at == ""
