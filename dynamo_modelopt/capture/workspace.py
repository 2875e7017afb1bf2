"""Memory that extern kernels allocate inside themselves, which no Inductor buffer shows.

Measured with the kineto profiler on torch 2.14, CPU (oneDNN), for `aten.convolution` and
`aten.convolution_backward` with channels-last and contiguous inputs:
- a forward convolution copies its weight into oneDNN's blocked layout for the call: one
  temporary of the weight's size, freed before it returns;
- a backward convolution holds two such temporaries at once (the reordered weight and the
  weight gradient in blocked layout) beside its outputs.
On CUDA, cuDNN's workspace depends on the algorithm it picks at run time; we do not model it.
Each workspace is a tensor live during its kernel's step only, outside our arena.
"""

from __future__ import annotations

from typing import Any

# (op name, index of the weight among the kernel's inputs, copies of the weight held at once)
_CPU_WEIGHT_COPIES = {
    "aten.convolution.default": (1, 1),
    "aten.convolution_backward.default": (2, 2),
}


def _input_bytes(ir_input: Any, size_hint: Any) -> int:
    from torch._inductor.utils import get_dtype_size

    return size_hint(ir_input.get_numel()) * get_dtype_size(ir_input.get_dtype())


def extern_workspace_bytes(ir_node: Any, size_hint: Any) -> int:
    """Bytes an extern kernel allocates internally during its call (0 when none is known)."""
    op = getattr(ir_node, "op_overload", None)
    device = ir_node.get_device() if hasattr(ir_node, "get_device") else None
    if op is None or device is None or device.type != "cpu":
        return 0
    rule = _CPU_WEIGHT_COPIES.get(str(op))
    inputs = getattr(ir_node, "inputs", [])
    if rule is None or len(inputs) <= rule[0]:
        return 0
    weight_index, copies = rule
    return copies * _input_bytes(inputs[weight_index], size_hint)
