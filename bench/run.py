"""The paper's table, measured and planned, for eager, Inductor and modelopt side by side.

    python -m bench.run --quick                       # a few small models, a couple of minutes
    python -m bench.run --models resnet18,gpt2 --mode train --batch 1,32 --kind both

Rows of kind "measured" come from real steps (CPU: kineto allocator events at a reduced
shape by default; CUDA: peak counters at full size); rows of kind "planned" are the modelopt
backend's compile-time figures at full size, compiled on fake tensors, so nothing is computed.
The bench reports and never asserts: a model that fails gets its error in its row.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shlex
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from bench.measure import BACKENDS, BackendResult, MeasureSettings, describe_error, measure_backend
from bench.models import (
    FULL,
    QUICK_MODELS,
    SCALES,
    TINY,
    ModelSpec,
    Scale,
    make_inputs,
    select_models,
    wrap_for_mode,
)
from bench.planned import PlannedResult, plan_on_fake_tensors
from bench.plots import plot_peaks, plot_timelines
from bench.reports import combine_reports
from bench.table import Row, write_csv, write_markdown

KINDS = ("measured", "planned")
Timelines = dict[str, list[tuple[int, int]]]


@dataclass(frozen=True)
class Task:
    spec: ModelSpec
    mode: str
    batch: int
    kind: str


@dataclass
class BenchSettings:
    device: torch.device
    backends: tuple[str, ...] = BACKENDS
    measured_scale: Scale = TINY
    planned_scale: Scale = FULL
    repeats: int = 3
    sgd: bool = False
    modelopt_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchResult:
    rows: list[Row] = field(default_factory=list)
    timelines: dict[tuple[str, str, int], Timelines] = field(default_factory=dict)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


# ---- one row --------------------------------------------------------------------------------


def apply_plan(row: Row, reports: Sequence[Any], planned: bool) -> None:
    """Fill the planner columns of `row` from modelopt's reports of its step."""
    plan = combine_reports(reports)
    if plan is None:
        return
    row.planned_peak_bytes = plan.planned_peak_bytes
    row.lower_bound_bytes = plan.lower_bound_bytes
    row.num_graphs = plan.num_graphs
    row.solver = plan.solvers
    row.status = plan.status
    row.solve_seconds = plan.solve_seconds
    row.fallbacks = plan.fallbacks
    row.peak_at = plan.peak_at
    row.settings = plan.settings
    row.predicted_overhead = plan.predicted_overhead
    row.notes = _join(row.notes, f"graphs (planned/Inductor/bound): {plan.per_graph}")
    if planned:
        row.inductor_peak_bytes = plan.inductor_peak_bytes
        row.modelopt_peak_bytes = plan.planned_peak_bytes


def _join(*texts: str) -> str:
    return "; ".join(text for text in texts if text)


def apply_backend_result(row: Row, result: BackendResult) -> None:
    """Copy one backend's measured figures (or its error) into `row`."""
    if result.error:
        row.error = _join(row.error, f"{result.backend}: {result.error}")
        return
    setattr(row, f"{result.backend}_peak_bytes", result.peak_bytes)
    setattr(row, f"{result.backend}_reserved_bytes", result.reserved_bytes)
    setattr(row, f"{result.backend}_step_ms", result.step_ms)
    if result.backend != "eager":
        setattr(row, f"{result.backend}_compile_seconds", result.compile_seconds)
    row.notes = _join(row.notes, result.notes)
    if result.backend == "modelopt":
        row.modelopt_recompile_seconds = result.recompile_seconds
        apply_plan(row, result.reports, planned=False)


def measured_row(task: Task, settings: BenchSettings) -> tuple[Row, Timelines]:
    """Run the task's step under every backend on the same model and inputs."""
    spec, scale = task.spec, settings.measured_scale
    row = Row(
        task.spec.name, task.mode, task.batch, "measured", device_label(settings.device),
        spec.shape_label(scale),
    )  # fmt: skip
    torch.manual_seed(0)
    module = wrap_for_mode(spec, spec.build(scale), task.mode).to(settings.device)
    inputs = make_inputs(spec, scale, task.mode, task.batch, settings.device)
    measure_settings = MeasureSettings(
        settings.device, settings.repeats, settings.sgd, settings.modelopt_options
    )
    timelines: Timelines = {}
    for backend in settings.backends:
        result = measure_backend(backend, module, inputs, task.mode, measure_settings)
        apply_backend_result(row, result)
        if result.timeline:
            timelines[backend] = result.timeline
    return row, timelines


def planned_row(task: Task, settings: BenchSettings) -> Row:
    """The modelopt backend's own figures for the task's step, from a fake-tensor compile."""
    return planned_row_and_reports(task, settings)[0]


