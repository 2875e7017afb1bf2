"""Choose the memory-relevant compile settings of a graph by the planner's numbers.

Order alone rarely moves the peak: in training it sits where the forward hands its saved
activations to the backward, and there the compile settings decide (measured on CPU, Inductor
2.14: ResNet-18's step peak 157 -> 122 MiB without layout optimization; ViT-B/16's 474 -> 362 MiB
with an activation memory budget of 0.5). So for each graph we plan a few candidate settings, the
backward eagerly too, without building their kernels (`inductor/plan_only.py`), and take the
candidate with the lowest predicted peak (our cost model, checked against the profiler) whose
modelled run time stays within `max_recompute_overhead` of Inductor's defaults; where several
come within `peak_tolerance` of that lowest peak, the one with the least peak times run time.
Ties go to the earlier candidate (the defaults come first), so without a predicted gain
nothing changes. Only the winner is built. With `timing_rounds` > 0 (a veto, off by default:
it builds the defaults too) and where memory allows, the winner is run beside the defaults, and
one measured above the budget at 95% confidence (`timing.py`) gives way to the next by the same
rule. A measurement never picks a candidate, and kernel times are timed once per machine and
kept (`capture/kernel_times.py`), so the same graph, inputs and options choose the same settings
in every process on the machine. Candidates that cannot change the outcome are not planned
(`compiles_as_planned`; a saved set predicted out of reach stops before lowering, `prepare`).

The run-time model on GPUs is Inductor's estimate, or the time to issue the kernels where that
is larger (small graphs are launch-bound: `runtime_model.GPU_SECONDS_PER_KERNEL`). On CPU it is
each extern kernel's (convolution, matmul, attention) measured time plus the generated
kernels' FLOPs and bytes at fixed rates: FLOPs alone said EfficientNet-B0 (batch 8) would run
8.6% faster without layout optimization, where it ran 5.1% slower in turns (`bench.op_profile`).
All candidates' kernels are timed again side by side before the choice (`retime_trials`), so
one kernel has one time in every candidate.

Candidates:
- "default": Inductor's own settings;
- "no_layout_opt": `layout_optimization=False` (no channels-last copies of weights and
  activations around convolutions);
- "budget_<b>" (training only): the min-cut partitioner's `activation_memory_budget=b`, which
  recomputes cheap activations in the backward instead of saving them;
- "planned_saves" (training only): the planner decides which activations the backward
  recomputes, for the lowest peak over the backward's steps within the run-time budget
  (`inductor/saved_set.py`, `planner/remat.py`);
- "bw_no_layout_opt+<budget or planned_saves>" (training with convolutions): the forward with
  layout optimization, the backward without (`inductor/backward_layout.py`);
- "pointwise_cat" (inference, graphs with a concatenation): `force_pointwise_cat=True`. By
  default Inductor's CPU code writes each input of a concatenation straight into its slice of
  the output, so the output is allocated when its first input is computed; where an input feeds
  several concatenations (DenseNet), all of them are allocated at once. A pointwise copy kernel
  allocates the output only when it runs, for one extra copy of each input: DenseNet-121
  inference 1.48 -> 0.70 MiB with the layout choice (`bench/results/results.md`).
Combinations of these are tried too.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .inductor.saved_set import PlannedPartitioner
from .report import GraphReport
from .timing import measured_limit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One combination of compile settings to try.

    `backward_layout_opt`: False compiles the backward without layout optimization
    (`inductor/backward_layout.py`). `recomputes`: it recomputes activations in the backward
    (an activation budget or the planner's saved set), a run-time risk. `plans_saves_on`: for
    the planner's saved set, the candidate whose compiled backward it is planned from."""

    name: str
    inductor_patches: dict[str, Any] = field(default_factory=dict)
    functorch_patches: dict[str, Any] = field(default_factory=dict)
    backward_layout_opt: bool = True
    recomputes: bool = False
    plans_saves_on: str | None = None


#: the layout part of a candidate's name whose backward is compiled without layout optimization
BACKWARD_NO_LAYOUT_OPT = "bw_no_layout_opt"

CompileWith = Callable[[torch.fx.GraphModule, Sequence[Any], dict[str, Any], bool, bool], Any]


