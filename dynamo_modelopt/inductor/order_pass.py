"""Make Inductor run its fused nodes in our planned order.

Inductor re-sorts nodes during fusion and then lets `reorder_for_peak_memory` pick its own order,
so an order set any earlier does not survive. We compile our graphs with
`reorder_for_peak_memory=False` and install this pass as `_post_fusion_custom_pass`, the last
scheduler hook before code generation. The pass:
1. runs Inductor's own `reorder_for_peak_memory` to learn the order Inductor would have used
   (that is the baseline every report compares against, and our plan's starting point);
2. turns the fused nodes and their buffers into a planning `Problem`;
3. plans it, validates the plan and returns the nodes in the planned order.
Any failure returns Inductor's own order, so the graph compiles exactly as under plain Inductor,
with one warning and a "fallback" report.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    from torch._inductor.custom_graph_pass import CustomSchedulerPass
except ImportError:  # torch 2.11: no such class; `_post_fusion_custom_pass` takes any callable
    CustomSchedulerPass = object  # type: ignore[misc,assignment]

from ..capture.inplace import inplace_candidates, peak_with_inplace_reuse, with_inplace_reuse
from ..capture.joint import backward_boundary
from ..capture.runtime import roofline_seconds
from ..capture.scheduler import (
    CapturedGraph,
    SavedStorage,
    UnplannableGraph,
    as_emitted,
    caller_held_storages,
    caller_output_range,
    end_of_graph_bytes,
    gradient_layout_copy_bytes,
    input_views_among_outputs,
    kernel_call_steps,
    kernel_local_buffers,
    merge_steps,
    problem_from_scheduler,
    saved_storages,
)
from ..capture.workspace import KernelMeasurement, measured_kernel
from ..config import ModeloptConfig
from ..planner import (
    check_plan,
    fold_aliases,
    live_bytes_profile,
    live_ranges,
    peak_live_bytes,
    plan,
)
from ..report import GraphReport, add_report, warn_once
from .accumulate import REWRITTEN_KEY
from .arena import arena_candidates_or_reason, choose_arena
from .collectives import communication_nodes, moved_communication
from .plan_only import stop_if_planning_only
from .report_cache import source_hash

if TYPE_CHECKING:
    from torch._inductor.scheduler import BaseSchedulerNode

log = logging.getLogger(__name__)

_graph_counter = 0


def _graph_kind() -> str:
    from torch._inductor.virtualized import V

    if V.graph.is_backward:
        return "backward"
    if V.graph.is_inference:
        return "inference"
    return "forward"


def _inductor_order(nodes: list[BaseSchedulerNode]) -> list[BaseSchedulerNode]:
    """The order Inductor's own peak-memory pass would pick (it also attaches planning info)."""
    from torch._inductor import memory
    from torch._inductor.utils import OrderedSet
    from torch._inductor.virtualized import V

    scheduler = V.graph.scheduler
    return memory.reorder_for_peak_memory(
        nodes,
        scheduler.name_to_buf,
        scheduler.name_to_fused_node,
        OrderedSet(V.graph.graph_inputs.keys()),
        OrderedSet(V.graph.get_output_names()),
    )


def _substituted(config: ModeloptConfig, result: Any) -> None:
    """Say, once, that the solver asked for by name did not plan (all of) this graph; under
    `strict`, raise instead."""
    why = result.stats.get("substituted")
    if not why:
        return
    message = (
        f"modelopt: solver={config.solver!r} could not be used, CP-SAT or the heuristics "
        f"planned instead: {'; '.join(why)}"
    )
    if config.strict:
        raise RuntimeError(message)
    warn_once(message)


