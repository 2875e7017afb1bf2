"""How well planned and measured peaks agree, on the rows that have both.

    python -m bench.agreement --measured bench/results/train_b8/results.csv \\
        --planned bench/results/full/reduced_b8/results.csv --out bench/results/full/agreement.md

Rows are matched on (model, mode, batch, shape). Three comparisons per row:
- modelopt, same compile: the measured peak against the cost-model figure of the very compile
  that was measured (a measured row's planned column);
- modelopt, fake tensors: the measured peak against a planned row's figure (compiled on fake
  tensors, maybe by other code: the header says which);
- Inductor: the measured peak against the planned row's figure for Inductor's own order.
and the saving (modelopt/Inductor) measured against planned.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Sequence

from bench.table import MIB, geometric_mean, ratio

Key = tuple[str, str, str, str]


def read_rows(path: str) -> tuple[list[str], dict[Key, dict[str, str]]]:
    """The '#' header lines and the rows of a bench CSV, keyed by model, mode, batch, shape."""
    with open(path) as handle:
        lines = handle.read().splitlines()
    header = [line.removeprefix("# ") for line in lines if line.startswith("#")]
    rows = csv.DictReader(line for line in lines if not line.startswith("#"))
    keyed = {(r["model"], r["mode"], r["batch"], r["shape"]): r for r in rows}
    return header, {key: row for key, row in keyed.items() if not key[0].startswith("geomean")}


def _int(row: dict[str, str], column: str) -> int | None:
    """The column's figure as bytes; None where the row or the figure is missing."""
    value = row.get(column, "")
    return int(float(value)) if value else None


def _cells(*values: float | None, digits: int = 3) -> list[str]:
    return ["" if v is None else f"{v:.{digits}f}" for v in values]


def agreement_table(
    measured: dict[Key, dict[str, str]], planned: dict[Key, dict[str, str]]
) -> list[str]:
    head = [
        "model", "mode", "batch", "shape",
        "Inductor measured MiB", "Inductor planned MiB", "planned/measured",
        "modelopt measured MiB", "same compile planned MiB", "planned/measured",
        "fake-tensor planned MiB", "planned/measured",
        "modelopt/Inductor measured", "modelopt/Inductor planned",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    columns: dict[int, list[float | None]] = {6: [], 9: [], 11: [], 12: [], 13: []}
    # without planned rows, the measured rows' own (same compile) figures alone
    keys = sorted(set(measured) & set(planned)) if planned else sorted(measured)
    for key in keys:
        mrow, prow = measured[key], planned.get(key, {})
        ind_m, ind_p = _int(mrow, "inductor_peak_bytes"), _int(prow, "inductor_peak_bytes")
        mo_m, mo_same = _int(mrow, "modelopt_peak_bytes"), _int(mrow, "planned_peak_bytes")
        mo_fake = _int(prow, "modelopt_peak_bytes")
        values = {
            6: ratio(ind_p, ind_m),
            9: ratio(mo_same, mo_m),
            11: ratio(mo_fake, mo_m),
            12: ratio(mo_m, ind_m),
            13: ratio(mo_fake, ind_p),
        }
        for index, value in values.items():
            columns[index].append(value)
        mib = [None if v is None else v / MIB for v in (ind_m, ind_p, mo_m, mo_same, mo_fake)]
        cells = list(key)
        cells += _cells(mib[0], mib[1], digits=1) + _cells(values[6])
        cells += _cells(mib[2], mib[3], digits=1) + _cells(values[9])
        cells += _cells(mib[4], digits=1) + _cells(values[11], values[12], values[13])
        lines.append("| " + " | ".join(cells) + " |")
    means = ["**geomean**", "", "", "", "", ""]
    for index in range(6, 14):
        if index in columns:
            means += _cells(geometric_mean(columns[index]))
        else:
            means.append("")
    lines.append("| " + " | ".join(means) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.agreement", description=__doc__)
    parser.add_argument("--measured", required=True, help="a bench.run CSV of measured rows")
    parser.add_argument("--planned", help="a bench.run CSV of planned rows (optional)")
    parser.add_argument("--out", required=True, help="the markdown file to write")
    args = parser.parse_args(argv)
    measured_header, measured = read_rows(args.measured)
    planned_header, planned = read_rows(args.planned) if args.planned else ([], {})
    lines = ["# planned against measured", ""]
    lines += [f"- measured ({args.measured}): {line}" for line in measured_header[:2]]
    lines += [f"- planned ({args.planned}): {line}" for line in planned_header[:2]]
    lines += ["", *agreement_table(measured, planned), ""]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines))
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
