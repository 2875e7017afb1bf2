"""bench.agreement: planned against measured on the rows both CSVs have."""

from pathlib import Path

import bench.agreement
from bench.table import MIB, Row, write_csv


def test_rows_in_both_files_are_compared(tmp_path: Path) -> None:
    measured = Row("m", "train", 8, "measured", "cpu", "64px")
    measured.inductor_peak_bytes, measured.modelopt_peak_bytes = 100 * MIB, 50 * MIB
    measured.planned_peak_bytes = 55 * MIB
    only_measured = Row("other", "train", 8, "measured", "cpu", "64px")
    planned = Row("m", "train", 8, "planned", "cpu (fake tensors)", "64px")
    planned.inductor_peak_bytes, planned.modelopt_peak_bytes = 110 * MIB, 60 * MIB
    write_csv(str(tmp_path / "m.csv"), [measured, only_measured], ["command: measured run"])
    write_csv(str(tmp_path / "p.csv"), [planned], ["command: planned run"])
    out = tmp_path / "agreement.md"
    bench.agreement.main(
        ["--measured", str(tmp_path / "m.csv"), "--planned", str(tmp_path / "p.csv"),
         "--out", str(out)]
    )  # fmt: skip
    text = out.read_text()
    assert "command: measured run" in text and "command: planned run" in text
    row = next(line for line in text.splitlines() if line.startswith("| m |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[4:7] == ["100.0", "110.0", "1.100"]
    assert cells[7:10] == ["50.0", "55.0", "1.100"]
    assert cells[10:14] == ["60.0", "1.200", "0.500", "0.545"]
    assert "| other |" not in text


def test_without_planned_rows_the_same_compile_is_compared(tmp_path: Path) -> None:
    measured = Row("m", "train", 8, "measured", "cpu", "64px")
    measured.inductor_peak_bytes, measured.modelopt_peak_bytes = 100 * MIB, 50 * MIB
    measured.planned_peak_bytes = 55 * MIB
    write_csv(str(tmp_path / "m.csv"), [measured], ["command: measured run"])
    out = tmp_path / "agreement.md"
    bench.agreement.main(["--measured", str(tmp_path / "m.csv"), "--out", str(out)])
    row = next(line for line in out.read_text().splitlines() if line.startswith("| m |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[7:10] == ["50.0", "55.0", "1.100"] and cells[5] == ""
