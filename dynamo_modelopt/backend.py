"""The `modelopt` torch.compile backend: Inductor, with our planned order for every graph.

`torch.compile(model, backend="modelopt", options={...})` reaches `modelopt_backend` through
the `torch_dynamo_backends` entry point. We go through Inductor's own `compile_fx` (its
decompositions, AOTAutograd partitioner, caches and code generation stay as they are) and
change only what decides memory, through `config_patches`, which Inductor re-applies when it
compiles a backward.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import decision_cache
from .capture.workspace import keeping_kernels
from .config import ModeloptConfig
from .decide import (
    Candidate,
    CompileWith,
    Trial,
    candidates,
    choose,
    compile_trial,
    has_concatenation,
    has_convolution,
    is_training_graph,
    prepare,
    retime_trials,
    summarize,
    time_trials,
)
from .dynamic import symbolic_sizes, warn_search_skipped
from .inductor import saved_set
from .inductor.accumulate import AccumulatePass
from .inductor.backward_layout import without_backward_layout_opt
from .inductor.order_pass import PlanOrderPass
from .report import publish_report

log = logging.getLogger(__name__)


def inductor_config_patches(config: ModeloptConfig) -> dict[str, Any]:
    """Inductor settings under which our scheduler pass decides the order of every graph."""
    patches: dict[str, Any] = {
        # Inductor's own reordering would replace ours; our pass runs it to learn its choice.
        "reorder_for_peak_memory": False,
        "_post_fusion_custom_pass": PlanOrderPass(config),
        # A cache hit would skip the scheduler, so the plan and its report would be missing.
        "fx_graph_cache": False,
    }
    if config.accumulate_in_place:
        from torch._inductor import config as inductor_config

        previous = inductor_config.post_grad_custom_post_pass
        patches["post_grad_custom_post_pass"] = AccumulatePass(previous)
    return patches


def modelopt_backend(
    gm: torch.fx.GraphModule,
    example_inputs: Sequence[Any],
    options: dict[str, Any] | None = None,
    mode: str | None = None,
) -> Callable[..., Any]:
    """Compile `gm` with Inductor under modelopt's memory plan.

    Options: see `ModeloptConfig`. `mode` (torch.compile's) keeps Inductor's meaning: modelopt
    has no modes of its own.
    """
    from torch._inductor.compile_fx import compile_fx, compile_fx_inner

    config = ModeloptConfig.from_options(options)
    ours = inductor_config_patches(config)

    def compile_with(
        graph: torch.fx.GraphModule,
        inputs: Sequence[Any],
        patches: dict[str, Any],
        backward_layout_opt: bool = True,
    ) -> Any:
        inner_compile = compile_fx_inner
        if not backward_layout_opt:
            inner_compile = without_backward_layout_opt(compile_fx_inner)
        # AOTAutograd's cache would also skip our pass on a hit.
        with torch._functorch.config.patch(enable_autograd_cache=False):
            return compile_fx(
                graph, inputs, inner_compile=inner_compile, config_patches={**ours, **patches}
            )

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
    if config.settings != "auto":
        forced = [c for c in options_to_try if c.name == config.settings]
        if not forced:
            names = ["auto"] + [c.name for c in options_to_try]
            raise ValueError(
                f"modelopt: settings={config.settings!r} does not apply to this graph; "
                f"choose one of {names}"
            )
        options_to_try = forced
    if len(options_to_try) == 1 and options_to_try[0].name == "default":
        return compile_with(gm, example_inputs, {})
    dynamic = symbolic_sizes(example_inputs)
    if dynamic and config.settings == "auto":
        warn_search_skipped(str(torch._guards.CompileContext.current_compile_id()), dynamic)
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
    trials: list[Trial] = []
    skipped: dict[str, str] = {}

    def time_now(some: Sequence[Trial], budget: float | None = None) -> str | None:
        return time_trials(
            some, example_inputs, config.timing_rounds, budget, config.peak_tolerance
        )

    not_timed: str | None = None
    with keeping_kernels():
        for candidate in options_to_try:
            prepare(candidate, trials, config.max_recompute_overhead, time_now)
            try:
                trials.append(compile_trial(candidate, gm, example_inputs, compile_with))
            except saved_set.NothingToRecompute as reason:
                skipped[candidate.name] = str(reason)
            except Exception:
                # Inductor's defaults must compile as under plain Inductor; an alternative
                # may not.
                if candidate.name == "default" or config.strict or len(options_to_try) == 1:
                    raise
                log.info("modelopt: candidate %s did not compile", candidate.name, exc_info=True)
        if len(trials) > 1:
            retime_trials(trials)
            not_timed = time_now(trials, config.max_recompute_overhead)
            if not_timed is not None:
                log.info("modelopt: candidates not run at compile time: %s", not_timed)
    chosen = choose(trials, config.max_recompute_overhead, config.peak_tolerance)
    settings = summarize(
        chosen, trials, config.max_recompute_overhead, skipped, not_timed, config.peak_tolerance
    )
    _publish(chosen, settings)
    if key is not None and chosen.usable:
        plan = next((r.details.get("recompute_plan") for r in chosen.reports), None)
        decision_cache.store(key, decision_cache.Decision(chosen.candidate.name, plan, settings))
    return chosen.compiled


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
        # a copy: the search that follows a failed replay must not replay
        replaying = copy.copy(partitioner)
        replaying.plans, replaying.replay = [], decided.recompute_plan
        patches = {**candidate.inductor_patches, "custom_partitioner_fn": replaying}
        candidate = dataclasses.replace(candidate, inductor_patches=patches)
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
