"""The `modelopt` torch.compile backend: Inductor, with our planned order for every graph.

`torch.compile(model, backend="modelopt", options={...})` reaches `modelopt_backend` through
the `torch_dynamo_backends` entry point. We go through Inductor's own `compile_fx` (its
decompositions, AOTAutograd partitioner, caches and code generation stay as they are) and
change only what decides memory, through `config_patches`, which Inductor re-applies when it
compiles a backward.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import decision_cache
from ._torch_compat import CompileContext
from .capture import kernel_times
from .capture.workspace import keeping_kernels
from .config import ModeloptConfig
from .decide import (
    Candidate,
    CompileWith,
    Trial,
    candidates,
    choose,
    compile_trial,
    compiles_as_planned,
    has_concatenation,
    has_convolution,
    is_training_graph,
    prepare,
    recompute_plan_of,
    replaying,
    retime_trials,
    summarize,
    veto_by_timing,
)
from .dynamic import symbolic_sizes, warn_search_skipped
from .inductor import saved_set
from .inductor.accumulate import AccumulatePass
from .inductor.backward_layout import without_backward_layout_opt
from .inductor.order_pass import PlanOrderPass
from .inductor.plan_only import planning_only, stopping_after_plan
from .inductor.report_cache import with_report_cache
from .planner.solve import get_solver
from .report import publish_report, warn_once

log = logging.getLogger(__name__)


def inductor_config_patches(
    config: ModeloptConfig, mode_patches: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Inductor settings under which our scheduler pass decides the order of every graph.

    `mode_patches`: what torch.compile's `mode` sets (`mode_config_patches`); ours are laid
    over them, and the pass's reports name them."""
    patches: dict[str, Any] = {
        **(mode_patches or {}),
        # Inductor's own reordering would replace ours; our pass runs it to learn its choice.
        "reorder_for_peak_memory": False,
        "_post_fusion_custom_pass": PlanOrderPass(config, mode_patches),
    }
    if config.accumulate_in_place:
        from ._torch_compat import inductor_config

        previous = inductor_config.post_grad_custom_post_pass
        patches["post_grad_custom_post_pass"] = AccumulatePass(previous)
    return patches


def mode_config_patches(mode: str | None) -> dict[str, Any]:
    """Inductor's settings for torch.compile's `mode`, as `torch.compile(backend="inductor")`
    applies them ("reduce-overhead" asks for CUDA graphs, which Inductor skips on CPU)."""
    from ._torch_compat import list_mode_options

    if not mode or mode == "default":
        return {}
    try:
        return dict(list_mode_options(mode))
    except RuntimeError as exc:
        raise ValueError(f"modelopt: torch.compile mode={mode!r} is not allowed: {exc}") from exc


def settings_names(config: ModeloptConfig) -> list[str]:
    """Every value `settings` may take under these options, on some graph."""
    names = {"auto"}
    planned_saves = (lambda: None) if config.plan_recomputation else None
    for training, convolution, concatenation in itertools.product((False, True), repeat=3):
        found = candidates(
            training,
            convolution,
            config.activation_budgets,
            concatenation,
            planned_saves,
            backward_layouts=config.backward_layout_candidates,
        )
        names.update(c.name for c in found)
    return sorted(names)


def build_config(options: dict[str, Any] | ModeloptConfig | None) -> ModeloptConfig:
    """The options checked, all of them, before any graph is compiled."""
    config = ModeloptConfig.from_options(options)
    names = settings_names(config)
    if config.settings not in names:
        raise ValueError(
            f"modelopt: option settings={config.settings!r} is not allowed: it must be one of "
            f"{names} (with these options)"
        )
    if config.solver not in ("auto", "heuristic"):
        ok, why = get_solver(config.solver).available()
        if not ok:
            message = (
                f"modelopt: solver={config.solver!r} cannot be used ({why}); CP-SAT plans instead"
            )
            if config.strict:
                raise ValueError(message)
            warn_once(message)
    return config


def compiler_for(config: ModeloptConfig, mode: str | None = None) -> CompileWith:
    """What compiles a graph under a candidate's settings: Inductor's `compile_fx` with our
    passes, under the settings of torch.compile's `mode`; `build=False` stops each planned graph
    before its kernels are built."""
    from ._torch_compat import compile_fx_functions, functorch_config

    compile_fx, compile_fx_inner = compile_fx_functions()

    ours = inductor_config_patches(config, mode_config_patches(mode))

    def compile_with(
        graph: torch.fx.GraphModule,
        inputs: Sequence[Any],
        patches: dict[str, Any],
        backward_layout_opt: bool = True,
        build: bool = True,
    ) -> Any:
        inner_compile = compile_fx_inner
        if not backward_layout_opt:
            inner_compile = without_backward_layout_opt(inner_compile)
        # a hit of Inductor's FX graph cache publishes the reports kept beside it; one of
        # AOTAutograd's would skip the inner compile, reports and all
        inner_compile = with_report_cache(inner_compile)
        if not build:
            inner_compile = stopping_after_plan(inner_compile)
        with (
            functorch_config.patch(enable_autograd_cache=False),
            contextlib.nullcontext() if build else planning_only(),
        ):
            return compile_fx(
                graph, inputs, inner_compile=inner_compile, config_patches={**ours, **patches}
            )

    return compile_with