@dataclass
class Trial:
    """A candidate, planned (and built, where `built`), and what our cost model predicts."""

    candidate: Candidate
    compiled: Callable[..., Any]
    reports: list[GraphReport]
    built: bool = True
    # measured at compile time beside the defaults (`veto_by_timing`): median seconds of a
    # forward (and backward) run, and the per-round ratios to the defaults' run
    measured_seconds: float | None = None
    measured_ratio: float | None = None
    measured_rounds: list[float] = field(default_factory=list)
    measured_ratios: list[float] = field(default_factory=list)
    # why the measurement drops it (significantly over budget); such a trial is not chosen
    veto: str | None = None
    # why building or running it failed; such a trial is never chosen
    run_error: str | None = None

    @property
    def predicted_peak_bytes(self) -> int:
        """Peak of the step: the larger of the graphs' emitted peaks.

        The backward's problem holds the saved activations from its first step, so its peak
        already includes what crosses the boundary.
        """
        return max((_emitted(r) for r in self.reports), default=0)

    @property
    def estimated_runtime(self) -> float:
        return sum(float(r.details.get("estimated_runtime", 0.0)) for r in self.reports)

    def record_rounds(self, seconds: Sequence[float], ratios: Sequence[float]) -> None:
        """Add rounds' seconds and ratios to the defaults in the same rounds, and read the
        medians again."""
        self.measured_rounds.extend(seconds)
        self.measured_ratios.extend(ratios)
        self.measured_seconds = statistics.median(self.measured_rounds)
        self.measured_ratio = statistics.median(self.measured_ratios)

    @property
    def fell_back(self) -> bool:
        return any(r.status == "fallback" for r in self.reports)

    @property
    def usable(self) -> bool:
        return not self.fell_back and self.run_error is None


def _emitted(report: GraphReport) -> int:
    if report.emitted_peak_bytes is not None:
        return report.emitted_peak_bytes
    return report.planned_peak_bytes or 0  # None: a fallback, which is never chosen


def candidates(
    training: bool,
    has_convolution: bool,
    activation_budgets: Sequence[float],
    has_concatenation: bool = False,
    planned_saves: Callable[[], Any] | None = None,
    backward_layouts: bool = False,
) -> list[Candidate]:
    """The settings to try, Inductor's defaults first; only those that can change the graph
    (Inductor optimizes layouts only around convolutions; budgets act in training only; the
    way a concatenation is written moved no training peak we measured).

    `planned_saves`: makes the partitioner of a "planned_saves" candidate (a fresh one for each,
    as it keeps its plans); None leaves that candidate out. `backward_layouts`: with
    convolutions in training, each recomputing candidate with layout optimization is also
    tried with its backward compiled without it ("bw_no_layout_opt+..."): a backward holds
    convolutions only where it recomputes them, and Inductor then lays the whole backward out
    channels-last, which cost EfficientNet-B0 more memory than the recomputation saved and
    saved a small depthwise network some (`inductor/backward_layout.py`)."""
    layouts: list[tuple[str, dict[str, Any]]] = [("", {})]
    if has_convolution:
        layouts.append(("no_layout_opt", {"layout_optimization": False}))
    if has_concatenation and not training:
        layouts += [
            (f"{name}+pointwise_cat".lstrip("+"), {**patches, "force_pointwise_cat": True})
            for name, patches in list(layouts)
        ]
    budgets: list[tuple[str, dict[str, Any]]] = [("", {})]
    if training:
        budgets += [(f"budget_{b:g}", {"activation_memory_budget": b}) for b in activation_budgets]
        if planned_saves is not None:
            budgets.append(("planned_saves", {}))
    found = []
    for budget_name, functorch_patches in budgets:
        variants = [(name, patches, True) for name, patches in layouts]
        if backward_layouts and training and has_convolution and budget_name:
            variants.append((BACKWARD_NO_LAYOUT_OPT, {}, False))
        for layout_name, inductor_patches, backward_layout_opt in variants:
            name = "+".join(n for n in (layout_name, budget_name) if n) or "default"
            patches = inductor_patches
            plans_saves_on = None
            if budget_name == "planned_saves" and planned_saves is not None:
                patches = {**inductor_patches, "custom_partitioner_fn": planned_saves()}
                # without recomputation a backward holds no convolution: a backward without
                # layout optimization is the defaults' backward
                plans_saves_on = layout_name if backward_layout_opt and layout_name else "default"
            found.append(
                Candidate(
                    name,
                    patches,
                    functorch_patches,
                    backward_layout_opt,
                    recomputes=bool(budget_name),
                    plans_saves_on=plans_saves_on,
                )
            )
    return found


