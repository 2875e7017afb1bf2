"""`python -m bench.main_job` prints its table first and its explanations after, in < 40 lines."""

from bench.main_job import MIB, ModeResult, format_output
from dynamo_modelopt.report import GraphReport


def _report(name: str, kind: str, fallback: str | None = None) -> GraphReport:
    return GraphReport(
        graph_kind=kind,
        num_nodes=42,
        inductor_peak_bytes=300 * MIB,
        planned_peak_bytes=200 * MIB,
        lower_bound_bytes=190 * MIB,
        solver="cpsat",
        status="optimal",
        solve_seconds=1.25,
        graph_name=name,
        emitted_peak_bytes=201 * MIB,
        fallback_reason=fallback,
        details={"settings": {"chosen": "budget_0.5"}},
    )


def test_table_comes_first_then_explanations_under_40_lines() -> None:
    results = [
        ModeResult("train", 350 * MIB, 210 * MIB, [_report("forward_1", "forward"),
                                                    _report("backward_2", "backward")]),
        ModeResult("inference", 6 * MIB, 6 * MIB, [_report("inference_3", "inference", "oops")]),
    ]  # fmt: skip
    lines = format_output(results, "model: gpt2  device: cpu", "cpu")
    assert len(lines) < 40
    assert lines[0].split()[:3] == ["mode", "row", "nodes"]
    assert set(lines[1]) == {"-"}
    blank = lines.index("")
    table, after = lines[2:blank], lines[blank + 1 :]
    assert len(table) == 2 + 3  # one measured row per mode, one row per graph
    assert table[0].split()[:5] == ["train", "step", "measured", "-", "350.00"]
    assert "0.600" in table[0]
    expected = ["train", "forward_1", "42", "300.00", "200.00", "190.00", "201.00"]
    assert table[1].split()[:7] == expected
    assert "cpsat/optimal" in table[1] and table[1].endswith("budget_0.5")
    assert table[3].startswith("inference")
    # explanations only after the table
    assert after[0] == "model: gpt2  device: cpu"
    assert any("kineto" in text for text in after)
    assert after[-1] == "fallback to plain Inductor in inference inference_3: oops"
    assert not any("kineto" in text or "fallback" in text for text in lines[:blank])


def test_many_graphs_are_counted_not_listed_beyond_40_lines() -> None:
    """Graph breaks make many graphs: the output stays under 40 lines, measured rows kept."""
    many = [_report(f"forward_{i}", "forward") for i in range(30)]
    results = [
        ModeResult("train", 350 * MIB, 210 * MIB, many),
        ModeResult("inference", 6 * MIB, 6 * MIB, many[:20]),
    ]
    lines = format_output(results, "model: gpt2  device: cpu", "cpu")
    assert len(lines) < 40
    table = lines[2 : lines.index("")]
    assert [row.split()[:3] for row in table if "measured" in row] == [
        ["train", "step", "measured"],
        ["inference", "step", "measured"],
    ]
    more = [row for row in table if "more graphs" in row]
    assert len(more) == 2
    shown = sum(1 for row in table if "forward_" in row)
    assert shown + sum(int(row.split("(+")[1].split()[0]) for row in more) == 50
    assert lines[lines.index("") + 1] == "model: gpt2  device: cpu"
