"""The largest batch that fits a memory cap, per model and backend: the figure users care about.

    python -m bench.fit --memory 16GiB --models resnet18,gpt2            # planned, full size
    python -m bench.fit --kind measured --memory 256MiB --scale tiny --models squeezenet1_0

A batch fits when the step's peak plus what stays resident through it fits the cap:

    total(b) = weights + optimizer state + the batch's inputs + peak of the step at batch b

with weights and Adam's two moments (training) counted from the model's parameters, and the
step's peak above that level, which in training includes the gradients: `zero_grad(set_to_
none=True)` drops them, the backward graph makes them (they are its outputs) and they live
until the optimizer step. Not counted: the optimizer step's own temporaries, and the caching
allocator's fragmentation (a CUDA run under the cap sees both).

kind "planned" (default): the step's peak is the modelopt backend's cost-model figure at full
size, compiled on fake tensors (bench.planned), for modelopt's plan and for Inductor's own
order; nothing runs, so the device is none and any cap can be asked for. Eager has no planned
figure: it is measured-only.
kind "measured": the step runs, compiled by each backend (eager included) at every batch tried.
On CPU the peak is kineto's (bench.measure) and the cap is arithmetic (a CPU has no cap to
run under); on CUDA (only where torch.cuda.is_available()) the step runs with weights, Adam
state and inputs allocated under torch.cuda.set_per_process_memory_fraction(cap / device
memory), and a batch fits when it does not run out of memory.

The search: the total is close to affine in the batch (weights fixed, activations linear), so
two probe batches give a line, the line a guess at the largest batch under the cap, and each
batch tried refines it (the last fitting and the first failing batch bracket the answer; the
line through the two points tried nearest the cap, clamped into the bracket, picks the next
batch; the bracket's middle where the line's last two guesses fell on the same side). It
stops when the bracket closes (exact), or, without --exact, once a batch the line put last is
confirmed to fit and the line puts the next one over (the next one predicted, not tried). It
assumes the total does not fall as the batch grows.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from bench.measure import BACKENDS, MeasureSettings, describe_error, measure_backend
from bench.models import FULL, SCALES, ModelSpec, Scale, make_inputs, select_models, wrap_for_mode
from bench.planned import build_fake_model
from bench.plots import PLANNED_AXES, plot_timelines
from bench.run import (
    BenchSettings,
    Task,
    device_label,
    machine_lines,
    planned_row_and_reports,
    resolve_device,
)
from bench.table import MIB, Row, geometric_mean, write_csv, write_markdown

PLANNED_BACKENDS = ("inductor", "modelopt")
# Planned: nothing runs at the batch planned. By default the backend runs each extern kernel
# (workspace, time) and times the candidates' compiled graphs at compile time, on real tensors
# of the graph's shapes: at batch 900 of ResNet-18 that is minutes and gigabytes. Instead:
# workspaces by rule, run times by FLOPs and bytes moved, no compile-time timing.
NOTHING_RUNS = {"measure_workspace": False, "measure_kernel_time": False, "timing_rounds": 0}
# Probe batches: the realistic batches of issue 23 (CNNs 32 and 64, text 8 and 16 of 512 tokens).
PROBES = {"vision": (32, 64), "text": (8, 16)}
ADAM_MOMENTS = 2  # exp_avg and exp_avg_sq, each the size of the parameters

Total = Callable[[int], "int | None"]  # bytes at a batch; None: could not be evaluated


# ---- the search, on any total(batch) ---------------------------------------------------------


@dataclass
class FitResult:
    """The largest batch found to fit, and how sure that is.

    largest: the largest batch tried that fits (0: not even batch 1; None: no figure).
    first_over: the smallest batch tried that does not fit (None: none tried).
    exact: first_over == largest + 1, both tried.
    tried: (batch, total bytes or None) in the order tried.
    """

    largest: int | None
    first_over: int | None
    exact: bool
    tried: list[tuple[int, int | None]] = field(default_factory=list)
    error: str = ""

    @property
    def largest_total(self) -> int | None:
        return dict(self.tried).get(self.largest) if self.largest else None

    def describe(self) -> str:
        if self.largest is None:
            return f"no figure ({self.error})" if self.error else "no figure"
        if self.exact:
            return f"{self.largest} (exact: {self.first_over} over)"
        if self.first_over is None:
            return f"{self.largest} (confirmed; {self.largest + 1} predicted over)"
        return f"{self.largest} (confirmed; {self.first_over} over; between untried)"


def affine_guess(points: Sequence[tuple[int, int]], cap: int) -> int | None:
    """The largest batch the line through the two points nearest the cap puts under it."""
    if len(points) < 2:
        return None
    (b1, t1), (b2, t2) = sorted(sorted(points, key=lambda p: abs(p[1] - cap))[:2])
    if b1 == b2 or t2 <= t1:
        return None  # flat or falling: the line says nothing
    slope = (t2 - t1) / (b2 - b1)
    return math.floor(b1 + (cap - t1) / slope)


def largest_fitting_batch(
    total: Total,
    cap: int,
    probes: Sequence[int] = (1, 2),
    max_batch: int = 1 << 16,
    max_tries: int = 8,
    exact: bool = False,
) -> FitResult:
    """The largest batch b <= max_batch with total(b) <= cap, trying at most `max_tries`."""
    tried: dict[int, int | None] = {}

    def fits(batch: int) -> bool | None:
        if batch not in tried:
            tried[batch] = total(batch)
        value = tried[batch]
        return None if value is None else value <= cap

    def result(lo: int | None, hi: int | None, error: str = "") -> FitResult:
        done = lo is not None and hi is not None and hi == lo + 1
        return FitResult(lo, hi, done, list(tried.items()), error)

    lo = hi = None  # the largest batch fitting, the smallest not, among those tried
    for batch in sorted(set(probes)):
        ok = fits(batch)
        if ok is None:
            return result(None, None, f"no total at batch {batch}")
        if ok:
            lo = batch
        elif hi is None:
            hi = batch
    if lo is None:
        lo = 0
    sides: list[bool] = []  # whether each batch the loop tried fit
    while len(tried) < max_tries:
        if hi is not None and hi <= lo + 1:
            break
        if lo >= max_batch:
            break
        points = [(b, t) for b, t in tried.items() if t is not None]
        guess = affine_guess(points, cap)
        if not exact and guess is not None and guess <= lo and lo in tried and lo > 0:
            break  # confirmed, and the line puts lo + 1 over
        # the line's last two guesses on the same side of the cap: it is bent; halve instead
        # (unless it puts the answer at lo, which lo + 1 then checks)
        bent = len(sides) >= 2 and sides[-1] == sides[-2] and guess is not None and guess > lo
        if guess is None or (hi is not None and bent):
            guess = (lo + hi) // 2 if hi is not None else max(2 * lo, 1)
        guess = max(guess, lo + 1)
        guess = min(guess, max_batch, hi - 1 if hi is not None else max_batch)
        ok = fits(guess)
        if ok is None:
            return result(lo or None, hi, f"no total at batch {guess}")
        sides.append(ok)
        if ok:
            lo = guess
        else:
            hi = guess
    return result(lo, hi)


# ---- what stays resident -----------------------------------------------------------------------


@dataclass(frozen=True)
class Resident:
    """Bytes resident through a step besides its peak: weights, optimizer state, inputs."""

    weight_bytes: int
    optimizer_bytes: int
    input_bytes_per_sample: int

    def at(self, batch: int) -> int:
        return self.weight_bytes + self.optimizer_bytes + batch * self.input_bytes_per_sample


def resident_bytes(spec: ModelSpec, scale: Scale, mode: str) -> Resident:
    """Counted on fake tensors: nothing is allocated. Adam's moments in training, none else."""
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = build_fake_model(spec, scale, fake_mode)
    weights = sum(t.numel() * t.element_size() for t in model.parameters())
    weights += sum(t.numel() * t.element_size() for t in model.buffers())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    with fake_mode:
        inputs = make_inputs(spec, scale, mode, 1)
    per_sample = sum(t.numel() * t.element_size() for t in inputs)
    optimizer = ADAM_MOMENTS * trainable if mode == "train" else 0
    return Resident(weights, optimizer, per_sample)