def has_concatenation(gm: torch.fx.GraphModule) -> bool:
    """Whether Dynamo's graph concatenates tensors (`torch.cat` and its aliases, ATen's cat)."""
    names = ("cat", "concat", "concatenate")
    return any(
        node.op in ("call_function", "call_method")
        and (
            getattr(node.target, "__name__", node.target) in names
            or str(node.target) == "aten.cat.default"
        )
        for node in gm.graph.nodes
    )


def has_convolution(gm: torch.fx.GraphModule) -> bool:
    """Whether Dynamo's graph calls a convolution (functional, module or ATen)."""
    for node in gm.graph.nodes:
        target = node.target
        if node.op == "call_module":
            target = type(gm.get_submodule(node.target))
        if "conv" in getattr(target, "__name__", str(target)).lower():
            return True
    return False


def is_training_graph(example_inputs: Sequence[Any]) -> bool:
    """Dynamo calls the backend under the caller's grad mode; AOTAutograd then builds a joint
    graph exactly when some input needs a gradient."""
    return torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in example_inputs
    )


def compile_trial(
    candidate: Candidate,
    gm: torch.fx.GraphModule,
    example_inputs: Sequence[Any],
    compile_with: CompileWith,
    build: bool = True,
) -> Trial:
    """Compile a copy of `gm` under `candidate`, forward and backward now, collecting reports;
    `build=False` stops each planned graph before its kernels are built
    (`inductor/plan_only.py`): the trial can be compared, not run."""
    from .report import collect_reports

    functorch_patches = {"force_non_lazy_backward_lowering": True, **candidate.functorch_patches}
    with collect_reports() as reports, torch._functorch.config.patch(functorch_patches):
        compiled = compile_with(
            copy.deepcopy(gm),
            example_inputs,
            candidate.inductor_patches,
            candidate.backward_layout_opt,
            build,
        )
    partitioner = candidate.inductor_patches.get("custom_partitioner_fn")
    if isinstance(partitioner, PlannedPartitioner) and partitioner.plans:
        for report in reports:
            report.internals.recompute_plan = partitioner.plans[-1]
    return Trial(candidate=candidate, compiled=compiled, reports=reports, built=build)


def replaying(candidate: Candidate, recompute_plan: Any) -> Candidate:
    """`candidate` with its planned saved set replayed from `recompute_plan` instead of solved
    again (a copy: the partitioner of the search is left as it was); others unchanged."""
    partitioner = candidate.inductor_patches.get("custom_partitioner_fn")
    if not isinstance(partitioner, PlannedPartitioner):
        return candidate
    copied = copy.copy(partitioner)
    copied.plans, copied.replay = [], recompute_plan
    patches = {**candidate.inductor_patches, "custom_partitioner_fn": copied}
    return dataclasses.replace(candidate, inductor_patches=patches)


def recompute_plan_of(trial: Trial) -> Any:
    """The saved-set plan a trial was compiled with, or None."""
    return next((r.internals.recompute_plan for r in trial.reports), None)


