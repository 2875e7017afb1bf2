"""Memory that extern kernels allocate inside themselves, which no Inductor buffer shows.

Measured with the kineto profiler on torch 2.14, CPU (oneDNN), for `aten.convolution` and
`aten.convolution_backward`, beside the kernels' own outputs:
- forward, channels-last input: one temporary copy of the weight (oneDNN's blocked layout);
- forward, contiguous input: copies of the weight and of the input;
- backward, channels-last: two weight-sized temporaries at once (reordered weight and weight
  gradient in blocked layout);
- backward, contiguous: copies of the output gradient and of the input at once.
For CPU flash attention (`aten._scaled_dot_product_flash_attention_for_cpu` and its backward),
the sizes follow ATen's `FlashAttentionKernel.cpp` (checked against kineto on torch 2.14):
queries are split in blocks of 256/64/32 rows (for query lengths >= 768 / >= 192 / shorter),
keys in blocks of 512, and each thread gets a buffer of accumulate-type values:
- forward: a block of scores, two row statistics and a block of output;
- backward: two blocks of scores (attention and its gradient), plus one row of sums;
reduced-precision inputs (bf16, fp16) add a copy of the score blocks in their own type.
Each workspace is a tensor live during its kernel's step only, outside our arena.

The rules above miss allocations (oneDNN's scratchpad, for one), so we measure instead: at
compile time we run the extern kernel once on real tensors of its inputs' sizes, strides and
dtypes, and take the peak of its allocations above the start, less the outputs the graph keeps
(those are buffers of their own). On the CPU the allocations are kineto's events; on CUDA the
caching allocator's trace (`measure.cuda_allocation_trace`), which does not reset the user's
peak counters. CUDA has no rules: its kernels' workspace (cuDNN's depends on the algorithm it
picks; the efficient attention backward took 131,200 B for the tiny GPT-2 test model on an
H100, `bench/results/gpu/README.md`) is known only where measured. The rules stay as the
fallback wherever a measurement is not possible (see `measured_workspace_bytes`).

The same runs time the kernel (`measured_kernel`, `retime`): on CPU, FLOPs misjudge what
layout and grouping do to oneDNN's kernels (EfficientNet-B0, batch 8: its convolutions took
49 ms of the step channels-last and 57 ms contiguous, for the same FLOPs; `bench.op_profile`),
and the choice of compile settings compares candidates by their estimated run time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..caches import BoundedCache
from . import kernel_times

log = logging.getLogger(__name__)

SizeHint = Callable[[Any], int]


def _bytes(ir_input: Any, size_hint: SizeHint) -> int:
    from .._torch_compat import get_dtype_size

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


def _attention_blocks(query: Any, key: Any, size_hint: SizeHint) -> tuple[int, int, int]:
    """(query rows per block, key rows per block, head size) of CPU flash attention."""
    q_len, head = size_hint(query.get_size()[-2]), size_hint(query.get_size()[-1])
    kv_len = size_hint(key.get_size()[-2])
    q_split = 256 if q_len >= 768 else 64 if q_len >= 192 else 32
    return min(q_split, q_len), min(512, kv_len), head


def _accumulate_and_reduced_size(query: Any) -> tuple[int, int]:
    """Bytes of the accumulate type, and of the input type where it is a reduced float (else 0)."""
    import torch

    from .._torch_compat import get_dtype_size

    dtype = query.get_dtype()
    reduced = dtype in (torch.bfloat16, torch.float16)
    return (4 if reduced else get_dtype_size(dtype)), (get_dtype_size(dtype) if reduced else 0)


def _flash_attention(inputs: list[Any], size_hint: SizeHint) -> int:
    import torch

    query, key = inputs[0], inputs[1]
    q_block, kv_block, head = _attention_blocks(query, key, size_hint)
    accumulate, reduced = _accumulate_and_reduced_size(query)
    threads = torch.get_num_threads()
    per_thread = q_block * kv_block + 2 * q_block + q_block * head
    return threads * (per_thread * accumulate + q_block * kv_block * reduced)


def _flash_attention_backward(inputs: list[Any], size_hint: SizeHint) -> int:
    import torch

    query, key = inputs[1], inputs[2]
    q_block, kv_block, _ = _attention_blocks(query, key, size_hint)
    accumulate, reduced = _accumulate_and_reduced_size(query)
    threads = torch.get_num_threads()
    per_thread = 2 * q_block * kv_block
    return threads * per_thread * (accumulate + reduced) + q_block * accumulate


# op -> (inputs it needs, workspace rule)
_CPU_RULES: dict[str, tuple[int, Callable[[list[Any], SizeHint], int]]] = {
    "aten.convolution.default": (2, _convolution),
    "aten.convolution_backward.default": (3, _convolution_backward),
    "aten._scaled_dot_product_flash_attention_for_cpu.default": (3, _flash_attention),
    "aten._scaled_dot_product_flash_attention_for_cpu_backward.default": (
        3,
        _flash_attention_backward,
    ),
}


def rule_workspace_bytes(ir_node: Any, size_hint: SizeHint) -> int:
    """Workspace by the rules above (0 where no rule applies, and on any device but the CPU)."""
    op = getattr(ir_node, "op_overload", None)
    device = ir_node.get_device() if hasattr(ir_node, "get_device") else None
    if op is None or device is None or device.type != "cpu":
        return 0
    rule = _CPU_RULES.get(str(op))
    inputs = list(getattr(ir_node, "inputs", []))
    if rule is None or len(inputs) < rule[0]:
        return 0
    return rule[1](inputs, size_hint)


# Measurement allocates real copies of the inputs at compile time: above this, use the rules.
MAX_MEASURED_BYTES = 1 << 30
# Namespaces whose ops we may run at compile time: pure compute, no side effects beyond their
# arguments. Custom ops (user code) and mkldnn's packed-weight ops are left to the rules.
_MEASURED_NAMESPACES = frozenset({"aten"})

_MeasureKey = tuple[Any, ...]
# Where kernels are run: the CPU (kineto sees its allocations), CUDA (the allocator's trace).
_MEASURED_DEVICES = frozenset({"cpu", "cuda"})


@dataclass(frozen=True)
class KernelMeasurement:
    """What running an extern kernel on real inputs showed; `key` names the kernel call
    (op, input layouts, arguments) for `retime`."""

    workspace_bytes: int
    seconds: float  # the fastest of `TIMED_CALLS` warm calls
    key: _MeasureKey


#: Warm calls timed per kernel; the fastest counts (the others met a busy machine).
TIMED_CALLS = 3
#: Rounds of `retime`: with 3, one EfficientNet-B0 candidate's estimated overhead read +4.3%
#: and +7.6% in two compiles on a 2-core VM.
RETIME_ROUNDS = 5
#: Most kernels measured per process (each entry is a few numbers; a model has some hundreds).
MEASURED_CACHE_SIZE = 4096
# key -> measurement, or None where measuring failed (the rules answer then)
_measured_cache: BoundedCache[_MeasureKey, KernelMeasurement | None] = BoundedCache(
    "measured kernels", MEASURED_CACHE_SIZE
)
# key -> (call, input specs), kept only inside `keeping_kernels` (they hold IR nodes)
_runners: dict[_MeasureKey, tuple[Callable[[list[Any]], Any], list[_TensorSpec]]] | None = None


@contextmanager
def keeping_kernels() -> Iterator[None]:
    """Keep what runs each kernel measured inside, so `retime` can run it again."""
    global _runners
    outer, _runners = _runners, {} if _runners is None else _runners
    try:
        yield
    finally:
        _runners = outer


def fastest_call(call: Callable[[], Any], calls: int = TIMED_CALLS, device: Any = "cpu") -> float:
    """Seconds of the fastest of `calls` calls of `call` (on CUDA, each synchronized:
    `timing.call_seconds`)."""
    from ..timing import call_seconds

    return min(call_seconds(call, device) for _ in range(calls))


def retime(keys: Iterable[_MeasureKey], rounds: int = RETIME_ROUNDS) -> dict[_MeasureKey, float]:
    """Seconds of each measured kernel, timed again in turns.

    A kernel measured while the machine was busy (Inductor's compile workers starting up, say)
    reads slow (in a debugging run, EfficientNet-B0's first backward read well above the same
    kernels measured a minute later; no bench figure). So every kernel of every candidate is
    timed again in rounds, one call each per round, and its fastest round replaces its first
    measurement: each kernel then has the same number of samples, taken in the same minutes
    (keeping the first measurement too favoured kernels measured by earlier compiles of the
    process, which had more samples). Kernels that cannot be run again (outside
    `keeping_kernels`) keep their first measurement.
    """
    unique = list(dict.fromkeys(keys))
    found = {
        key: measured.seconds
        for key in unique
        if (measured := _measured_cache.get(key)) is not None
    }
    from ..timing import call_seconds

    # a time made final (on this machine's table) is not measured again
    table = kernel_times.current()
    runnable = [
        key
        for key in found
        if _runners is not None
        and key in _runners
        and not (table is not None and table.is_final(kernel_times.key_text(key)))
    ]
    fastest = dict.fromkeys(runnable, float("inf"))
    with _eager_quiet():
        for _ in range(rounds):
            for key in runnable:
                call, specs = _runners[key]  # type: ignore[index]
                tensors = [_make_tensor(spec) for spec in specs]
                seconds = call_seconds(functools.partial(call, tensors), _device_of(specs))
                fastest[key] = min(fastest[key], seconds)
                del tensors
    found.update((key, seconds) for key, seconds in fastest.items() if seconds < float("inf"))
    if table is not None:
        for key in runnable:
            measured = _measured_cache.get(key)
            if measured is None:
                continue
            measured = dataclasses.replace(measured, seconds=found[key])
            _measured_cache[key] = measured  # later compiles in this process price it the same
            table.finalize(kernel_times.key_text(key), _as_time(measured))
    return found


class _NotMeasurable(Exception):
    """The node cannot be run eagerly as it stands (a symbolic size, an unknown argument)."""


def _static_int(value: Any) -> int:
    import sympy

    if isinstance(value, bool):
        raise _NotMeasurable("bool where a size was expected")
    if isinstance(value, int):
        return value
    if isinstance(value, sympy.Integer):
        return int(value)
    raise _NotMeasurable(f"symbolic size {value}")


def _concrete(value: Any) -> Any:
    """A constant argument as eager code takes it; symbolic values and IR nodes raise."""
    import sympy

    from .._torch_compat import IRNode

    if isinstance(value, IRNode):
        raise _NotMeasurable(f"IR node among the constant arguments: {type(value).__name__}")
    if isinstance(value, sympy.Basic):
        if isinstance(value, sympy.Integer):
            return int(value)
        if isinstance(value, sympy.Float):
            return float(value)
        raise _NotMeasurable(f"symbolic argument {value}")
    if isinstance(value, (list, tuple)):
        return type(value)(_concrete(v) for v in value)
    if isinstance(value, dict):
        return {k: _concrete(v) for k, v in value.items()}
    return value


_TensorSpec = tuple[tuple[int, ...], tuple[int, ...], Any, Any]  # size, stride, dtype, device


def _tensor_spec(node: Any) -> _TensorSpec:
    from .._torch_compat import IRNode

    if not isinstance(node, IRNode):
        raise _NotMeasurable(f"input is not a tensor: {type(node).__name__}")
    size = tuple(_static_int(s) for s in node.get_size())
    stride = tuple(_static_int(s) for s in node.get_stride())
    device = node.get_device()
    if device is None or device.type not in _MEASURED_DEVICES:
        raise _NotMeasurable(f"input on {device}")
    return size, stride, node.get_dtype(), device


def _device_of(specs: Sequence[_TensorSpec]) -> Any:
    """Where a kernel of these inputs runs: the CUDA device of any, else the CPU."""
    return next((spec[3] for spec in specs if spec[3].type == "cuda"), specs[0][3])


def _spec_bytes(spec: _TensorSpec) -> int:
    import torch

    size, stride, dtype, _ = spec
    if 0 in size:
        return 0
    extent = 1 + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
    return extent * torch.empty((), dtype=dtype).element_size()


def _make_tensor(spec: _TensorSpec) -> Any:
    import torch

    size, stride, dtype, device = spec
    # Zeros: valid indices for index inputs, and no overflow or NaN slow paths.
    return torch.empty_strided(size, stride, dtype=dtype, device=device).zero_()


def _kept_output_paths(ir_node: Any) -> tuple[tuple[int, ...], ...] | None:
    """Index paths into the op's result of the outputs the graph keeps; None: the whole result.

    A multi-output kernel's outputs that no one reads are dropped right after the call (their
    MultiOutput buffers are removed), so they count as workspace, not as buffers.
    """
    from .._torch_compat import MultiOutput, MultiOutputLayout

    if not isinstance(getattr(ir_node, "layout", None), MultiOutputLayout):
        return None
    removed = _removed_buffers()
    paths: list[tuple[int, ...]] = []

    def visit(outputs: Any) -> None:
        if isinstance(outputs, MultiOutput):
            if outputs.get_name() not in removed:
                paths.append(tuple(_static_int(index) for _, index in outputs.indices))
        elif isinstance(outputs, (list, tuple)):
            for output in outputs:
                visit(output)

    visit(getattr(ir_node, "outputs", ()))
    return tuple(paths)


def _removed_buffers() -> frozenset[str]:
    """Buffers Inductor's dead-code elimination removed (none outside a graph's compilation)."""
    from .._torch_compat import V

    try:
        return frozenset(V.graph.removed_buffers)
    except Exception:  # no graph being compiled: every output counts as kept
        return frozenset()


def _call_of(ir_node: Any) -> tuple[Any, list[_TensorSpec], Callable[[list[Any]], Any], Any]:
    """(op, input specs, a function from input tensors to the op's result, out spec or None)."""
    import torch

    from .._torch_compat import ExternKernelAlloc, ExternKernelOut, FallbackKernel

    op = getattr(ir_node, "op_overload", None)
    if not isinstance(op, torch._ops.OpOverload) or op.namespace not in _MEASURED_NAMESPACES:
        raise _NotMeasurable(f"op {op!r}")
    specs = [_tensor_spec(x) for x in ir_node.inputs]
    constants = [_concrete(c) for c in ir_node.constant_args]
    kwargs = _concrete(dict(ir_node.kwargs))
    if isinstance(ir_node, FallbackKernel):
        unflatten = ir_node.unflatten_args

        def call(tensors: list[Any]) -> Any:
            args, own_kwargs = unflatten(tensors, constants)
            return op(*args, **{**kwargs, **_concrete(own_kwargs)})

        return op, specs, call, None
    if isinstance(ir_node, ExternKernelOut):
        out_spec = _tensor_spec(ir_node)

        def call_out(tensors: list[Any]) -> Any:
            # The output buffer is the last tensor, made before the profiled window.
            *inputs, out = tensors
            return op(*inputs, *constants, **kwargs, out=out)

        return op, specs, call_out, out_spec
    if isinstance(ir_node, ExternKernelAlloc):
        return op, specs, lambda tensors: op(*tensors, *constants, **kwargs), None
    raise _NotMeasurable(f"node kind {type(ir_node).__name__}")


def _result_at(result: Any, path: tuple[int, ...]) -> Any:
    for index in path:
        result = result[index]
    return result


def _kept_bytes(result: Any, paths: tuple[tuple[int, ...], ...] | None, before: set[int]) -> int:
    """Bytes of the kept outputs the call allocated (outputs that alias an input are not)."""
    import torch

    kept = [result] if paths is None else [_result_at(result, p) for p in paths]
    total = 0
    for tensor in kept:
        if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in before:
            # numel * element size: what the buffer model charges for the output
            total += tensor.numel() * tensor.element_size()
    return total


def _peak_above_start(prof: Any) -> int:
    """Max running sum of the profiler's allocator events in time order."""
    from ..measure import memory_events_of, peak_from_events

    return peak_from_events(memory_events_of(prof))


@contextmanager
def _eager_quiet(device: Any = None) -> Iterator[None]:
    """Real tensors, no autograd or autocast, the RNG state restored (random ops; on a CUDA
    `device`, its generator too), no warnings: running a kernel at compile time leaves no
    trace."""
    import torch
    from torch.utils._python_dispatch import _disable_current_modes

    cuda = device is not None and device.type == "cuda"
    with (
        warnings.catch_warnings(),
        _disable_current_modes(),
        torch.no_grad(),
        torch.autocast("cpu", enabled=False),
        torch.autocast("cuda", enabled=False) if cuda else contextlib.nullcontext(),
        torch.random.fork_rng(devices=[device] if cuda else []),
    ):
        warnings.simplefilter("ignore")
        yield


@contextmanager
def _allocation_peak(device: Any) -> Iterator[list[int]]:
    """The peak bytes allocated above the start of the `with` block, in the list yielded (filled
    on exit): kineto's events on the CPU, the caching allocator's trace on CUDA."""
    from ..measure import cpu_memory_profile, cuda_allocation_trace, trace_peak_bytes

    peak: list[int] = []
    if device.type == "cuda":
        with cuda_allocation_trace(device) as entries:
            yield peak
        peak.append(trace_peak_bytes(entries, after_leading_frees=False))
        return
    with cpu_memory_profile() as prof:
        yield peak
    peak.append(_peak_above_start(prof))


def _measuring_blocked(device: Any) -> str | None:
    """Why kernels cannot be measured on `device` now (None: they can): a CPU profiler already
    running (kineto does not nest, and the runs would show in the user's profile), or the
    CUDA allocator's history already recorded (the user's trace is theirs)."""
    import torch

    from ..measure import cuda_trace_available

    if torch._C._autograd._profiler_enabled():
        return "a profiler is running"
    if device.type == "cuda" and not cuda_trace_available():
        return "the CUDA allocator's history is being recorded"
    return None


def _measure(
    call: Callable[[list[Any]], Any],
    specs: Sequence[_TensorSpec],
    paths: tuple[tuple[int, ...], ...] | None,
    key: _MeasureKey,
) -> KernelMeasurement:
    device = _device_of(specs)
    with _eager_quiet(device):
        tensors = [_make_tensor(spec) for spec in specs]
        before = {t.untyped_storage().data_ptr() for t in tensors}
        # warm-up: one-time allocations (caches, lazy init, cuDNN's choice) are not workspace
        call(tensors)
        with _allocation_peak(device) as peak:
            result = call(tensors)
        kept = _kept_bytes(result, paths, before)
        del result
        # outside the profiler: it slows kernels
        seconds = fastest_call(lambda: call(tensors), device=device)
    return KernelMeasurement(max(0, peak[0] - kept), seconds, key)


def measured_kernel(ir_node: Any) -> KernelMeasurement | None:
    """Workspace and run time of a CPU or CUDA extern kernel, measured by running it; None
    where we cannot.

    Not measured: symbolic sizes or arguments, inputs on other devices, ops outside aten (their
    side effects are unknown), inputs over `MAX_MEASURED_BYTES` (on CUDA, also over a quarter
    of the free memory), a profiler already running or the CUDA allocator's history already
    recorded (`_measuring_blocked`), and any exception from the op.
    """
    import torch

    try:
        op, specs, call, out_spec = _call_of(ir_node)
        if not specs:
            raise _NotMeasurable("no tensor inputs")
        blocked = _measuring_blocked(_device_of(specs))
        if blocked:
            raise _NotMeasurable(blocked)
        paths = _kept_output_paths(ir_node)
        key: _MeasureKey = (
            str(op),
            type(ir_node).__name__,
            tuple(specs),
            out_spec,
            repr(ir_node.constant_args),
            repr(sorted(ir_node.kwargs.items())),
            paths,
            torch.get_num_threads(),  # flash attention allocates a buffer per thread
        )
        all_specs = specs if out_spec is None else [*specs, out_spec]
        if _runners is not None:
            _runners[key] = (call, all_specs)
        table = kernel_times.current()
        if key in _measured_cache:
            measured = _measured_cache[key]
            if table is not None:  # measured in this process before the table was in use
                table.provisional(kernel_times.key_text(key), _as_time(measured))
            return measured
        stored = table.final(kernel_times.key_text(key)) if table is not None else None
        if stored is not None:  # timed once on this machine: never again
            _measured_cache[key] = _from_table(stored, key)
            return _measured_cache[key]
        if sum(_spec_bytes(s) for s in all_specs) > _measurable_bytes(_device_of(specs)):
            return None
    except Exception as exc:  # not measurable as it stands: the rules answer
        log.debug("kernel %s not measured: %s", getattr(ir_node, "get_name", str)(), exc)
        return None
    try:
        measured: KernelMeasurement | None = _measure(call, all_specs, paths, key)
    except Exception as exc:
        log.debug("%s: measuring failed: %s", op, exc)
        measured = None
    _measured_cache[key] = measured
    if table is not None:
        table.provisional(kernel_times.key_text(key), _as_time(measured))
    return measured


def _as_time(measured: KernelMeasurement | None) -> kernel_times.KernelTime:
    if measured is None:
        return kernel_times.KernelTime(None, None)
    return kernel_times.KernelTime(measured.seconds, measured.workspace_bytes)


def _from_table(stored: kernel_times.KernelTime, key: _MeasureKey) -> KernelMeasurement | None:
    if stored.seconds is None or stored.workspace_bytes is None:
        return None  # it could not be measured: the rules answer, as they did then
    return KernelMeasurement(stored.workspace_bytes, stored.seconds, key)


def _measurable_bytes(device: Any) -> int:
    """The most input bytes a kernel may be measured with: `MAX_MEASURED_BYTES`, and on CUDA
    a quarter of what the device can still give (the user's model is the one short of memory)."""
    if device.type != "cuda":
        return MAX_MEASURED_BYTES
    from ..timing import free_bytes

    return min(MAX_MEASURED_BYTES, (free_bytes(device) or 0) // 4)


def measured_workspace_bytes(ir_node: Any) -> int | None:
    """Workspace of an extern kernel (`measured_kernel`); None where it was not measured."""
    measured = measured_kernel(ir_node)
    return None if measured is None else measured.workspace_bytes


def extern_workspace_bytes(ir_node: Any, size_hint: SizeHint, measure: bool = True) -> int:
    """Bytes an extern kernel allocates internally during its call (0 when none is known).

    With `measure`, on the CPU or CUDA, the kernel is run once (cached per op, shapes, strides,
    dtypes, constant arguments and thread count) and its workspace measured; where that is not
    possible, and with `measure=False`, the rules answer (none on CUDA: 0).
    """
    if ir_node is None or getattr(ir_node, "op_overload", None) is None:
        return 0
    if measure:
        device = ir_node.get_device() if hasattr(ir_node, "get_device") else None
        if device is not None and device.type in _MEASURED_DEVICES:
            measured = measured_workspace_bytes(ir_node)
            if measured is not None:
                return measured
    return rule_workspace_bytes(ir_node, size_hint)
