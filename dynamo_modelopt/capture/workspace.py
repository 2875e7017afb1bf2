"""Memory that extern kernels allocate inside themselves, which no Inductor buffer shows.

Measured with the kineto profiler on torch 2.14, CPU (oneDNN), for `aten.convolution` and
`aten.convolution_backward`, beside the kernels' own outputs:
- forward, channels-last input: one temporary copy of the weight (oneDNN's blocked layout);
- forward, contiguous input: copies of the weight and of the input;
- backward, channels-last: two weight-sized temporaries at once (reordered weight and weight
  gradient in blocked layout);
- backward, contiguous: copies of the output gradient and of the input at once.
On CUDA, cuDNN's workspace depends on the algorithm it picks at run time; we do not model it.
Each workspace is a tensor live during its kernel's step only, outside our arena.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SizeHint = Callable[[Any], int]


def _bytes(ir_input: Any, size_hint: SizeHint) -> int:
    from torch._inductor.utils import get_dtype_size

    return size_hint(ir_input.get_numel()) * get_dtype_size(ir_input.get_dtype())


def _channels_last(ir_input: Any, size_hint: SizeHint) -> bool:
    try:
        stride = [size_hint(s) for s in ir_input.get_stride()]
        size = [size_hint(s) for s in ir_input.get_size()]
    except Exception:  # no layout known: assume the cheaper case
        return True
    return len(size) >= 3 and (stride[1] == 1 or size[1] == 1)


def _convolution(inputs: list[Any], size_hint: SizeHint) -> int:
    x, weight = inputs[0], inputs[1]
    extra = 0 if _channels_last(x, size_hint) else _bytes(x, size_hint)
    return _bytes(weight, size_hint) + extra


def _convolution_backward(inputs: list[Any], size_hint: SizeHint) -> int:
    grad_output, x, weight = inputs[0], inputs[1], inputs[2]
    if _channels_last(grad_output, size_hint):
        return 2 * _bytes(weight, size_hint)
    return _bytes(grad_output, size_hint) + _bytes(x, size_hint)


# op -> (inputs it needs, workspace rule)
_CPU_RULES: dict[str, tuple[int, Callable[[list[Any], SizeHint], int]]] = {
    "aten.convolution.default": (2, _convolution),
    "aten.convolution_backward.default": (3, _convolution_backward),
}


def extern_workspace_bytes(ir_node: Any, size_hint: SizeHint) -> int:
    """Bytes an extern kernel allocates internally during its call (0 when none is known)."""
    op = getattr(ir_node, "op_overload", None)
    device = ir_node.get_device() if hasattr(ir_node, "get_device") else None
    if op is None or device is None or device.type != "cpu":
        return 0
    rule = _CPU_RULES.get(str(op))
    inputs = list(getattr(ir_node, "inputs", []))
    if rule is None or len(inputs) < rule[0]:
        return 0
    return rule[1](inputs, size_hint)