def prepare(
    candidate: Candidate,
    trials: Sequence[Trial],
    max_recompute_overhead: float,
    peak_tolerance: float = 0.0,
) -> None:
    """Hand a "planned_saves" candidate's partitioner what the trials planned so far show.

    - The compiled backward of the settings it is planned on (`plans_saves_on`, planned
      earlier: the defaults come first), so the recomputation is planned on what that code
      allocates rather than on the joint graph's estimate.
    - Its budget in seconds, where both that trial and the defaults were estimated by our CPU
      model (the unit the partitioner prices operations in): what `choose` will allow, less
      what the settings without it already add (no layout optimization can cost time too).
    - The peak it must come near to be chosen: the lowest predicted peak within the run-time
      budget so far, plus `peak_tolerance` (`choose` takes nothing higher). A plan predicting a
      backward peak clearly above it stops the candidate before it is lowered
      (`saved_set.CannotWin`): ResNet-18 (batch 8) planned the saved set on Inductor's layout
      at 76 MiB where no layout optimization had 51 MiB already.
    """
    partitioner = candidate.inductor_patches.get("custom_partitioner_fn")
    if not isinstance(partitioner, PlannedPartitioner):
        return
    for trial in trials:
        if trial.candidate.name != candidate.plans_saves_on:
            continue
        for report in trial.reports:
            if report.graph_kind == "backward" and report.internals.boundary is not None:
                partitioner.boundary = report.internals.boundary
        usable = [t for t in trials if t.usable]
        if usable and all(
            r.details.get("runtime_model") == "cpu" for t in (usable[0], trial) for r in t.reports
        ):
            retime_trials([usable[0]] if trial is usable[0] else [usable[0], trial])
            allowed = usable[0].estimated_runtime * (1.0 + max_recompute_overhead)
            partitioner.budget_seconds = allowed - trial.estimated_runtime
    usable = [t for t in trials if t.usable]
    if usable:
        retime_trials(usable)  # times made final are not measured again (`kernel_times`)
        best = choose(usable, max_recompute_overhead)
        partitioner.must_beat_bytes = int(best.predicted_peak_bytes * (1.0 + peak_tolerance))


def compiles_as_planned(candidate: Candidate, trials: Sequence[Trial]) -> str | None:
    """Why `candidate` would compile exactly as a trial already planned, or None.

    A "bw_no_layout_opt+X" candidate differs from X only in its backward's layout, and
    Inductor lays a graph out channels-last only around convolutions: where X's backward runs
    no forward convolution (it recomputes none), both compile to the same code, so planning the
    second is only time (a quarter of a CNN's candidates)."""
    if candidate.backward_layout_opt:
        return None
    twin = candidate.name.removeprefix(f"{BACKWARD_NO_LAYOUT_OPT}+")
    for trial in trials:
        if trial.candidate.name != twin or not trial.usable:
            continue
        backward = [r for r in trial.reports if r.graph_kind == "backward"]
        if backward and all(r.details.get("forward_convolutions") == 0 for r in backward):
            return f"its backward recomputes no convolution: it compiles as {twin} does"
    return None


def veto_by_timing(
    trial: Trial,
    defaults: Trial,
    example_inputs: Sequence[Any],
    rounds: int,
    max_recompute_overhead: float,
) -> str | None:
    """Run the built `trial` beside the built `defaults`, `rounds` rounds at a time, and set
    `trial.veto` where its ratio to the defaults is above the run-time budget (less
    `timing.REAL_STEP_MARGIN`) at `timing.VETO_CONFIDENCE` (a one-sided sign test). A batch
    whose median is inside the budget ends the test, the trial kept; otherwise up to
    `MAX_ROUND_BATCHES` batches are run before it is kept for want of evidence (GoogLeNet's
    layout choice read +5.1% over seven rounds at compile time and +1.5% over fifteen turns in
    the paired bench: `bench/results/step_times_paired_googlenet.md`). A trial that fails to
    run gets `run_error`. Returns why nothing was measured, or None."""
    from .timing import (
        VETO_CONFIDENCE,
        device_of,
        sign_test_p_value,
        step_of,
        time_steps,
        why_not_timed,
    )

    peak = max(trial.predicted_peak_bytes, defaults.predicted_peak_bytes)
    reason = why_not_timed(example_inputs, peak, rounds)
    if reason is not None:
        return reason
    steps = [step_of(defaults.compiled, example_inputs), step_of(trial.compiled, example_inputs)]
    limit = measured_limit(max_recompute_overhead)
    for _ in range(MAX_ROUND_BATCHES):
        timing = time_steps(steps, rounds, device_of(example_inputs))
        if 0 in timing.failed:
            return f"the defaults failed to run: {timing.failed[0]}"
        if 1 in timing.failed:
            trial.run_error = timing.failed[1]
            log.info("modelopt: %s failed to run: %s", trial.candidate.name, trial.run_error)
            return None
        trial.record_rounds([r[1] for r in timing.rounds], timing.ratios_to_first(1))
        p_value = sign_test_p_value(trial.measured_ratios, limit)
        if p_value < 1.0 - VETO_CONFIDENCE:
            trial.veto = (
                f"measured {trial.measured_ratio:.3f} of the defaults' run time over"
                f" {len(trial.measured_ratios)} rounds, above {limit:.3f} at"
                f" {VETO_CONFIDENCE:.0%} confidence (sign test, p={p_value:.3f})"
            )
            return None
        if trial.measured_ratio is not None and trial.measured_ratio <= limit:
            return None
    return None


