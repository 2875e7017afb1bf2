"""One row per (model, mode, batch, kind): the figures, their ratios, and the outputs.

Byte figures are the step's peak above the memory resting before it (parameters, inputs and
optimizer state not counted) for measured rows, and the backend's combined per-graph figures
for planned rows (see bench.reports). Ratios below 1 mean modelopt used less memory.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields

MIB = 2**20


@dataclass
class Row:
    model: str
    mode: str
    batch: int
    kind: str  # "measured" (real steps) or "planned" (backend's compile-time figures)
    device: str
    shape: str = ""
    eager_peak_bytes: int | None = None
    inductor_peak_bytes: int | None = None
    modelopt_peak_bytes: int | None = None
    # CUDA only: torch.cuda.max_memory_reserved during the step (the caching allocator's
    # segments, fragmentation included); the *_peak_bytes above are max_memory_allocated
    eager_reserved_bytes: int | None = None
    inductor_reserved_bytes: int | None = None
    modelopt_reserved_bytes: int | None = None
    # modelopt's own cost-model peak of its plan (max over graphs), to compare with the bound:
    # a measured peak counts differently (e.g. not the step's inputs), so the gap uses this.
    planned_peak_bytes: int | None = None
    lower_bound_bytes: int | None = None
    num_graphs: int | None = None
    solver: str = ""
    status: str = ""
    solve_seconds: float | None = None
    inductor_compile_seconds: float | None = None
    modelopt_compile_seconds: float | None = None
    # compiling again in the same process, the settings read from the decision cache
    modelopt_recompile_seconds: float | None = None
    eager_step_ms: float | None = None
    inductor_step_ms: float | None = None
    modelopt_step_ms: float | None = None
    fallbacks: str = ""
    settings: str = ""  # the compile settings modelopt chose (see dynamo_modelopt/decide.py)
    predicted_overhead: float | None = None  # their estimated extra run time over the defaults
    peak_at: str = ""  # modelopt's step: which graph, step and tensors hold the peak
    error: str = ""
    notes: str = ""

    @property
    def modelopt_vs_inductor(self) -> float | None:
        return ratio(self.modelopt_peak_bytes, self.inductor_peak_bytes)

    @property
    def modelopt_vs_eager(self) -> float | None:
        return ratio(self.modelopt_peak_bytes, self.eager_peak_bytes)

    @property
    def measured_overhead(self) -> float | None:
        """modelopt's step time over Inductor's, minus one."""
        r = ratio(self.modelopt_step_ms, self.inductor_step_ms)
        return None if r is None else r - 1.0

    @property
    def gap(self) -> float | None:
        """How far modelopt's planned peak is above the lower bound, as a fraction of it."""
        if self.planned_peak_bytes is None or self.lower_bound_bytes is None:
            return None
        if self.planned_peak_bytes <= 0:
            return None
        return (self.planned_peak_bytes - self.lower_bound_bytes) / self.planned_peak_bytes


DERIVED_COLUMNS = ("modelopt_vs_inductor", "modelopt_vs_eager", "gap", "measured_overhead")


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def geometric_mean(values: Iterable[float | None]) -> float | None:
    """Geometric mean of the positive values given; None when there are none."""
    positive = [value for value in values if value is not None and value > 0]
    if not positive:
        return None
    return math.exp(sum(math.log(value) for value in positive) / len(positive))


def summary_rows(rows: Sequence[Row]) -> list[dict[str, str]]:
    """Per kind, the geometric means of the ratios over the rows that have them."""
    summaries = []
    for kind in sorted({row.kind for row in rows}):
        of_kind = [row for row in rows if row.kind == kind]
        vs_inductor = [row.modelopt_vs_inductor for row in of_kind]
        vs_eager = [row.modelopt_vs_eager for row in of_kind]
        summaries.append(
            {
                "model": f"geomean ({kind})",
                "kind": kind,
                "rows": str(sum(value is not None for value in vs_inductor)),
                "modelopt_vs_inductor": _format_ratio(geometric_mean(vs_inductor)),
                "modelopt_vs_eager": _format_ratio(geometric_mean(vs_eager)),
            }
        )
    return summaries


# ---- formatting -----------------------------------------------------------------------------


def _format_mib(num_bytes: int | None) -> str:
    return "" if num_bytes is None else f"{num_bytes / MIB:.2f}"


def _format_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _format_float(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split()).replace("|", "/")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


