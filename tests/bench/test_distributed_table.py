"""The distributed bench's table, on made-up figures (nothing is spawned)."""

from bench.distributed import MIB, RankFigures, render


def test_table_ratios_graphs_settings_and_errors() -> None:
    rows = [
        RankFigures("ddp", "eager", 0, 300 * MIB, 12.0, 0.1),
        RankFigures("ddp", "inductor", 0, 200 * MIB, 10.0, 20.0),
        RankFigures("ddp", "modelopt", 0, 150 * MIB, 11.0, 30.0, 4, 1, "default x2"),
        RankFigures("ddp", "inductor", 1, 100 * MIB, 10.0, 20.0),
        RankFigures("ddp", "modelopt", 1, error="RuntimeError: boom"),
    ]
    lines = render(rows, ["# head", ""]).splitlines()
    assert lines[:3] == [
        "# head",
        "",
        "| wrapper | backend | rank | peak MiB | vs Inductor | step ms | compile s"
        " | graphs planned | settings |",
    ]
    # each row against Inductor of its own wrapper and rank
    assert lines[4] == "| ddp | eager | 0 | 300.0 | 1.500 | 12.0 | 0.1 |  |  |"
    assert lines[6] == "| ddp | modelopt | 0 | 150.0 | 0.750 | 11.0 | 30.0 | 4 / 1 | default x2 |"
    assert lines[7] == "| ddp | inductor | 1 | 100.0 | 1.000 | 10.0 | 20.0 |  |  |"
    assert lines[8] == "| ddp | modelopt | 1 |  |  |  |  |  |  |"
    assert lines[-1] == "- ddp / modelopt / rank 1: RuntimeError: boom"