# batches of rounds a winner whose median is over the budget may be timed in (the first
# included) before it is kept for want of significance
MAX_ROUND_BATCHES = 3


def retime_trials(trials: Sequence[Trial]) -> None:
    """Time the measured extern kernels of all trials again, side by side (`retime`), and
    update each report's estimated run time and kernel times: a candidate compiled while the
    machine was busy must not look slower than one compiled later. Calling it again retimes
    from the figures it left."""
    from .capture.workspace import retime

    reports = [r for t in trials for r in t.reports if r.internals.measured_kernels]
    seconds = retime(m.key for r in reports for m in r.internals.measured_kernels)
    for report in reports:
        kernels = report.internals.measured_kernels
        change = sum(seconds.get(m.key, m.seconds) - m.seconds for m in kernels)
        report.details["estimated_runtime"] += change
        report.internals.measured_kernels = [
            dataclasses.replace(m, seconds=seconds.get(m.key, m.seconds)) for m in kernels
        ]


def choose(
    trials: Sequence[Trial], max_recompute_overhead: float, peak_tolerance: float = 0.0
) -> Trial:
    """The trial with the lowest predicted peak whose modelled run time is within the budget;
    among those whose peak is within `peak_tolerance` of that lowest one, the one with the
    least peak times modelled run time (so a higher peak must buy at least as large a share of
    the step); ties: the lower peak, then the first. Trials vetoed by their measurement
    (`veto_by_timing`) are left out; a measurement picks nothing.

    Within budget: the modelled run time at most `1 + max_recompute_overhead` times the
    defaults'; where the defaults have no estimate, only candidates that recompute nothing.
    The tolerance is there because a percent of peak is worth less than a tenth of the step:
    MobileNet-v2 (batch 8, CPU) chose no_layout_opt+planned_saves, 30.10 MiB at +1.6% over the
    defaults' step, where budget 0.5 gave 30.44 MiB at -13% (one compile's report, read by a
    script outside bench/). The product keeps a plan 0.3% higher and 0.2% faster from winning
    (GPT-2 in the paired bench at code 8946a78, where the faster one alone decided)."""
    usable = [t for t in trials if t.usable] or list(trials)
    baseline = usable[0]
    budget = baseline.estimated_runtime * (1.0 + max_recompute_overhead)

    def affordable(trial: Trial) -> bool:
        if trial is baseline:
            return True
        if trial.veto is not None:
            return False
        if baseline.estimated_runtime <= 0:
            return not trial.candidate.recomputes  # no estimate: take no recompute risk
        return trial.estimated_runtime <= budget

    within = [t for t in usable if affordable(t)]
    lowest = min(t.predicted_peak_bytes for t in within)
    near = [t for t in within if t.predicted_peak_bytes <= lowest * (1.0 + peak_tolerance)]
    estimated = all(t.estimated_runtime > 0 for t in near)

    def runtime(trial: Trial) -> float:
        if peak_tolerance <= 0.0 or not estimated:
            return 1.0  # the lowest peak, then the first
        return trial.estimated_runtime

    # `min` keeps the first of equals
    return min(near, key=lambda t: (t.predicted_peak_bytes * runtime(t), t.predicted_peak_bytes))