MARKDOWN_COLUMNS: list[tuple[str, str]] = [
    ("model", "model"),
    ("mode", "mode"),
    ("batch", "batch"),
    ("kind", "kind"),
    ("device", "device"),
    ("shape", "shape"),
    ("eager_peak_bytes", "eager MiB"),
    ("inductor_peak_bytes", "Inductor MiB"),
    ("modelopt_peak_bytes", "modelopt MiB"),
    ("modelopt_vs_inductor", "modelopt/Inductor"),
    ("modelopt_vs_eager", "modelopt/eager"),
    ("eager_reserved_bytes", "eager reserved MiB"),
    ("inductor_reserved_bytes", "Inductor reserved MiB"),
    ("modelopt_reserved_bytes", "modelopt reserved MiB"),
    ("planned_peak_bytes", "planned MiB"),
    ("lower_bound_bytes", "bound MiB"),
    ("gap", "gap"),
    ("num_graphs", "graphs"),
    ("solver", "solver"),
    ("status", "status"),
    ("solve_seconds", "solve s"),
    ("inductor_compile_seconds", "Inductor compile s"),
    ("modelopt_compile_seconds", "modelopt compile s"),
    ("modelopt_recompile_seconds", "modelopt recompile s"),
    ("eager_step_ms", "eager step ms"),
    ("inductor_step_ms", "Inductor step ms"),
    ("modelopt_step_ms", "modelopt step ms"),
    ("settings", "settings"),
    ("predicted_overhead", "overhead predicted"),
    ("measured_overhead", "overhead measured"),
    ("fallbacks", "fallbacks"),
    ("peak_at", "modelopt peak at (MiB)"),
    ("error", "error"),
]


def format_cell(row: Row, column: str) -> str:
    """A row's value in `column` as the markdown table shows it."""
    value = getattr(row, column)
    if column.endswith("_overhead"):
        return "" if value is None else f"{value:+.1%}"
    if column.endswith("_bytes"):
        return _format_mib(value)
    if column in DERIVED_COLUMNS:
        return _format_ratio(value)
    if column.endswith("_seconds"):
        return _format_float(value, 2)
    if column.endswith("_ms"):
        return _format_float(value, 1)
    return "" if value is None else _one_line(str(value))


def markdown_columns(rows: Sequence[Row]) -> list[tuple[str, str]]:
    """The table's columns; the reserved-memory ones only where some row has them (CUDA)."""
    return [
        (column, header)
        for column, header in MARKDOWN_COLUMNS
        if not column.endswith("_reserved_bytes")
        or any(getattr(row, column) is not None for row in rows)
    ]


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows and the geometric-mean summaries as one markdown table."""
    columns = markdown_columns(rows)
    headers = [header for _, header in columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [format_cell(row, column) for column, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    for summary in summary_rows(rows):
        cells = [summary.get(column, "") for column, _ in columns]
        cells[0] = f"**{summary['model']}** ({summary['rows']} rows)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_columns() -> list[str]:
    return [f.name for f in fields(Row)] + list(DERIVED_COLUMNS)


def csv_record(row: Row) -> dict[str, object]:
    """A row as CSV values: raw bytes and seconds, ratios to 6 digits, empty for None."""
    record: dict[str, object] = {k: ("" if v is None else v) for k, v in asdict(row).items()}
    for column in DERIVED_COLUMNS:
        value = getattr(row, column)
        record[column] = "" if value is None else f"{value:.6f}"
    return record


def write_csv(path: str, rows: Sequence[Row], header_lines: Sequence[str]) -> None:
    """The rows, then one summary line per kind, under `#` comment lines."""
    with open(path, "w", newline="") as handle:
        for line in header_lines:
            handle.write(f"# {line}\n")
        writer = csv.DictWriter(handle, fieldnames=csv_columns())
        writer.writeheader()
        for row in rows:
            writer.writerow(csv_record(row))
        for summary in summary_rows(rows):
            writer.writerow(
                {
                    "model": summary["model"],
                    "kind": summary["kind"],
                    "modelopt_vs_inductor": summary["modelopt_vs_inductor"],
                    "modelopt_vs_eager": summary["modelopt_vs_eager"],
                }
            )


def write_markdown(path: str, rows: Sequence[Row], header_lines: Sequence[str]) -> None:
    with open(path, "w") as handle:
        handle.write("# modelopt benchmark\n\n")
        for line in header_lines:
            handle.write(f"- {line}\n")
        handle.write("\n" + markdown_table(rows) + "\n")