class PlanOrderPass(CustomSchedulerPass):
    """`_post_fusion_custom_pass` that imposes modelopt's planned order on the fused nodes."""

    def __init__(self, config: ModeloptConfig, mode_patches: dict[str, Any] | None = None) -> None:
        self.config = config
        # what torch.compile's `mode` set in Inductor's config, for the reports
        self.mode_patches = dict(mode_patches or {})
        # One pass object serves a forward and its backward (Inductor re-applies the same
        # config patches): the forward's saved views of its inputs are read by the backward.
        self.saved_input_views: set[str] = set()
        self.saved: dict[str, SavedStorage] = {}
        self.held: dict[str, int] = {}

    def uuid(self) -> Any:
        # Inductor's FX graph cache key: the options and our source decide the plan
        return ("dynamo_modelopt.PlanOrderPass", self.config.cache_key(), source_hash())

    def __call__(self, nodes: list[BaseSchedulerNode]) -> list[BaseSchedulerNode]:
        global _graph_counter
        _graph_counter += 1
        kind = _graph_kind()
        graph_name = f"{kind}_{_graph_counter}"
        started = time.perf_counter()
        # Inductor's own choice first: if this raises, plain Inductor would raise too.
        inductor_nodes = _inductor_order(list(nodes))
        try:
            return self._plan(inductor_nodes, kind, graph_name)
        except Exception as exc:
            if self.config.strict:
                raise
            reason = f"{type(exc).__name__}: {exc}"
            add_report(
                GraphReport(
                    graph_kind=kind,
                    num_nodes=len(nodes),
                    inductor_peak_bytes=0,
                    planned_peak_bytes=0,
                    lower_bound_bytes=0,
                    solver="none",
                    status="fallback",
                    solve_seconds=time.perf_counter() - started,
                    fallback_reason=reason,
                    graph_name=graph_name,
                    details={"mode_patches": self.mode_patches},
                )
            )
            return inductor_nodes

    def _plan(
        self, inductor_nodes: list[BaseSchedulerNode], kind: str, graph_name: str
    ) -> list[BaseSchedulerNode]:
        from torch._inductor.virtualized import V

        if kind == "forward":
            self.saved_input_views = input_views_among_outputs(V.graph.module.graph)
            self.held = caller_held_storages(V.graph.graph_outputs, caller_output_range())
            self.saved = saved_storages(V.graph.module.graph, V.graph.graph_outputs, self.held)
        captured: CapturedGraph = problem_from_scheduler(
            inductor_nodes,
            V.graph.graph_inputs.keys(),
            V.graph.get_output_names(),
            name=graph_name,
            inputs_not_owned=self.saved_input_views if kind == "backward" else (),
            saved=self.saved if kind == "backward" else None,
            held_by_caller=self.held if kind == "backward" else None,
            measure_workspace=self.config.measure_workspace,
        )
        problem = captured.problem
        problem.meta.update({"graph_kind": kind})
        inductor_peak = peak_live_bytes(problem, problem.op_names)
        result = plan(problem, self.config.planner_options())
        check_plan(problem, result)
        if result.peak_bytes > inductor_peak:
            raise UnplannableGraph(
                f"planner returned a worse peak ({result.peak_bytes} > {inductor_peak})"
            )
        # what the code will allocate: without kernel-local buffers, with in-place reuse
        reuse_pairs = inplace_candidates(inductor_nodes)
        code = as_emitted(problem, kernel_local_buffers(inductor_nodes), {})
        code_peaks = {
            "inductor_order": peak_with_inplace_reuse(code, problem.op_names, reuse_pairs),
            "planned_order": peak_with_inplace_reuse(code, result.order, reuse_pairs),
        }
        _substituted(self.config, result)
        order = problem.op_names
        kept = moved_communication(order, result.order, communication_nodes(inductor_nodes))
        if self.config.reorder and _better(code_peaks) and kept is None:
            order = result.order
        if self.config.save_problems:
            _save(self.config.save_problems, graph_name, problem, result)
        runtime, measured_kernels, runtime_model = _estimated_runtime(
            inductor_nodes, self.config.measure_kernel_time
        )
        report = GraphReport(
            graph_kind=kind,
            num_nodes=len(inductor_nodes),
            inductor_peak_bytes=inductor_peak,
            planned_peak_bytes=peak_live_bytes(problem, order),
            lower_bound_bytes=result.lower_bound_bytes,
            solver=result.solver,
            status=result.status,
            solve_seconds=result.solve_seconds,
            graph_name=graph_name,
            order_changed=order != problem.op_names,
            details={
                "predicted_code_peak": code_peaks,
                "estimated_runtime": runtime,
                "runtime_model": runtime_model,
                "measured_kernels": measured_kernels,
                "planned_order": list(order),
                "node_buffers": [
                    [buf.get_name() for buf in captured.node_by_name[name].get_outputs()]
                    for name in order
                ],
                "stats": result.stats,
                # the planner's own figures, emitted or not (the fields: what the code does)
                "planner_peak_bytes": result.peak_bytes,
                "planner_arena_bytes": result.arena_bytes,
                "mode_patches": self.mode_patches,
                "order_kept_for_collectives": kept,
                "accumulated_in_place": _accumulated_in_place(),
                "output_gradients": _output_gradient_bytes(problem) if kind == "backward" else {},
            },
        )
        add_report(report)
        steps = _kernel_calls(code, order, reuse_pairs, captured, report)
        _account_emitted_code(problem, steps, report, self.config)
        return captured.nodes_in(order)


