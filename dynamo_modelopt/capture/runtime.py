"""Run time of operations in seconds: one model for the recomputation plan and the choice.

The choice between compile settings (`decide`) compares candidates by the compiled code's
estimated run time: on CPU each extern kernel as measured (`workspace.measured_kernel`), the
generated kernels by FLOPs and bytes moved at the rates below (`inductor/runtime_model.py`). The
recomputation plan is made earlier, on the joint graph (`inductor/saved_set.py`). Pricing the
joint graph's operations the same way keeps the two in step: a plan counted in FLOPs could fit
its budget and still read over it once its recomputed convolutions were timed (GPT-2's
reference row at batch 8 x 128 did: within the FLOP budget, +5.0% measured, so rejected).

Compute-intensive operations (those with a FLOP formula: matmuls, convolutions, attention)
are run on zero tensors of their recorded sizes, strides and dtypes and timed, where they are
on the CPU with static sizes; the others, and all where measuring is off or impossible, cost
their FLOPs and the bytes they read and write at the fixed rates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from ..caches import BoundedCache
from . import kernel_times
from .hints import hint
from .workspace import (
    _MEASURED_NAMESPACES,
    MAX_MEASURED_BYTES,
    _eager_quiet,
    _make_tensor,
    _NotMeasurable,
    _spec_bytes,
    _static_int,
    _TensorSpec,
    fastest_call,
)

log = logging.getLogger(__name__)

# Rough CPU throughputs where nothing is measured (Inductor estimates GPUs only): what matters
# is comparing candidates of one graph, not the absolute figure.
CPU_FLOPS_PER_SECOND = 1e11
CPU_BYTES_PER_SECOND = 1e10

#: Most operators timed per process (each entry is one number).
FX_CACHE_SIZE = 4096
# (op, input specs, arguments, threads) -> seconds, or None where the run failed
_fx_cache: BoundedCache[tuple[Any, ...], float | None] = BoundedCache(
    "timed operators", FX_CACHE_SIZE
)


def roofline_seconds(flops: float, moved_bytes: float) -> float:
    """Seconds for `flops` and `moved_bytes` at the fixed CPU rates."""
    return flops / CPU_FLOPS_PER_SECOND + moved_bytes / CPU_BYTES_PER_SECOND


def node_seconds(node: fx.Node, measure: bool = True) -> float:
    """Estimated seconds of an fx node: measured where it has FLOPs and `measure` allows
    (`measured_node_seconds`), else its FLOPs and bytes at the fixed rates."""
    flops = node_flops(node)
    if measure and flops > 0:
        seconds = measured_node_seconds(node)
        if seconds is not None:
            return seconds
    return roofline_seconds(flops, _bytes_read(node) + _bytes_of(node))


def node_flops(node: fx.Node) -> float:
    """FLOPs of a node by PyTorch's flop formulas on its recorded shapes (0 without one)."""
    from torch.utils.flop_counter import flop_registry

    formula = flop_registry.get(getattr(node.target, "overloadpacket", None))
    if formula is None:
        return 0.0

    def value(arg: Any) -> Any:
        return arg.meta.get("val") if isinstance(arg, fx.Node) else arg

    try:
        args, kwargs = fx.node.map_aggregate((node.args, node.kwargs), value)
        flops = formula(*args, **kwargs, out_val=node.meta.get("val"))
        return float(hint(flops))  # float() of a symbolic count would specialize its sizes
    except Exception:  # a formula that does not fit these arguments
        return 0.0


def _bytes_of(node: fx.Node) -> int:
    from .._torch_compat import _size_of

    try:
        return int(_size_of(node))
    except Exception:  # no size recorded: an operation on non-tensors
        return 0


def _bytes_read(node: fx.Node) -> int:
    return sum(
        _bytes_of(arg)
        for arg in node.all_input_nodes
        if isinstance(arg.meta.get("val"), torch.Tensor)
    )


@dataclass(frozen=True)
class _Slot:
    """Where the i-th input tensor goes in an operation's arguments."""

    index: int


def _spec_of(value: torch.Tensor) -> _TensorSpec:
    if value.device.type != "cpu":
        raise _NotMeasurable(f"input on {value.device}")
    size = tuple(_static_int(s) for s in value.size())
    stride = tuple(_static_int(s) for s in value.stride())
    return size, stride, value.dtype, torch.device("cpu")


def _fx_call(node: fx.Node) -> tuple[list[_TensorSpec], Any, Any]:
    """(input specs, arguments with `_Slot`s for the tensors, keyword arguments likewise)."""
    op = node.target
    if not isinstance(op, torch._ops.OpOverload) or op.namespace not in _MEASURED_NAMESPACES:
        raise _NotMeasurable(f"op {op!r}")
    specs: list[_TensorSpec] = []

    def slot(arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            arg = arg.meta.get("val")
            if isinstance(arg, torch.Tensor):
                specs.append(_spec_of(arg))
                return _Slot(len(specs) - 1)
        if isinstance(arg, (torch.Tensor, torch.SymInt, torch.SymFloat, torch.SymBool)):
            raise _NotMeasurable(f"argument {type(arg).__name__}")
        return arg

    args, kwargs = fx.node.map_aggregate((node.args, node.kwargs), slot)
    return specs, args, kwargs


def measured_node_seconds(node: fx.Node) -> float | None:
    """Seconds of a CPU aten operation of an fx graph, the fastest of `TIMED_CALLS` warm calls
    on zero tensors of its inputs' recorded sizes; None where it cannot be run (symbolic
    sizes, inputs off the CPU or over `MAX_MEASURED_BYTES`, ops outside aten, a profiler
    running, an exception). Cached per op, input layouts, arguments and thread count, and
    under `kernel_times.using(True)` kept on this machine's table."""
    try:
        if torch._C._autograd._profiler_enabled():
            return None  # timing would show in the user's profile
        specs, args, kwargs = _fx_call(node)
        key = (str(node.target), tuple(specs), repr((args, kwargs)), torch.get_num_threads())
        table = kernel_times.current()
        if key in _fx_cache:
            seconds = _fx_cache[key]
            if table is not None:  # timed in this process before the table was in use
                table.provisional(kernel_times.key_text(key), kernel_times.KernelTime(seconds))
            return seconds
        stored = table.final(kernel_times.key_text(key)) if table is not None else None
        if stored is not None:  # timed once on this machine: never again
            _fx_cache[key] = stored.seconds
            return stored.seconds
        if sum(_spec_bytes(s) for s in specs) > MAX_MEASURED_BYTES:
            return None
    except Exception as exc:
        log.debug("%s not timed: %s", node.name, exc)
        return None
    op = node.target

    def fill(tensors: list[torch.Tensor]) -> Any:
        return fx.node.map_aggregate(
            (args, kwargs), lambda a: tensors[a.index] if isinstance(a, _Slot) else a
        )

    try:
        with _eager_quiet():
            tensors = [_make_tensor(spec) for spec in specs]
            call_args, call_kwargs = fill(tensors)
            op(*call_args, **call_kwargs)  # warm-up: one-time set-up is not run time
            seconds: float | None = fastest_call(lambda: op(*call_args, **call_kwargs))
    except Exception as exc:
        log.debug("%s: timing failed: %s", node.name, exc)
        seconds = None
    _fx_cache[key] = seconds
    if table is not None:
        table.provisional(kernel_times.key_text(key), kernel_times.KernelTime(seconds))
    return seconds
