"""PNG figures of the results: peak memory per model, and memory over one training step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on the bench machines

import matplotlib.pyplot as plt  # after use("Agg"): the backend must be chosen first

from bench.table import MIB, Row

PEAK_SERIES = (
    ("eager", "eager_peak_bytes"),
    ("Inductor", "inductor_peak_bytes"),
    ("modelopt", "modelopt_peak_bytes"),
)
Timeline = Sequence[tuple[int, int]]


def row_label(row: Row) -> str:
    return f"{row.model}\n{row.mode} b{row.batch}"


def plot_peaks(rows: Sequence[Row], kind: str, path: str, title_suffix: str = "") -> bool:
    """Grouped bars of eager / Inductor / modelopt peak (MiB) per row of `kind`.

    Returns False (and writes nothing) when no row of that kind has a figure.
    """
    of_kind = [row for row in rows if row.kind == kind]
    of_kind = [r for r in of_kind if any(getattr(r, a) is not None for _, a in PEAK_SERIES)]
    if not of_kind:
        return False
    width = 0.27
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(of_kind) + 2), 4.8))
    for index, (label, attribute) in enumerate(PEAK_SERIES):
        positions = [i + (index - 1) * width for i in range(len(of_kind))]
        heights = [(getattr(row, attribute) or 0) / MIB for row in of_kind]
        axes.bar(positions, heights, width, label=label)
    axes.set_xticks(range(len(of_kind)))
    axes.set_xticklabels([row_label(row) for row in of_kind], fontsize=7)
    axes.set_ylabel("peak memory of one step (MiB)")
    peaks = [getattr(r, a) for r in of_kind for _, a in PEAK_SERIES if getattr(r, a)]
    if peaks and max(peaks) > 50 * min(peaks):
        axes.set_yscale("log")  # small inference rows would be invisible next to training ones
    devices = ", ".join(sorted({row.device for row in of_kind}))
    axes.set_title(f"{kind} peak memory ({devices}){title_suffix}", fontsize=10)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


MEASURED_AXES = ("time since the step's first allocation (ms)", 1e6)
# a planned profile: live bytes after each kernel call of the generated code (cost model)
PLANNED_AXES = ("kernel call of the compiled backward graph", 1.0)


def plot_timelines(
    timelines: Mapping[str, Timeline],
    title: str,
    path: str,
    axes_of_x: tuple[str, float] = MEASURED_AXES,
    y_label: str = "live bytes allocated in the step (MiB)",
) -> bool:
    """Live bytes against x for each backend's line; False when there is none.

    `axes_of_x`: the x axis's label and the units of x per unit drawn (measured timelines are
    in ns, drawn in ms; planned profiles are per kernel call).
    """
    drawn = {name: line for name, line in timelines.items() if line}
    if not drawn:
        return False
    x_label, x_per_unit = axes_of_x
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name, line in drawn.items():
        xs = [x / x_per_unit for x, _ in line]
        live_mib = [live / MIB for _, live in line]
        axes.step(xs, live_mib, where="post", label=f"{name} (peak {max(live_mib):.1f})")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title, fontsize=10)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True