def planned_row_and_reports(task: Task, settings: BenchSettings) -> tuple[Row, list[Any]]:
    """`planned_row`, with the step's graph reports it was made from."""
    scale = settings.planned_scale
    row = Row(
        task.spec.name, task.mode, task.batch, "planned", "cpu (fake tensors)",
        task.spec.shape_label(scale),
    )  # fmt: skip
    if "modelopt" not in settings.backends:
        row.error = "planned figures need the modelopt backend"
        return row, []
    result: PlannedResult = plan_on_fake_tensors(
        task.spec, task.mode, task.batch, settings.modelopt_options, scale
    )
    row.modelopt_compile_seconds = result.compile_seconds
    if result.error:
        row.error = f"modelopt: {result.error}"
    apply_plan(row, result.reports, planned=True)
    return row, result.reports


def run_task(task: Task, settings: BenchSettings) -> tuple[Row, Timelines]:
    """One row; any exception (a model that fails to build, a backend error) lands in it."""
    try:
        if task.kind == "measured":
            return measured_row(task, settings)
        return planned_row(task, settings), {}
    except Exception as error:
        row = Row(task.spec.name, task.mode, task.batch, task.kind, device_label(settings.device))
        row.error = describe_error(error)
        return row, {}
    finally:
        torch._dynamo.reset()
        gc.collect()


def run_benchmark(
    tasks: Sequence[Task],
    settings: BenchSettings,
    on_row: Callable[[BenchResult], None] | None = None,
    progress: bool = True,
) -> BenchResult:
    """Every task in turn; `on_row` sees the result so far after each one."""
    result = BenchResult()
    bar = tqdm(tasks, desc="bench", unit="row", disable=not progress, dynamic_ncols=True)
    for task in bar:
        bar.set_postfix_str(f"{task.spec.name} {task.mode} b{task.batch} {task.kind}")
        row, timelines = run_task(task, settings)
        result.rows.append(row)
        if timelines:
            result.timelines[(task.spec.name, task.mode, task.batch)] = timelines
        if on_row is not None:
            on_row(result)
    return result


# ---- outputs --------------------------------------------------------------------------------


def machine_lines(command: str, settings: BenchSettings) -> list[str]:
    """Command, date, versions, device and machine, for the top of every output file."""
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"command: `{command}`",
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
        f"torch {torch.__version__}, python {platform.python_version()}",
        f"device: {device_label(settings.device)}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {ram_gib:.1f} GiB RAM",
        # Step times mean little on a machine busy with other work; say how busy it was.
        "load average at start (1/5/15 min): " + "/".join(f"{v:.1f}" for v in os.getloadavg()),
    ]


NOTES = [
    "measured: one real step after a warm-up step that compiles; peak = bytes allocated above "
    "the level before the step (CPU: kineto [memory] events; CUDA: max_memory_allocated - "
    "memory_allocated before); step ms = median of the timed steps",
    "planned: the modelopt backend's cost-model figures per compiled graph, compiled on fake "
    "tensors (no compute); the Inductor column is its figure for Inductor's own order",
    "per step, peaks and bounds are the max over the step's graphs (they run one after "
    "another), solve times the sum, status the worst; planned = modelopt's cost-model peak; "
    "gap = (planned - bound) / planned",
    "measured rows' bound/solver/status come from the reports of the measured compile",
    "ratios < 1: modelopt used less memory; geomean rows: over the rows with that ratio",
    "compile s: wall time of the first step, compile included, caches of compiled graphs off; "
    "modelopt recompile s: the same again after a Dynamo reset, in the same process, the "
    "settings read from modelopt's decision cache (a later run of the script; each bench "
    "process starts with an empty one)",
]


def write_outputs(result: BenchResult, out_dir: str, header: Sequence[str]) -> list[str]:
    """The markdown table and the CSV; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    markdown_path = os.path.join(out_dir, "results.md")
    csv_path = os.path.join(out_dir, "results.csv")
    write_markdown(markdown_path, result.rows, [*header, *(f"note: {n}" for n in NOTES)])
    write_csv(csv_path, result.rows, header)
    return [markdown_path, csv_path]


def timeline_saving(lines: Timelines) -> float:
    """Fraction of Inductor's measured peak that modelopt saved (0 without both lines)."""
    inductor, modelopt = lines.get("inductor"), lines.get("modelopt")
    if not inductor or not modelopt:
        return 0.0
    inductor_peak = max(live for _, live in inductor)
    modelopt_peak = max(live for _, live in modelopt)
    return (inductor_peak - modelopt_peak) / inductor_peak if inductor_peak > 0 else 0.0


def pick_timeline(
    result: BenchResult, wanted_model: str | None
) -> tuple[tuple[str, str, int], Timelines] | None:
    """The training step to draw: `wanted_model`'s, else the one where modelopt saved most."""
    candidates = [
        (key, lines)
        for key, lines in result.timelines.items()
        if key[1] == "train" and (wanted_model is None or key[0] == wanted_model)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda item: (len(item[1]), timeline_saving(item[1])))


