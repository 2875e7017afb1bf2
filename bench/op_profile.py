"""Where a training step's time goes under each setting, and what modelopt estimated for it.

    python -m bench.op_profile --row zoo:efficientnet_b0@8 \
        --settings inductor,no_layout_opt,no_layout_opt+planned_saves

For each setting (as in `bench.step_times`; "inductor" is plain Inductor) the row is compiled
in this process, its steps are timed in turns, and three more steps run under the PyTorch
profiler: the table gives each op's self CPU time per step, the ops that differ most between
the settings first (a compiled graph's own kernels count as its "CompiledFxGraph" call). Then
`settings="auto"` is compiled twice, with `measure_kernel_time` on and off, and the estimated
run time of each candidate it weighed is given against the defaults': what the choice was
made on, with measured extern kernels and with FLOPs alone. A third table sets the extern
kernels' (convolutions, matmuls, attention) time in the step beside what the compile-time
measurement said of the same kernels: first measured, and timed again in rounds as before the
choice (`capture/workspace.py`). Writes `op_profile_<row>.md`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.step_times import _compiled_step
from dynamo_modelopt.capture import workspace


def op_times(step: object, steps: int = 3) -> dict[str, tuple[float, int]]:
    """Self CPU ms and calls per step of each op over `steps` profiled steps."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()  # type: ignore[operator]
    return {
        e.key: (e.self_cpu_time_total / steps / 1e3, e.count // steps) for e in prof.key_averages()
    }


def extern_ms(step: object, op_names: set[str], steps: int = 3) -> float:
    """CPU ms per step of the ATen ops named (their total time, children included)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()  # type: ignore[operator]
    wanted = {f"aten::{name}" for name in op_names}
    return sum(e.cpu_time_total for e in prof.key_averages() if e.key in wanted) / steps / 1e3


def _op_name(key: tuple[object, ...]) -> str:
    """ "aten.convolution_backward.default" -> "convolution_backward"."""
    return str(key[0]).split(".")[1]


def estimates(row: str, measure: bool) -> tuple[str, dict[str, float]]:
    """modelopt's choice under "auto" and each candidate's estimated run time (seconds)."""
    import dynamo_modelopt

    _compiled_step(row, "auto", {"measure_kernel_time": measure})
    summary = dynamo_modelopt.get_reports()[0].details["settings"]
    runtimes = {k: v["estimated_runtime"] for k, v in summary["alternatives"].items()}
    return summary["chosen"], runtimes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", default="zoo:efficientnet_b0@8")
    parser.add_argument("--settings", default="inductor,no_layout_opt,no_layout_opt+planned_saves")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    names = args.settings.split(",")
    with workspace.keeping_kernels():
        compiled = {name: _compiled_step(args.row, name) for name in names}
        kernels = {
            name: [k for r in c.reports for k in r.internals.measured_kernels]
            for name, c in compiled.items()
        }
        retimed = workspace.retime(k.key for ks in kernels.values() for k in ks)
    steps = {name: c.step for name, c in compiled.items()}
    times: dict[str, list[float]] = {n: [] for n in names}
    for repetition in range(args.repeats):  # in turns, as bench.step_times --paired
        for name in names[repetition % len(names) :] + names[: repetition % len(names)]:
            begin = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - begin)
    tables = {name: op_times(steps[name]) for name in names}
    op_names = {_op_name(k.key) for ks in kernels.values() for k in ks}
    ops = set().union(*tables.values())

    def spread(op: str) -> float:
        values = [tables[n].get(op, (0.0, 0))[0] for n in names]
        return max(values) - min(values)

    lines = [
        f"# Op times of {args.row} per training step (CPU)",
        "",
        f"- command: `python -m bench.op_profile --row {args.row} --settings {args.settings}"
        f" --repeats {args.repeats} --top {args.top}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads",
        "- step ms: median of steps timed in turns; op cells: self CPU ms per step (calls)",
        "",
        "| op | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        "| step ms | "
        + " | ".join(f"{statistics.median(times[n]) * 1e3:.1f}" for n in names)
        + " |",
    ]
    for op in sorted(ops, key=lambda o: (-spread(o), o))[: args.top]:
        cells = [tables[n].get(op, (0.0, 0)) for n in names]
        lines.append(f"| {op[:60]} | " + " | ".join(f"{ms:.2f} ({c})" for ms, c in cells) + " |")
    lines += [
        "",
        'Estimated run time of each candidate of `settings="auto"`, against the defaults\':',
        "",
    ]
    lines += [
        "| measure_kernel_time | chosen | " + " | ".join(["candidates"]) + " |",
        "|---|---|---|",
    ]
    for measure in (True, False):
        chosen, runtimes = estimates(args.row, measure)
        base = runtimes.get("default") or 1.0
        cells = ", ".join(f"{k} {v / base - 1:+.1%}" for k, v in runtimes.items())
        lines.append(f"| {measure} | {chosen} | {cells} |")
    lines += [
        "",
        f"Extern kernels ({', '.join(sorted(op_names)) or 'none measured'}), ms per step: in"
        " the step (profiler, total time of those ops) and as measured at compile time:",
        "",
        "| setting | kernels | in the step | first measured | timed again in rounds |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        if not kernels[name]:
            continue
        first = sum(k.seconds for k in kernels[name]) * 1e3
        again = sum(retimed.get(k.key, k.seconds) for k in kernels[name]) * 1e3
        lines.append(
            f"| {name} | {len(kernels[name])} | {extern_ms(steps[name], op_names):.1f}"
            f" | {first:.1f} | {again:.1f} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"op_profile_{args.row.replace(':', '_').replace('@', '_b')}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