# ---- totals per kind --------------------------------------------------------------------------


@dataclass
class ModelFit:
    spec: ModelSpec
    mode: str
    kind: str
    device: str
    shape: str
    resident: Resident
    fits: dict[str, FitResult] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)  # planned rows at every batch tried
    reports: dict[int, list[Any]] = field(default_factory=dict)  # their graph reports
    # the reports of Inductor as it is (INDUCTOR_AS_IS), by batch
    inductor_reports: dict[int, list[Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def ratio(self, backend: str = "modelopt", baseline: str = "inductor") -> float | None:
        mine, theirs = self.fits.get(backend), self.fits.get(baseline)
        if not mine or not theirs or not mine.largest or not theirs.largest:
            return None
        return mine.largest / theirs.largest


# Inductor as it is: its default settings, its own order, its own buffer reuse (no arenas).
INDUCTOR_AS_IS = {"settings": "default", "reorder": False, "arena": "off"}


def planned_totals(fit: ModelFit, settings: BenchSettings) -> dict[str, Total]:
    """total(b) for Inductor and modelopt from planned rows, shared by both searches.

    A batch modelopt's search asks for is planned in full (every candidate setting), which
    gives Inductor's figure too; one only Inductor's asks for is planned as INDUCTOR_AS_IS
    (one candidate, several times cheaper), whose Inductor figure is the same cost model's.
    """
    full: dict[int, Row] = {}
    as_is: dict[int, Row] = {}
    inductor_settings = replace(
        settings, modelopt_options={**settings.modelopt_options, **INDUCTOR_AS_IS}
    )

    def plan(batch: int, cache: dict[int, Row], plan_settings: BenchSettings) -> Row:
        if batch not in cache:
            task = Task(fit.spec, fit.mode, batch, "planned")
            cache[batch], reports = planned_row_and_reports(task, plan_settings)
            if cache is full:
                fit.rows.append(cache[batch])
                fit.reports[batch] = reports
            else:
                fit.inductor_reports[batch] = reports
        return cache[batch]

    def modelopt_total(batch: int) -> int | None:
        return _total(plan(batch, full, settings).modelopt_peak_bytes, batch)

    def inductor_total(batch: int) -> int | None:
        row = full.get(batch) or plan(batch, as_is, inductor_settings)
        return _total(row.inductor_peak_bytes, batch)

    def _total(peak: int | None, batch: int) -> int | None:
        return None if peak is None else fit.resident.at(batch) + peak

    return {"modelopt": modelopt_total, "inductor": inductor_total}


def measured_cpu_total(
    spec: ModelSpec, mode: str, backend: str, settings: BenchSettings, resident: Resident
) -> Total:
    """total(b) from a real step at batch b compiled by `backend` (kineto's peak on CPU)."""

    def total(batch: int) -> int | None:
        torch.manual_seed(0)
        scale = settings.measured_scale
        module = wrap_for_mode(spec, spec.build(scale), mode)
        inputs = make_inputs(spec, scale, mode, batch)
        measure = MeasureSettings(settings.device, 1, False, settings.modelopt_options)
        result = measure_backend(backend, module, inputs, mode, measure)
        del module, inputs
        gc.collect()
        return None if result.peak_bytes is None else resident.at(batch) + result.peak_bytes

    return total


def cuda_total(
    spec: ModelSpec, mode: str, backend: str, settings: BenchSettings, cap: int
) -> Total:
    """total(b) on CUDA under the cap: max_memory_allocated of two real steps (Adam included)
    run under set_per_process_memory_fraction, or cap + 1 when they run out of memory."""
    from bench.measure import compile_for

    device = settings.device
    fraction = cap / torch.cuda.get_device_properties(device).total_memory

    def total(batch: int) -> int | None:
        torch._dynamo.reset()
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(min(fraction, 1.0), device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            torch.manual_seed(0)
            module = wrap_for_mode(spec, spec.build(settings.measured_scale), mode).to(device)
            inputs = make_inputs(spec, settings.measured_scale, mode, batch, device)
            compiled = compile_for(module, backend, settings.modelopt_options)
            optimizer = torch.optim.Adam(module.parameters()) if mode == "train" else None
            for _ in range(2):  # the first compiles and makes Adam's state
                if optimizer is None:
                    with torch.no_grad():
                        compiled(*inputs)
                    continue
                compiled(*inputs).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device)
        except torch.cuda.OutOfMemoryError:
            return cap + 1
        finally:
            torch._dynamo.reset()
            torch.cuda.set_per_process_memory_fraction(1.0, device)

    return total


# ---- one model --------------------------------------------------------------------------------


@dataclass
class FitSettings:
    bench: BenchSettings
    cap: int
    kind: str = "planned"
    probes: tuple[int, ...] | None = None  # None: PROBES by family
    max_tries: int = 6
    exact: bool = False


def fit_model(spec: ModelSpec, mode: str, settings: FitSettings) -> ModelFit:
    """Each backend's largest fitting batch for one model and mode."""
    begin = time.perf_counter()
    bench = settings.bench
    planned = settings.kind == "planned"
    scale = bench.planned_scale if planned else bench.measured_scale
    device = "none (planned on fake tensors)" if planned else device_label(bench.device)
    fit = ModelFit(spec, mode, settings.kind, device, spec.shape_label(scale), Resident(0, 0, 0))
    try:
        fit.resident = resident_bytes(spec, scale, mode)
    except Exception as error:
        fit.fits = {b: FitResult(None, None, False, error=describe_error(error)) for b in BACKENDS}
        return fit
    if planned:
        totals = planned_totals(fit, bench)
    elif bench.device.type == "cuda":
        totals = {b: cuda_total(spec, mode, b, bench, settings.cap) for b in bench.backends}
    else:
        totals = {b: measured_cpu_total(spec, mode, b, bench, fit.resident) for b in bench.backends}
    probes = settings.probes or PROBES[spec.family]
    for backend, total in totals.items():
        if backend not in bench.backends:
            continue
        fit.fits[backend] = largest_fitting_batch(
            total, settings.cap, probes, max_tries=settings.max_tries, exact=settings.exact
        )
    fit.seconds = time.perf_counter() - begin
    return fit


# ---- where the peak is: the backward's live bytes, Inductor's order and modelopt's plan -------


def backward_profile(reports: Sequence[Any]) -> list[tuple[int, int]]:
    """(kernel call, live bytes) of the step's backward as its generated code allocates it,
    from the cost model (the backward report's `internals.boundary`); [] without one."""
    for report in reversed(reports):
        boundary = report.internals.boundary
        profile = boundary.profile if boundary is not None else None
        if report.graph_kind == "backward" and profile:
            return list(enumerate(profile))
    return []


def forward_peak(reports: Sequence[Any]) -> int | None:
    return max(
        (r.emitted_peak_bytes or 0 for r in reports if r.graph_kind == "forward"), default=None
    )


def plot_profile(fit: ModelFit, settings: BenchSettings, out_dir: str) -> str | None:
    """A PNG of the training backward's live bytes at the first batch planned, modelopt's plan
    against Inductor's own (planned once more as INDUCTOR_AS_IS); None where there is none."""
    if fit.mode != "train" or not fit.reports:
        return None
    batch = min(fit.reports)
    inductor_reports = fit.inductor_reports.get(batch)
    if inductor_reports is None:
        options = {**settings.modelopt_options, **INDUCTOR_AS_IS}
        task = Task(fit.spec, fit.mode, batch, "planned")
        inductor_settings = replace(settings, modelopt_options=options)
        inductor_reports = planned_row_and_reports(task, inductor_settings)[1]
    lines = {
        "Inductor (default settings, its order)": backward_profile(inductor_reports),
        "modelopt (chosen settings, planned order)": backward_profile(fit.reports[batch]),
    }
    forwards = [forward_peak(inductor_reports), forward_peak(fit.reports[batch])]
    forward_text = "/".join(_mib(peak) for peak in forwards)
    title = (
        f"{fit.spec.name} train, batch {batch}, {fit.shape}: the backward graph's live bytes "
        f"(planned, cost model, no device)\nforward graph peaks (Inductor/modelopt): "
        f"{forward_text} MiB; weights and optimizer state not drawn"
    )
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"profile_{fit.spec.name}_{fit.mode}_b{batch}.png")
    y_label = "live bytes in the step, planned (MiB)"
    return path if plot_timelines(lines, title, path, PLANNED_AXES, y_label) else None


# ---- outputs ----------------------------------------------------------------------------------


def parse_bytes(text: str) -> int:
    """'16GiB', '512MiB', '1.5GB', '1000000' as bytes (KiB/MiB/GiB binary, KB/MB/GB decimal)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?)B?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a memory size: {text!r}")
    number, prefix, binary = match.groups()
    power = "KMGT".find(prefix.upper()) + 1 if prefix else 0
    return int(float(number) * (1024 if binary or not prefix else 1000) ** power)


def _mib(num_bytes: int | None) -> str:
    return "" if num_bytes is None else f"{num_bytes / MIB:.1f}"


def fit_table(fits: Sequence[ModelFit], cap: int) -> list[str]:
    """Markdown: one row per model and mode, the largest batch per backend, and the ratio."""
    backends = [b for b in BACKENDS if any(b in fit.fits for fit in fits)]
    head = ["model", "mode", "kind", "device", "shape", "weights MiB", "optimizer MiB"]
    head += [f"{b} largest batch" for b in backends]
    head += [f"{b} total MiB at it" for b in backends]
    tried = "/".join(b for b in backends)
    head += ["modelopt/Inductor batch", f"tried (batch: {tried} total MiB)", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fit in fits:
        cells = [fit.spec.name, fit.mode, fit.kind, fit.device, fit.shape]
        cells += [_mib(fit.resident.weight_bytes), _mib(fit.resident.optimizer_bytes)]
        cells += [fit.fits[b].describe() if b in fit.fits else "" for b in backends]
        cells += [_mib(fit.fits[b].largest_total) if b in fit.fits else "" for b in backends]
        ratio = fit.ratio()
        cells.append("" if ratio is None else f"{ratio:.3f}")
        cells.append(tried_text(fit))
        cells.append(f"{fit.seconds:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    ratios = [r for r in (fit.ratio() for fit in fits) if r is not None]
    if ratios:
        lines.append(
            f"\n**geomean modelopt/Inductor largest batch**: {geometric_mean(ratios):.3f} over "
            f"{len(ratios)} row(s), cap {cap / 2**30:.2f} GiB"
        )
    return lines


def tried_text(fit: ModelFit) -> str:
    """Every batch tried with each backend's total there."""
    by_batch: dict[int, dict[str, int | None]] = {}
    for backend, result in fit.fits.items():
        for batch, value in result.tried:
            by_batch.setdefault(batch, {})[backend] = value
    parts = []
    for batch in sorted(by_batch):
        values = by_batch[batch]
        totals = "/".join(
            _mib(values[b]) if b in values else "-" for b in BACKENDS if b in fit.fits
        )
        parts.append(f"{batch}: {totals}")
    return "; ".join(parts)


NOTES = [
    "total = weights + optimizer state (training: Adam's two moments, fp32) + the batch's "
    "inputs + the step's peak above them, which in training holds the gradients (the backward's "
    "outputs, zero_grad(set_to_none=True)); not counted: the optimizer step's own temporaries "
    "and allocator fragmentation",
    "planned: the step's peak is modelopt's cost-model figure compiled on fake tensors at full "
    "size, for modelopt's plan and for Inductor's own order under its default settings; "
    "nothing ran, on no device (modelopt options measure_workspace, measure_kernel_time off "
    "and timing_rounds 0: extern workspaces by rule, run times by FLOPs and bytes moved, "
    "which pick the settings); eager has no planned figure (measured-only)",
    "measured (CPU): the step ran at each batch tried, kineto's peak; the cap is arithmetic; "
    "CUDA: the step ran under set_per_process_memory_fraction (only where a GPU is at hand)",
    "largest batch: 'exact' when the next batch was tried and did not fit; 'confirmed; b+1 "
    "predicted over' when b was tried and fits and the line through the nearest batches "
    "tried puts b+1 over the cap",
]


def write_fit_outputs(
    fits: Sequence[ModelFit], out_dir: str, header: Sequence[str], cap: int
) -> list[str]:
    """fit.md (the largest batches), and the planned rows tried as results.md / results.csv."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "fit.md")
    lines = ["# largest batch that fits", "", *(f"- {line}" for line in header)]
    lines += [f"- note: {note}" for note in NOTES]
    lines += ["", *fit_table(fits, cap), ""]
    with open(path, "w") as handle:
        handle.write("\n".join(lines))
    paths = [path]
    rows = [row for fit in fits for row in fit.rows]
    if rows:
        rows_header = [*header, "rows: every batch bench.fit planned, at full size"]
        paths.append(os.path.join(out_dir, "results.md"))
        write_markdown(paths[-1], rows, rows_header)
        paths.append(os.path.join(out_dir, "results.csv"))
        write_csv(paths[-1], rows, rows_header)
    return paths


# ---- command line -----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fit", description=__doc__.split("\n")[0])
    parser.add_argument("--memory", default="16GiB", help="the cap, e.g. 16GiB, 256MiB")
    parser.add_argument("--models", default="all", help="comma list of zoo names, or all")
    parser.add_argument("--mode", choices=("train", "infer", "both"), default="train")
    parser.add_argument("--kind", choices=("planned", "measured"), default="planned")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--backends", default=None, help="default: Inductor and modelopt "
                        "(planned), eager too (measured)")  # fmt: skip
    parser.add_argument("--scale", choices=sorted(SCALES), default=None,
                        help="default: full (planned), reduced (measured)")  # fmt: skip
    parser.add_argument(
        "--probes", default=None, help="two batches, e.g. 32,64 (default by family)"
    )
    parser.add_argument("--max-tries", type=int, default=6, help="batches tried per backend")
    parser.add_argument("--exact", action="store_true", help="try batches until the bracket closes")
    parser.add_argument("--time-limit", type=float, default=5.0, help="modelopt seconds/graph")
    parser.add_argument(
        "--plots",
        action="store_true",
        help="planned training: a PNG per model of the "
        "backward's live bytes, Inductor vs modelopt (one more planned compile per model)",
    )
    parser.add_argument("--options", default=None, help="more modelopt options as JSON")
    parser.add_argument("--out", default=os.path.join("bench", "results", "fit"))
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> FitSettings:
    planned = args.kind == "planned"
    default_backends = PLANNED_BACKENDS if planned else BACKENDS
    backends = tuple(args.backends.split(",")) if args.backends else default_backends
    if planned and "eager" in backends:
        raise SystemExit("eager has no planned figure: it is measured-only (--kind measured)")
    scale = SCALES[args.scale] if args.scale else (FULL if planned else SCALES["reduced"])
    bench = BenchSettings(
        device=resolve_device(args.device),
        backends=backends,
        measured_scale=scale,
        planned_scale=scale,
        modelopt_options={
            "time_limit": args.time_limit,
            **(NOTHING_RUNS if planned else {}),
            **(json.loads(args.options) if args.options else {}),
        },
    )
    probes = tuple(int(b) for b in args.probes.split(",")) if args.probes else None
    return FitSettings(
        bench, parse_bytes(args.memory), args.kind, probes, args.max_tries, args.exact
    )


def main(argv: Sequence[str] | None = None) -> list[ModelFit]:
    args = parse_args(argv)
    settings = settings_from_args(args)
    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    command = "python -m bench.fit " + shlex.join(sys.argv[1:] if argv is None else argv)
    header = machine_lines(command, settings.bench)
    header.append(f"cap: {settings.cap / 2**30:.3f} GiB ({settings.cap} bytes), kind {args.kind}")
    fits: list[ModelFit] = []
    for spec in select_models(args.models):
        for mode in modes:
            fits.append(fit_model(spec, mode, settings))
            if args.plots and args.kind == "planned":
                path = plot_profile(fits[-1], settings.bench, args.out)
                print(f"wrote {path}" if path else f"{spec.name} {mode}: no profile", flush=True)
            write_fit_outputs(fits, args.out, header, settings.cap)  # partial results kept
            print(f"{spec.name} {mode}: " + ", ".join(
                f"{b} {r.describe()}" for b, r in fits[-1].fits.items()
            ), flush=True)  # fmt: skip
    for path in write_fit_outputs(fits, args.out, header, settings.cap):
        print(f"wrote {path}")
    return fits


if __name__ == "__main__":
    main()