def _kernel_calls(
    code: Any,
    order: list[str],
    reuse_pairs: Any,
    captured: CapturedGraph,
    report: GraphReport,
) -> list[list[str]]:
    """How the fused nodes of `order` will be grouped into kernel calls, deciding it where that
    matters for memory.

    Inductor's C++ backend runs consecutive fused nodes as one kernel call and frees what they
    used last only after it (`kernel_call_steps`), which can hold a dying input and the outputs
    of the next nodes at once. Where that grouping is predicted to raise this graph's peak, each
    C++ node gets its own call (a few microseconds of call overhead each), which is what the
    plan assumes; elsewhere Inductor's grouping stays.
    """
    from torch._inductor.virtualized import V

    steps = kernel_call_steps(order, captured.node_by_name)
    grouped = [step for step in steps if len(step) > 1]
    if not grouped:
        return steps
    reused = with_inplace_reuse(code, order, reuse_pairs)
    separate_peak = peak_live_bytes(reused, order)
    grouped_peak = peak_live_bytes(*merge_steps(reused, steps))
    split = grouped_peak > separate_peak
    report.details["kernel_calls"] = {
        "grouped_nodes": sum(len(step) for step in grouped),
        "predicted_peak_grouped": grouped_peak,
        "predicted_peak_separate": separate_peak,
        "split": split,
    }
    if not split:
        return steps
    from torch._inductor.codegen.cpp import CppScheduling

    scheduler = V.graph.scheduler
    devices = {captured.node_by_name[name].get_device() for step in grouped for name in step}
    for device in devices - {None}:
        backend = scheduler.get_backend(device)
        if isinstance(backend, CppScheduling):
            _flush_after_each_node(backend)
    return [[name] for name in order]


def _flush_after_each_node(backend: Any) -> None:
    """Make this graph's C++ backend write each fused node's call (and frees) on its own."""
    codegen_node = backend.codegen_node

    def codegen_then_flush(node: Any) -> None:
        codegen_node(node)
        backend._set_flush_status(True)  # the scheduler flushes after this node

    backend.codegen_node = codegen_then_flush


def _count_gradient_layout_copy(report: GraphReport, emitted: Any) -> None:
    """Add to the backward's peak the moment after it returns, when autograd copies a gradient
    into its parameter's layout with all gradients still held (`gradient_layout_copy_bytes`):
    on AlexNet (batch 8, layout optimization on) the step peaked there, 3 MiB above the graph.
    """
    from torch._inductor.virtualized import V

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
        last = ranges[name][1]
        for step in range(last + 1, len(order)):
            extra[step] += sizes.get(name, 0)
    return extra


def _output_gradient_bytes(problem: Any) -> dict[str, int]:
    """Bytes of each gradient the backward receives for a forward output (AOTAutograd's
    `tangents_*` inputs). Autograd passes zeros of full size for an output the loss did not use,
    so a large one here is memory the user can save by returning only what the loss needs."""
    return {
        t.name: t.size
        for t in problem.tensors
        if t.producer is None and t.name.startswith("tangents_") and t.size > 0
    }


def _accumulated_in_place() -> int:
    """How many matrix-product sums `accumulate.py` rewrote in this graph."""
    from torch._inductor.virtualized import V

    module = getattr(V.graph, "module", None)
    meta = getattr(module, "meta", {})
    return int(meta.get(REWRITTEN_KEY, 0))


# Before code generation the peak of the code is known only roughly: in-place and size-keyed
# reuse are decided by codegen and Inductor's allocation pass after the order is fixed. A
# planned order is taken only where its predicted gain is larger than that error: on GPT-2's
# backward (4 layers) a predicted gain of 0.01% turned into a 0.24% loss once emitted, and on
# GoogLeNet's (batch 8, CPU) a predicted gain of 1.6% measured as a 3.8% loss.
ORDER_GAIN_MARGIN = 0.03


def _better(code_peaks: dict[str, int]) -> bool:
    """Take the planned order only where it clearly lowers what the code will allocate.

    The solver optimises the model without in-place reuse, which changes with the order; a
    small gain on the model alone can turn into a loss on the code, so Inductor's order stays
    unless ours is predicted lower by more than `ORDER_GAIN_MARGIN`.
    """
    planned, inductor = code_peaks["planned_order"], code_peaks["inductor_order"]
    return planned < inductor * (1 - ORDER_GAIN_MARGIN)