def modelopt_backend(
    gm: torch.fx.GraphModule,
    example_inputs: Sequence[Any],
    options: dict[str, Any] | None = None,
    mode: str | None = None,
) -> Callable[..., Any]:
    """Compile `gm` with Inductor under modelopt's memory plan.

    Options: see `ModeloptConfig` (a dict of its fields, or one). `mode` (torch.compile's)
    keeps Inductor's meaning: its settings apply under ours, and each report names them.
    """
    config = build_config(options)
    # every kernel timed in this compile is priced the same in the next (`kernel_times`)
    with kernel_times.using(config.kernel_time_cache):
        return _modelopt_backend(gm, example_inputs, config, mode)


def _modelopt_backend(
    gm: torch.fx.GraphModule,
    example_inputs: Sequence[Any],
    config: ModeloptConfig,
    mode: str | None,
) -> Callable[..., Any]:
    compile_with = compiler_for(config, mode)

    planned_saves = None
    if config.plan_recomputation and saved_set.available():

        def planned_saves() -> saved_set.PlannedPartitioner:
            return saved_set.PlannedPartitioner(
                config.max_recompute_overhead,
                time_limit=min(config.time_limit, 2.0),
                seed=config.seed,
                threads=config.threads,
                # forced by name, it compiles even when it changes nothing
                skip_unchanged=config.settings == "auto",
                mispredicted=config.recompute_mispredicted,
                measure=config.measure_kernel_time,
            )

    options_to_try = candidates(
        is_training_graph(example_inputs),
        has_convolution(gm),
        config.activation_budgets,
        has_concatenation(gm),
        planned_saves,
        backward_layouts=config.backward_layout_candidates,
    )
    not_applied = None
    if config.settings != "auto":
        forced = [c for c in options_to_try if c.name == config.settings]
        if not forced:
            names = ["auto"] + [c.name for c in options_to_try]
            not_applied = (
                f"modelopt: settings={config.settings!r} does not apply to this graph "
                f"(it offers {names}); compiled with Inductor's defaults"
            )
            if config.strict:
                raise ValueError(not_applied)
            warn_once(not_applied)
            forced = [options_to_try[0]]  # the defaults come first
        options_to_try = forced
    if not_applied is not None:
        trial = compile_trial(options_to_try[0], gm, example_inputs, compile_with)
        _publish(trial, {**summarize(trial, [trial]), "why": not_applied})
        return trial.compiled
    if len(options_to_try) == 1 and options_to_try[0].name == "default":
        return compile_with(gm, example_inputs, {})
    dynamic = symbolic_sizes(example_inputs)
    if dynamic and config.settings == "auto":
        warn_search_skipped(str(CompileContext.current_compile_id()), dynamic)
        return compile_with(gm, example_inputs, {})
    key = None
    if config.decision_cache and len(options_to_try) > 1:
        key = decision_cache.decision_key(
            gm, example_inputs, config.cache_key(), torch.is_grad_enabled()
        )
        decided = decision_cache.load(key)
        if decided is not None:
            compiled = _compile_decided(decided, options_to_try, gm, example_inputs, compile_with)
            if compiled is not None:
                return compiled
            decision_cache.forget(key)
    chosen, settings = _search(options_to_try, gm, example_inputs, compile_with, config)
    _publish(chosen, settings)
    if key is not None and chosen.usable:
        plan = recompute_plan_of(chosen)
        decision_cache.store(key, decision_cache.Decision(chosen.candidate.name, plan, settings))
    return chosen.compiled


