"""Make Inductor run its fused nodes in our planned order.

Inductor re-sorts nodes during fusion and then lets `reorder_for_peak_memory` pick its own order,
so an order set any earlier does not survive. We compile our graphs with
`reorder_for_peak_memory=False` and install this pass as `_post_fusion_custom_pass`, the last
scheduler hook before code generation. The pass:
1. runs Inductor's own `reorder_for_peak_memory` to learn the order Inductor would have used
   (that is the baseline every report compares against, and our plan's starting point);
2. turns the fused nodes and their buffers into a planning `Problem`;
3. plans it, validates the plan and returns the nodes in the planned order.
The stages live in their own modules: the run-time model (`runtime_model.py`), the grouping of
kernel calls (`kernel_calls.py`) and the accounting of the emitted code with the arena choice
(`emitted.py`); `PlanOrderPass._plan` runs them in order.
Any failure returns Inductor's own order, so the graph compiles exactly as under plain Inductor,
with one warning and a "fallback" report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._torch_compat import (
    BaseSchedulerNode,
    CustomSchedulerPass,
    OrderedSet,
    V,
    reorder_for_peak_memory,
)
from ..caches import BoundedCache
from ..capture import kernel_times
from ..capture.inplace import inplace_candidates, peak_with_inplace_reuse
from ..capture.scheduler import (
    CapturedGraph,
    SavedStorage,
    UnplannableGraph,
    as_emitted,
    caller_held_storages,
    caller_output_range,
    input_views_among_outputs,
    kernel_local_buffers,
    problem_from_scheduler,
    saved_storages,
)
from ..config import ModeloptConfig
from ..planner import Plan, Problem, check_plan, peak_live_bytes, plan
from ..report import GraphInternals, GraphReport, add_report, warn_once
from .accumulate import accumulated_in_place
from .collectives import communication_nodes, moved_communication
from .emitted import account_emitted_code
from .kernel_calls import kernel_calls
from .report_cache import source_hash
from .runtime_model import estimated_runtime

log = logging.getLogger(__name__)

_graph_counter = 0


def _graph_kind() -> str:
    if V.graph.is_backward:
        return "backward"
    if V.graph.is_inference:
        return "inference"
    return "forward"


def _inductor_order(nodes: list[BaseSchedulerNode]) -> list[BaseSchedulerNode]:
    """The order Inductor's own peak-memory pass would pick (it also attaches planning info)."""
    scheduler = V.graph.scheduler
    return reorder_for_peak_memory(
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
            with kernel_times.using(self.config.kernel_time_cache):
                return self._plan(inductor_nodes, kind, graph_name)
        except Exception as exc:
            if self.config.strict:
                raise
            reason = f"{type(exc).__name__}: {exc}"
            add_report(
                GraphReport(
                    graph_kind=kind,
                    num_nodes=len(nodes),
                    inductor_peak_bytes=None,
                    planned_peak_bytes=None,
                    lower_bound_bytes=None,
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
        """The passes, in order: capture, plan, choose the order, report, group the kernel
        calls, then account the emitted code once Inductor has written it."""
        captured = self._capture(inductor_nodes, kind, graph_name)
        problem = captured.problem
        inductor_peak = peak_live_bytes(problem, problem.op_names)
        result = _planned(problem, inductor_peak, self.config)
        choice = _choose_order(problem, result, inductor_nodes, self.config)
        if self.config.save_problems:
            _save(self.config.save_problems, graph_name, problem, result)
        report = self._report(
            inductor_nodes, kind, graph_name, captured, inductor_peak, result, choice
        )
        add_report(report)
        steps = kernel_calls(choice.code, choice.order, choice.reuse_pairs, captured, report)
        account_emitted_code(problem, steps, report, self.config)
        return captured.nodes_in(choice.order)

    def _capture(
        self, inductor_nodes: list[BaseSchedulerNode], kind: str, graph_name: str
    ) -> CapturedGraph:
        """The planning problem of the fused nodes; a backward reads what its forward saved."""
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
        captured.problem.meta.update({"graph_kind": kind})
        return captured

    def _report(
        self,
        inductor_nodes: list[BaseSchedulerNode],
        kind: str,
        graph_name: str,
        captured: CapturedGraph,
        inductor_peak: int,
        result: Plan,
        choice: _OrderChoice,
    ) -> GraphReport:
        """The report of a planned graph, before its emitted code is accounted."""
        problem, order = captured.problem, choice.order
        runtime, measured_kernels, runtime_model = estimated_runtime(
            inductor_nodes, self.config.measure_kernel_time
        )
        return GraphReport(
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
                "predicted_code_peak": choice.code_peaks,
                "estimated_runtime": runtime,
                "runtime_model": runtime_model,
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
                "order_kept_for_collectives": choice.kept,
                "accumulated_in_place": _accumulated_in_place(),
                "forward_convolutions": _forward_convolutions(),
                "output_gradients": _output_gradient_bytes(problem) if kind == "backward" else {},
            },
            internals=GraphInternals(measured_kernels=measured_kernels),
        )


#: Plans kept per process: the candidates of one search and the winner's build
PLAN_CACHE_SIZE = 64
# (problem as JSON, planner options) -> the checked plan
_plans: BoundedCache[tuple[str, str], Plan] = BoundedCache("plans", PLAN_CACHE_SIZE)


def _planned(problem: Problem, inductor_peak: int, config: ModeloptConfig) -> Plan:
    """The planner's result, checked, and never worse than Inductor's own order.

    A problem planned before in this process gets the same plan without solving again: the
    winner of a search is built from the same graph its plan-only candidate was, so its build
    costs no solve and emits exactly the plan the choice was made on (a time-limited solver
    need not find the same plan twice)."""
    options = config.planner_options()
    # the graph's name (a counter) aside, the problem is the plan's whole input
    content = {k: v for k, v in problem.to_dict().items() if k != "name"}
    key = (json.dumps(content, sort_keys=True, default=repr), repr(options))
    result = _plans.get(key)
    if result is not None:
        result = dataclasses.replace(result, stats={**result.stats, "plan_reused": True})
    else:
        result = plan(problem, options)
        check_plan(problem, result)
        _plans[key] = result
    if result.peak_bytes > inductor_peak:
        raise UnplannableGraph(
            f"planner returned a worse peak ({result.peak_bytes} > {inductor_peak})"
        )
    return result


@dataclass
class _OrderChoice:
    """The order the code will run and what decided it."""

    order: list[str]
    #: the problem as the code will allocate it: no kernel-local buffers (in-place reuse apart)
    code: Problem
    reuse_pairs: Any
    #: predicted peak of `code` under Inductor's order and under the planned one
    code_peaks: dict[str, int]
    #: why Inductor's order was kept for collectives, or None
    kept: Any


def _choose_order(
    problem: Problem, result: Plan, inductor_nodes: list[BaseSchedulerNode], config: ModeloptConfig
) -> _OrderChoice:
    """Take the planned order where it clearly lowers what the code will allocate and keeps the
    collectives in Inductor's sequence; else Inductor's order."""
    # what the code will allocate: without kernel-local buffers, with in-place reuse
    reuse_pairs = inplace_candidates(inductor_nodes)
    code = as_emitted(problem, kernel_local_buffers(inductor_nodes), {})
    code_peaks = {
        "inductor_order": peak_with_inplace_reuse(code, problem.op_names, reuse_pairs),
        "planned_order": peak_with_inplace_reuse(code, result.order, reuse_pairs),
    }
    _substituted(config, result)
    order = problem.op_names
    kept = moved_communication(order, result.order, communication_nodes(inductor_nodes))
    if config.reorder and _better(code_peaks) and kept is None:
        order = result.order
    return _OrderChoice(order, code, reuse_pairs, code_peaks, kept)


def _output_gradient_bytes(problem: Any) -> dict[str, int]:
    """Bytes of each gradient the backward receives for a forward output (AOTAutograd's
    `tangents_*` inputs). Autograd passes zeros of full size for an output the loss did not use,
    so a large one here is memory the user can save by returning only what the loss needs."""
    return {
        t.name: t.size
        for t in problem.tensors
        if t.producer is None and t.name.startswith("tangents_") and t.size > 0
    }


def _forward_convolutions() -> int:
    """How many forward convolutions this graph runs: in a backward, the recomputed ones.
    Inductor lays a graph out channels-last only around convolutions
    (`GraphLowering.decide_layout_opt`), so a backward with none compiles alike with and
    without layout optimization."""
    module = getattr(V.graph, "module", None)
    graph = getattr(module, "graph", None)
    names = ("aten.convolution.default", "aten._convolution.default")
    return sum(1 for node in getattr(graph, "nodes", ()) if str(node.target) in names)


def _accumulated_in_place() -> int:
    """How many matrix-product sums `accumulate.py` rewrote in this graph."""
    return accumulated_in_place(getattr(V.graph, "module", None))


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


def _save(directory: str, graph_name: str, problem: Any, result: Any) -> None:
    """Write the problem and plan as JSON: replayable instances for the planner CLI and bench."""
    try:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        problem.to_json(folder / f"{graph_name}.problem.json")
        (folder / f"{graph_name}.plan.json").write_text(result.to_json())
    except OSError as exc:
        log.warning("modelopt: could not save the problem of %s: %s", graph_name, exc)