def _why(
    chosen: Trial,
    default: Trial | None,
    trials: Sequence[Trial],
    max_recompute_overhead: float | None,
    peak_tolerance: float = 0.0,
) -> str:
    """One sentence on the choice, with the predicted peaks it was made on."""
    mib = 1 << 20
    near = ""
    if peak_tolerance > 0:
        near = f" (of those within {peak_tolerance:.0%}, the least peak times run time)"
    budget = "" if max_recompute_overhead is None else f" +{max_recompute_overhead:.0%}"
    vetoed = [t for t in trials if t.veto is not None]
    measured = ""
    if vetoed:
        names = ", ".join(f"{t.candidate.name} ({t.veto})" for t in vetoed)
        measured = f"; dropped by its measurement: {names}"
    if chosen.measured_ratio is not None:
        measured += f"; measured {chosen.measured_ratio:.3f} of the defaults' run time"
    if default is None or chosen is default:
        lower = [t for t in trials if t.predicted_peak_bytes < chosen.predicted_peak_bytes]
        if not lower:
            return (
                f"no alternative of {len(trials) - 1} predicted lower than the defaults"
                f" ({chosen.predicted_peak_bytes / mib:.2f} MiB)"
            )
        names = ", ".join(t.candidate.name for t in lower if t.veto is None)
        slower = ""
        if peak_tolerance > 0:
            slower = f", or within {peak_tolerance:.0%} of the defaults' peak and slower by more"
            slower += " than they save"
        return (
            f"defaults kept: {names or 'none'} predicted lower but over the{budget} run-time"
            f" budget (modelled run times){slower}, or failed to compile or run{measured}"
        )
    return (
        f"lowest predicted peak{near} within the{budget} run-time budget (modelled run times):"
        f" {chosen.predicted_peak_bytes / mib:.2f} MiB against"
        f" {default.predicted_peak_bytes / mib:.2f} MiB with the defaults{measured}"
    )


def summarize(
    chosen: Trial,
    trials: Sequence[Trial],
    max_recompute_overhead: float | None = None,
    skipped: dict[str, str] | None = None,
    not_timed: str | None = None,
    peak_tolerance: float = 0.0,
    compile_seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """What was tried and why the chosen one won, for every report of the chosen trial.

    `skipped`: candidates not planned, with the reason (a recomputation plan that changes
    nothing); `not_timed`: why the winner was not run beside the defaults at compile time;
    `compile_seconds`: the search's seconds by stage ("search": planning every candidate
    without building it, "solve": the planner's share of that, "build": generating and
    compiling the kernels of what was built, "timing": running the winner beside the
    defaults).

    `predicted_overhead` is the chosen settings' run time over the defaults' (minus one): the
    ratio measured at compile time where there is one (`measured_overhead`), else the modelled
    one (`estimated_overhead`); `measure_step` and the bench measure it on the real step.
    """
    default = next((t for t in trials if t.candidate.name == "default"), None)
    estimated = measured = None
    if default is not None and default.estimated_runtime > 0:
        estimated = chosen.estimated_runtime / default.estimated_runtime - 1.0
    if chosen.measured_ratio is not None:
        measured = chosen.measured_ratio - 1.0
    return {
        "chosen": chosen.candidate.name,
        "why": _why(chosen, default, trials, max_recompute_overhead, peak_tolerance),
        "predicted_overhead": estimated if measured is None else measured,
        "estimated_overhead": estimated,
        "measured_overhead": measured,
        "not_timed": not_timed,
        "compile_seconds": dict(compile_seconds or {}),
        "alternatives": {
            t.candidate.name: {
                "predicted_peak_bytes": t.predicted_peak_bytes,
                "inductor_peak_bytes": max(
                    (r.inductor_peak_bytes or 0 for r in t.reports), default=0
                ),
                "planned_peak_bytes": max(
                    (r.planned_peak_bytes or 0 for r in t.reports), default=0
                ),
                "estimated_runtime": t.estimated_runtime,
                # what its recomputation plan predicted for the backward, before lowering
                "recompute_plan_peak_bytes": (recompute_plan_of(t) or {}).get(
                    "predicted_backward_peak_bytes"
                ),
                "measured_seconds": t.measured_seconds,
                "measured_ratio": t.measured_ratio,
                "timed_rounds": len(t.measured_ratios),
                "veto": t.veto,
                "fell_back": t.fell_back,
                "run_error": t.run_error,
            }
            for t in trials
        },
        "skipped": dict(skipped or {}),
    }