def write_plots(
    result: BenchResult, out_dir: str, header: Sequence[str], timeline_model: str | None
) -> list[str]:
    """Peak bars per kind and one training step's memory timeline; returns the paths."""
    written = []
    # Long commands would run off the figure; wrap them under the title.
    subtitle = "\n" + textwrap.fill(header[0].removeprefix("command: "), width=100)
    for kind in KINDS:
        path = os.path.join(out_dir, f"peak_memory_{kind}.png")
        if plot_peaks(result.rows, kind, path, subtitle):
            written.append(path)
    picked = pick_timeline(result, timeline_model)
    drawn = [] if picked is None else [("timeline.png", picked)]
    # and one per measured row (model, mode, batch), under timelines/
    for key, lines in result.timelines.items():
        name = os.path.join("timelines", "timeline_{}_{}_b{}.png".format(*key))
        drawn.append((name, (key, lines)))
    for name, ((model, mode, batch), lines) in drawn:
        path = os.path.join(out_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        title = f"memory over one {mode} step: {model}, batch {batch} (measured){subtitle}"
        if plot_timelines(lines, title, path):
            written.append(path)
    return written


# ---- command line ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="all", help="comma list of zoo names, or all")
    parser.add_argument("--mode", choices=("train", "infer", "both"), default="both")
    parser.add_argument("--batch", default="1", help="comma list of batch sizes, e.g. 1,32")
    parser.add_argument("--quick", action="store_true", help="a few small models, tiny inputs")
    parser.add_argument("--kind", choices=(*KINDS, "both"), default="both")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma list")
    parser.add_argument(
        "--scale",
        choices=sorted(SCALES),
        help="shape of measured runs (default: reduced on CPU, full on CUDA, tiny with --quick;"
        " train: 128px, text 4 layers of 128 tokens)",
    )
    parser.add_argument(
        "--planned-scale", choices=sorted(SCALES), help="default full (--quick: tiny)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per backend")
    parser.add_argument("--sgd", action="store_true", help="add an SGD step to training steps")
    parser.add_argument("--solver", default=None, help="modelopt solver option")
    parser.add_argument("--time-limit", type=float, default=None, help="modelopt seconds/graph")
    parser.add_argument(
        "--options",
        default=None,
        help='more modelopt options as JSON, e.g. \'{"arena": "on", "settings": "default"}\'',
    )
    parser.add_argument("--timeline-model", default=None, help="model of the timeline plot")
    parser.add_argument("--out", default=os.path.join("bench", "results"))
    return parser.parse_args(argv)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here")
    return torch.device(name)


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    device = resolve_device(args.device)
    default_scale = "tiny" if args.quick else ("full" if device.type == "cuda" else "reduced")
    options: dict[str, Any] = {}
    if args.solver:
        options["solver"] = args.solver
    if args.time_limit or args.quick:
        # --quick's graphs are tiny; 2 s per graph keeps the run to a couple of minutes.
        options["time_limit"] = args.time_limit or 2.0
    if args.options:
        options.update(json.loads(args.options))
    backends = tuple(name.strip() for name in args.backends.split(",") if name.strip())
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; known: {BACKENDS}")
    return BenchSettings(
        device=device,
        backends=backends,
        measured_scale=SCALES[args.scale or default_scale],
        planned_scale=SCALES[args.planned_scale or ("tiny" if args.quick else "full")],
        repeats=args.repeats,
        sgd=args.sgd,
        modelopt_options=options,
    )


def tasks_from_args(args: argparse.Namespace) -> list[Task]:
    names = ",".join(QUICK_MODELS) if args.quick and args.models == "all" else args.models
    specs = select_models(names)
    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    batches = [int(batch) for batch in args.batch.split(",") if batch.strip()]
    kinds = KINDS if args.kind == "both" else (args.kind,)
    return [
        Task(spec, mode, batch, kind)
        for kind in kinds
        for spec in specs
        for mode in modes
        for batch in batches
    ]


def main(argv: Sequence[str] | None = None) -> BenchResult:
    args = parse_args(argv)
    settings = settings_from_args(args)
    tasks = tasks_from_args(args)
    command = "python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    header = machine_lines(command, settings)
    begin = time.perf_counter()

    def save(result: BenchResult) -> None:
        write_outputs(result, args.out, header)

    result = run_benchmark(tasks, settings, on_row=save)
    wall = f"wall time: {time.perf_counter() - begin:.0f} s for {len(tasks)} rows"
    header.append(wall)
    paths = write_outputs(result, args.out, header)
    paths += write_plots(result, args.out, header, args.timeline_model)
    print(wall)
    print("\n".join(f"wrote {path}" for path in paths))
    return result


if __name__ == "__main__":
    main()
