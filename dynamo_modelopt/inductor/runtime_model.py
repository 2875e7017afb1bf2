"""The run-time model of one graph: seconds per fused node, before any code is generated.

The order pass records the figure in each report; `decide` weighs it against the memory saved.
"""

from __future__ import annotations

from .._torch_compat import BaseSchedulerNode, ExternKernelSchedulerNode, NopKernelSchedulerNode
from ..capture.runtime import roofline_seconds
from ..capture.workspace import KernelMeasurement, measured_kernel

#: CPU-side seconds to issue one kernel of a compiled graph on a GPU (wrapper code, launch,
#: allocation): H100, torch 2.11, ViT-B/16 at batch 4 and ResNet-18 at batch 16 ran 26-30 us
#: per scheduler node (`bench/results/gpu/step_times_paired_*.md`), launch-bound.
GPU_SECONDS_PER_KERNEL = 25e-6


def estimated_runtime(
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
    return isinstance(node, NopKernelSchedulerNode)


def _measured_extern(node: BaseSchedulerNode) -> KernelMeasurement | None:
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