def _search(
    options_to_try: Sequence[Candidate],
    gm: torch.fx.GraphModule,
    example_inputs: Sequence[Any],
    compile_with: CompileWith,
    config: ModeloptConfig,
) -> tuple[Trial, dict[str, Any]]:
    """Plan every candidate without building it, build the one the model chooses, and let
    its measurement beside the defaults veto it (`decide.py`); the built choice and its
    summary."""
    overhead, tolerance = config.max_recompute_overhead, config.peak_tolerance
    started = time.perf_counter()
    planned: list[Trial] = []
    built: dict[str, Trial] = {}
    skipped: dict[str, str] = {}
    build_now = len(options_to_try) == 1  # nothing to compare it with
    with keeping_kernels():
        for index, candidate in enumerate(options_to_try, 1):
            same = compiles_as_planned(candidate, planned)
            if same is not None:
                skipped[candidate.name] = same
                continue
            prepare(candidate, planned, overhead, tolerance)
            try:
                trial = compile_trial(candidate, gm, example_inputs, compile_with, build=build_now)
            except saved_set.NothingToRecompute as reason:
                skipped[candidate.name] = str(reason)
                continue
            except Exception:
                # Inductor's defaults must compile as under plain Inductor; an alternative
                # may not.
                if candidate.name == "default" or config.strict or len(options_to_try) == 1:
                    raise
                log.info("modelopt: candidate %s did not compile", candidate.name, exc_info=True)
                continue
            planned.append(trial)
            if build_now:
                built[candidate.name] = trial
            log.info(
                "modelopt: candidate %d of %d, %s: predicted peak %.2f MiB, modelled run time"
                " %.4f s (%.1f s elapsed)",
                index,
                len(options_to_try),
                candidate.name,
                trial.predicted_peak_bytes / 2**20,
                trial.estimated_runtime,
                time.perf_counter() - started,
            )
        if len(planned) > 1:
            retime_trials(planned)
    seconds = {
        "search": time.perf_counter() - started,
        "solve": sum(
            r.solve_seconds
            for t in planned
            for r in t.reports
            if not r.details.get("stats", {}).get("plan_reused")
        ),
        "build": 0.0,
        "timing": 0.0,
    }

    def build(trial: Trial) -> Trial:
        """The trial's candidate compiled in full (its saved-set plan replayed), once."""
        name = trial.candidate.name
        if name not in built:
            began = time.perf_counter()
            candidate = replaying(trial.candidate, recompute_plan_of(trial))
            try:
                built[name] = compile_trial(candidate, gm, example_inputs, compile_with)
            except Exception as exc:
                if name == "default" or config.strict:
                    raise
                log.info("modelopt: candidate %s did not build", name, exc_info=True)
                trial.run_error = f"did not build: {type(exc).__name__}: {exc}"
                built[name] = trial
            seconds["build"] += time.perf_counter() - began
        return built[name]

    not_timed: str | None = None if len(planned) > 1 else "one candidate only"
    while True:
        winner = choose(planned, overhead, tolerance)
        compiled = build(winner)
        if not compiled.usable or compiled.fell_back:
            winner.run_error = winner.run_error or "fell back when built"
            if winner is planned[0]:
                break
            continue
        if winner is planned[0]:
            not_timed = not_timed or "the defaults were chosen: nothing to time against"
            break
        if config.timing_rounds <= 0:
            not_timed = "timing turned off (timing_rounds=0)"
            break
        began = time.perf_counter()
        not_timed = veto_by_timing(
            compiled, build(planned[0]), example_inputs, config.timing_rounds, overhead
        )
        seconds["timing"] += time.perf_counter() - began
        winner.veto, winner.run_error = compiled.veto, compiled.run_error
        for field in ("measured_seconds", "measured_ratio", "measured_ratios", "measured_rounds"):
            setattr(winner, field, getattr(compiled, field))
        if winner.usable and winner.veto is None:
            break
        log.info("modelopt: %s dropped: %s", winner.candidate.name, winner.veto or winner.run_error)
    settings = summarize(
        winner, planned, overhead, skipped, not_timed, tolerance, compile_seconds=seconds
    )
    return built[winner.candidate.name], settings


def _compile_decided(
    decided: decision_cache.Decision,
    options_to_try: Sequence[Candidate],
    gm: torch.fx.GraphModule,
    example_inputs: Sequence[Any],
    compile_with: CompileWith,
) -> Callable[..., Any] | None:
    """Compile the candidate an earlier search of this graph chose, alone; None where it is not
    on offer or no longer compiles as it did (the caller then searches again)."""
    candidate = next((c for c in options_to_try if c.name == decided.chosen), None)
    if candidate is None:
        return None
    partitioner = candidate.inductor_patches.get("custom_partitioner_fn")
    if isinstance(partitioner, saved_set.PlannedPartitioner):
        if decided.recompute_plan is None:
            return None
        candidate = replaying(candidate, decided.recompute_plan)
    try:  # no kernels kept: nothing is retimed
        trial = compile_trial(candidate, gm, example_inputs, compile_with)
    except Exception as exc:
        log.info("modelopt: the cached choice %s did not compile again: %s", candidate.name, exc)
        return None
    if not trial.usable:
        return None
    _publish(trial, {**decided.settings, "from_decision_cache": True})
    return trial.compiled


def _publish(trial: Trial, settings: dict[str, Any]) -> None:
    """Make the compiled trial's reports public, each with the summary of the choice."""
    for report in trial.reports:
        report.details["settings"] = settings
        publish_report(report)