def where_is_the_peak(problem: Any, order: list[str], top: int = 5) -> dict[str, Any]:
    """The step of the peak, its operation, and the largest tensors live there."""
    profile = live_bytes_profile(problem, order)
    if not profile:
        return {}
    step = max(range(len(profile)), key=profile.__getitem__)
    sizes = {t.name: t.size for t in problem.tensors}
    live = [
        (name, sizes[name])
        for name, (first, last) in live_ranges(problem, order).items()
        if first <= step <= last
    ]
    live.sort(key=lambda item: (-item[1], item[0]))
    return {
        "step": step,
        "operation": order[step],
        "bytes": profile[step],
        "largest_live": live[:top],
    }


#: CPU-side seconds to issue one kernel of a compiled graph on a GPU (wrapper code, launch,
#: allocation): H100, torch 2.11, ViT-B/16 at batch 4 and ResNet-18 at batch 16 ran 26-30 us
#: per scheduler node (`bench/results/gpu/step_times_paired_*.md`), launch-bound.
GPU_SECONDS_PER_KERNEL = 25e-6


def _estimated_runtime(
    nodes: list[BaseSchedulerNode], measure: bool = True
) -> tuple[float, list[KernelMeasurement], str]:
    """Estimated seconds of the graph, the extern kernels measured for it, and which model
    gave the figure: "inductor" or "cpu".

    GPUs ("inductor"): the larger of Inductor's own estimate (its kernels' FLOPs and bytes, in
    ms) and the time to issue the kernels (`GPU_SECONDS_PER_KERNEL` each): small graphs are
    launch-bound, and there an activation budget's extra kernels cost what Inductor's estimate
    does not see (ViT-B/16: +1.4% estimated, +12.2% measured). CPU ("cpu"): each node's: an
    extern kernel's measured time (`measure`: `capture/workspace.py`), else its flops and bytes
    moved at fixed rates (`capture/runtime.py`, which prices the recomputation plan the same
    way). `decide` times every candidate's kernels again, side by side (`retime_trials`).
    """
    try:
        inductor_ms = sum(float(node.get_estimated_runtime()) for node in nodes)
    except Exception:  # an estimate is optional
        inductor_ms = 0.0
    if inductor_ms > 0:
        launched = sum(1 for node in nodes if not _is_nop(node))
        return max(inductor_ms / 1e3, launched * GPU_SECONDS_PER_KERNEL), [], "inductor"
    total = 0.0
    kernels = []
    for node in nodes:
        measured = _measured_extern(node) if measure else None
        if measured is None:
            total += _roofline_seconds(node)
        else:
            total += measured.seconds
            kernels.append(measured)
    return total, kernels, "cpu"


def _is_nop(node: BaseSchedulerNode) -> bool:
    from torch._inductor.scheduler import NopKernelSchedulerNode

    return isinstance(node, NopKernelSchedulerNode)


def _measured_extern(node: BaseSchedulerNode) -> KernelMeasurement | None:
    from torch._inductor.scheduler import ExternKernelSchedulerNode

    if not isinstance(node, ExternKernelSchedulerNode):
        return None
    return measured_kernel(node.node)


def _roofline_seconds(node: BaseSchedulerNode) -> float:
    try:
        flops = node.estimate_flops() or 0
        moved = node.get_read_write_buffers_sizes()
    except Exception:
        return 0.0
    return roofline_seconds(flops, moved)


def _account_emitted_code(
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
    from torch._inductor.codegen.wrapper import ReuseLine
    from torch._inductor.virtualized import V

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
                report.details["boundary"] = backward_boundary(emitted, order, profile)
            except Exception as exc:
                log.info("modelopt: no boundary record for %s: %s", report.graph_name, exc)
        if emitted.meta.get("held_by_caller"):
            extra = _extra_if_outputs_held(emitted, order)
            report.details["peak_if_outputs_held"] = max(
                (live + more for live, more in zip(profile, extra, strict=True)), default=0
            )

    wrapper.run_wrapper_ir_passes = run_passes


def _save(directory: str, graph_name: str, problem: Any, result: Any) -> None:
    """Write the problem and plan as JSON: replayable instances for the planner CLI and bench."""
    try:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        problem.to_json(folder / f"{graph_name}.problem.json")
        (folder / f"{graph_name}.plan.json").write_text(result.to_json())
    except OSError as exc:
        log.warning("modelopt: could not save the problem of %s: %s", graph_name, exc)
