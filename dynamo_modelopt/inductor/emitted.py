"""Accounting of the code Inductor emits for a planned graph, and the arena choice there.

Code generation removes kernel-local buffers and reuses dying inputs in place after the order
pass has run, so what the code allocates is known only once the wrapper is written:
`account_emitted_code` hooks that moment and fills the report's emitted figures.
"""

from __future__ import annotations

import logging
from typing import Any

from .._torch_compat import ReuseLine, V
from ..capture.joint import backward_boundary
from ..capture.scheduler import (
    as_emitted,
    end_of_graph_bytes,
    gradient_layout_copy_bytes,
    merge_steps,
)
from ..config import ModeloptConfig
from ..planner import fold_aliases, live_bytes_profile, live_ranges
from ..report import GraphReport
from .arena import arena_candidates_or_reason, choose_arena
from .plan_only import stop_if_planning_only

log = logging.getLogger(__name__)


def account_emitted_code(
    problem: Any, steps: list[list[str]], report: GraphReport, config: ModeloptConfig
) -> None:
    """Once Inductor has generated this graph's kernels, plan and account what it allocates.

    Code generation removes kernel-local buffers and reuses dying inputs in place after our pass
    has run, and Inductor's allocation pass then hands freed buffers to later ones of the same
    size (which keeps them allocated in between). The wrapper of this graph alone is hooked
    where it plans its allocations (`run_wrapper_ir_passes`, after every kernel is generated):
    we plan the arenas, let Inductor plan its own allocation, predict both peaks from those
    decisions, and emit the arenas where they are predicted not to be higher (see `arena.py`).
    `steps` are the fused nodes in order, grouped by kernel call (`kernel_call_steps`).
    """
    wrapper = V.graph.wrapper_code
    inductor_passes = wrapper.run_wrapper_ir_passes

    def run_passes(is_inference: bool) -> Any:
        arena_options = None
        if config.arena != "off":
            arena_options = arena_candidates_or_reason(wrapper, problem, steps, report, config)
        result = inductor_passes(is_inference)
        account(arena_options)
        stop_if_planning_only()  # a candidate being compared is not built further
        return result

    def account(arena_options: Any) -> None:
        try:
            reuses = dict(wrapper.reuses)
            reuses.update(
                (line.reused_as.get_name(), line.node.get_name())
                for line in wrapper.lines
                if isinstance(line, ReuseLine)
            )
            emitted = as_emitted(problem, V.graph.removed_buffers, reuses)
            emitted, order = merge_steps(emitted, steps)
            profile = live_bytes_profile(emitted, order)
        except Exception as exc:
            log.warning(
                "modelopt: could not account the emitted code of %s: %s", report.graph_name, exc
            )
            return
        report.emitted_peak_bytes = max(profile, default=0)
        report.details["inplace_reuses"] = len(wrapper.reuses)
        report.details["peak"] = where_is_the_peak(emitted, order)
        if arena_options and arena_options[0]:
            candidates, predict = arena_options
            arenas = choose_arena(wrapper, candidates, report.emitted_peak_bytes, report, config)
            if arenas is not None:
                profile = predict(arenas)
        if report.graph_kind == "backward":
            _count_gradient_layout_copy(report, emitted)
            try:  # what a recomputation plan of the same graph pair starts from
                report.internals.boundary = backward_boundary(emitted, order, profile)
            except Exception as exc:
                log.info("modelopt: no boundary record for %s: %s", report.graph_name, exc)
        if emitted.meta.get("held_by_caller"):
            extra = _extra_if_outputs_held(emitted, order)
            report.details["peak_if_outputs_held"] = max(
                (live + more for live, more in zip(profile, extra, strict=True)), default=0
            )

    wrapper.run_wrapper_ir_passes = run_passes


def _count_gradient_layout_copy(report: GraphReport, emitted: Any) -> None:
    """Add to the backward's peak the moment after it returns, when autograd copies a gradient
    into its parameter's layout with all gradients still held (`gradient_layout_copy_bytes`):
    on AlexNet (batch 8, layout optimization on) the step peaked there, 3 MiB above the graph.
    """
    copy = gradient_layout_copy_bytes(V.graph.graph_outputs)
    if not copy:
        return
    after = end_of_graph_bytes(emitted) + copy
    report.details["gradient_layout_copy"] = {"bytes": copy, "peak_after_graph_bytes": after}
    if report.emitted_peak_bytes is not None and after > report.emitted_peak_bytes:
        report.emitted_peak_bytes = after
        report.details["peak"] = {
            "step": len(emitted.op_names),
            "operation": "after the backward (a gradient copied into its parameter's layout)",
            "bytes": after,
            "largest_live": [("gradient layout copy", copy)],
        }


def _extra_if_outputs_held(emitted: Any, order: list[str]) -> list[int]:
    """Bytes per step that stay live if the caller holds the forward's outputs through the
    backward: saved tensors that are outputs too, past their last use here, and the other
    outputs throughout (see `problem_from_scheduler`)."""
    held = emitted.meta["held_by_caller"]
    known = {t.name for t in emitted.tensors}
    ranges = live_ranges(emitted, order)
    sizes = {t.name: t.size for t in fold_aliases(emitted).tensors}
    extra = [int(held.get("other_bytes", 0))] * len(order)
    for name in {emitted.alias_root(n) for n in held.get("tensors", ()) if n in known}:
        for step in range(ranges[name].end, len(order)):
            extra[step] += sizes.get(name, 0)
    return extra


def where_is_the_peak(problem: Any, order: list[str], top: int = 5) -> dict[str, Any]:
    """The step of the peak, its operation, and the largest tensors live there."""
    profile = live_bytes_profile(problem, order)
    if not profile:
        return {}
    step = max(range(len(profile)), key=profile.__getitem__)
    sizes = {t.name: t.size for t in problem.tensors}
    live = [
        (name, sizes[name])
        for name, live in live_ranges(problem, order).items()
        if live.covers(step)
    ]
    live.sort(key=lambda item: (-item[1], item[0]))
    return {
        "step": step,
        "operation": order[step],
        "bytes": profile[step],
        "largest_live": live[:top],
    }
