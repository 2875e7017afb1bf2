"""How the fused nodes of the planned order are grouped into kernel calls.

Inductor's C++ backend runs consecutive fused nodes as one kernel call and frees what they used
last only after it; where that grouping would raise the peak, this module makes each C++ node
its own call (a patch of the backend's `codegen_node`).
"""

from __future__ import annotations

from typing import Any

from .._torch_compat import V, cpp_scheduling
from ..capture.inplace import with_inplace_reuse
from ..capture.scheduler import CapturedGraph, kernel_call_steps, merge_steps
from ..planner import peak_live_bytes
from ..report import GraphReport


def kernel_calls(
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
    scheduler = V.graph.scheduler
    devices = {captured.node_by_name[name].get_device() for step in grouped for name in step}
    for device in devices - {None}:
        backend = scheduler.get_backend(device)
        if isinstance(backend, cpp_scheduling()):
            _flush_after_each_node(backend)
    return [[name] for name in order]


def _flush_after_each_node(backend: Any) -> None:
    """Make this graph's C++ backend write each fused node's call (and frees) on its own."""
    codegen_node = backend.codegen_node

    def codegen_then_flush(node: Any) -> None:
        codegen_node(node)
        backend._set_flush_status(True)  # the scheduler flushes after this node

    backend.codegen_node = codegen_then_flush
