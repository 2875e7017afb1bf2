"""Extern kernels' workspace, measured at compile time, matches kineto on the eager op (CPU).

Each case compiles a tiny module with plain Inductor and a scheduler pass that records the
extern kernel's IR node and its workspace (measured, and by the rules). The reference runs the
same op eagerly, on random tensors of the node's input sizes and strides, under kineto: its
peak above the start less the outputs the graph keeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch._dynamo
import torch.nn as nn
import torch.nn.functional as F
from torch._inductor.custom_graph_pass import CustomSchedulerPass

from dynamo_modelopt.capture import workspace
from dynamo_modelopt.capture.scheduler import _size_hint
from dynamo_modelopt.capture.workspace import (
    extern_workspace_bytes,
    keeping_kernels,
    measured_kernel,
    measured_workspace_bytes,
    retime,
    rule_workspace_bytes,
)
from dynamo_modelopt.measure import kineto_peak_bytes

aten = torch.ops.aten


@dataclass
class Seen:
    """One extern kernel as the scheduler pass saw it."""

    node: Any
    measured: int
    rule: int
    kept_outputs: int  # how many of its outputs the graph keeps (all, for one output)


class _Collect(CustomSchedulerPass):
    """Records extern kernels of `op`; measures inside the pass, where the graph is known."""

    def __init__(self, op: Any) -> None:
        self.op = op
        self.seen: list[Seen] = []

    def uuid(self) -> Any:
        return ("tests.test_workspace._Collect", str(self.op))

    def __call__(self, nodes: list[Any]) -> list[Any]:
        from torch._inductor.ir import MultiOutput
        from torch._inductor.virtualized import V

        for node in nodes:
            ir_node = getattr(node, "node", None)
            if getattr(ir_node, "op_overload", None) != self.op:
                continue
            outputs = [o for o in getattr(ir_node, "outputs", []) if isinstance(o, MultiOutput)]
            kept = sum(o.get_name() not in V.graph.removed_buffers for o in outputs)
            self.seen.append(
                Seen(
                    node=ir_node,
                    measured=extern_workspace_bytes(ir_node, _size_hint),
                    rule=extern_workspace_bytes(ir_node, _size_hint, measure=False),
                    kept_outputs=kept if outputs else 1,
                )
            )
        return nodes


def _compile_and_collect(op: Any, step: Callable[[Callable[..., Any]], None], model: Any) -> Seen:
    torch._dynamo.reset()
    collect = _Collect(op)
    with torch._inductor.config.patch(_post_fusion_custom_pass=collect, fx_graph_cache=False):
        step(torch.compile(model, backend="inductor"))
    assert collect.seen, f"no {op} among the extern kernels"
    return collect.seen[0]


def _random_inputs(ir_node: Any) -> list[torch.Tensor]:
    """Random tensors with the node's input sizes, strides and dtypes."""
    tensors = []
    for x in ir_node.inputs:
        size = [int(s) for s in x.get_size()]
        stride = [int(s) for s in x.get_stride()]
        tensors.append(torch.empty_strided(size, stride, dtype=x.get_dtype()).normal_())
    return tensors


def _eager_workspace(call: Callable[[], Any], kept: Callable[[Any], list[torch.Tensor]]) -> int:
    """Kineto's peak of `call()` above its start, less the bytes of the outputs kept."""
    call()  # warm-up, as the compiled code has run before any measured step
    results: list[Any] = []
    peak = kineto_peak_bytes(lambda: results.append(call()))
    return peak - sum(t.numel() * t.element_size() for t in kept(results[0]))


def _constant_args(ir_node: Any) -> tuple[list[Any], dict[str, Any]]:
    """The node's arguments with its tensors left as None (only the constants are read)."""
    return ir_node.unflatten_args([None] * len(ir_node.inputs), ir_node.constant_args)


def test_convolution_channels_last() -> None:
    model = nn.Conv2d(3, 8, 3, padding=1).to(memory_format=torch.channels_last).eval()
    x = torch.randn(4, 3, 16, 16).to(memory_format=torch.channels_last)

    def step(compiled: Callable[..., Any]) -> None:
        with torch.no_grad():
            compiled(x)

    seen = _compile_and_collect(aten.convolution.default, step, model)
    inputs = _random_inputs(seen.node)
    kw = seen.node.kwargs
    assert len(inputs) == 3  # input, weight, bias

    def call() -> torch.Tensor:
        return aten.convolution.default(
            *inputs,
            kw["stride"],
            kw["padding"],
            kw["dilation"],
            kw["transposed"],
            kw["output_padding"],
            kw["groups"],
        )

    with torch.no_grad():
        expected = _eager_workspace(call, lambda out: [out])
    assert seen.measured == expected
    # Outside the pass no graph answers size hints (`int` does: the sizes are static).
    # The rule: one copy of the weight (8x3x3x3 fp32); oneDNN's scratchpad is beyond it.
    assert seen.rule == rule_workspace_bytes(seen.node, int) == 8 * 3 * 3 * 3 * 4
    assert seen.measured > seen.rule


def test_convolution_backward() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1))
    x = torch.randn(2, 3, 12, 12)

    def step(compiled: Callable[..., Any]) -> None:
        compiled(x).sum().backward()

    # The second convolution's backward is the first one the backward graph runs.
    seen = _compile_and_collect(aten.convolution_backward.default, step, model)
    inputs = _random_inputs(seen.node)
    args, _ = _constant_args(seen.node)
    grad_output, saved_input, weight = inputs

    def call() -> tuple[torch.Tensor | None, ...]:
        return aten.convolution_backward.default(grad_output, saved_input, weight, *args[3:])

    def kept(out: tuple[torch.Tensor | None, ...]) -> list[torch.Tensor]:
        return [t for t in out if t is not None]

    expected = _eager_workspace(call, kept)
    assert seen.kept_outputs == len(kept(call()))
    assert seen.measured == expected
    assert seen.rule == rule_workspace_bytes(seen.node, int)


class _Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True) * 2


_flash = aten._scaled_dot_product_flash_attention_for_cpu.default


def _attention_seen() -> Seen:
    q, k, v = (torch.randn(2, 4, 96, 16) for _ in range(3))

    def step(compiled: Callable[..., Any]) -> None:
        with torch.no_grad():
            compiled(q, k, v)

    return _compile_and_collect(_flash, step, _Attention())


def test_flash_attention() -> None:
    seen = _attention_seen()
    query, key, value = _random_inputs(seen.node)
    args, kwargs = _constant_args(seen.node)

    def call() -> tuple[torch.Tensor, torch.Tensor]:
        return _flash(query, key, value, *args[3:], **kwargs)

    # Inference reads only the attention output: the row statistics (logsumexp) are dropped
    # right after the call, so they are part of the step's workspace.
    assert seen.kept_outputs == 1
    with torch.no_grad():
        expected = _eager_workspace(call, lambda out: [out[0]])
    assert seen.measured == expected
    assert seen.rule == rule_workspace_bytes(seen.node, int)


def test_flash_attention_workspace_follows_thread_count() -> None:
    seen = _attention_seen()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = measured_workspace_bytes(seen.node)
        torch.set_num_threads(2)
        two = measured_workspace_bytes(seen.node)
    finally:
        torch.set_num_threads(threads)
    assert one is not None and two is not None
    assert two > one  # a buffer per thread


def test_rules_answer_where_measuring_is_not_possible() -> None:
    seen = _attention_seen()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        # kineto does not nest: no measurement while a profiler runs
        assert measured_workspace_bytes(seen.node) is None
        assert extern_workspace_bytes(seen.node, int) == seen.rule
    assert extern_workspace_bytes(None, int) == 0


@pytest.mark.parametrize("measure", [True, False])
def test_mm_has_no_workspace(measure: bool) -> None:
    model = nn.Linear(32, 16, bias=False).eval()

    def step(compiled: Callable[..., Any]) -> None:
        with torch.no_grad():
            compiled(torch.randn(8, 32))

    seen = _compile_and_collect(aten.mm.out, step, model)
    assert extern_workspace_bytes(seen.node, int, measure=measure) == 0


def _mm_seen(size: int) -> Seen:
    model = nn.Linear(size, size, bias=False).eval()

    def step(compiled: Callable[..., Any]) -> None:
        with torch.no_grad():
            compiled(torch.randn(size, size))

    return _compile_and_collect(aten.mm.out, step, model)


def test_kernel_time_is_measured_with_the_workspace() -> None:
    small, large = measured_kernel(_mm_seen(8).node), measured_kernel(_mm_seen(512).node)
    assert small is not None and large is not None
    assert 0 < small.seconds < large.seconds  # 512**3 multiply-adds against 8**3
    assert small.key != large.key


def test_retime_runs_each_kernel_once_a_round_while_kernels_are_kept() -> None:
    seen = _mm_seen(64)
    first = measured_kernel(seen.node)
    assert first is not None
    # outside `keeping_kernels` nothing can run again: the first measurement stands
    assert retime([first.key]) == {first.key: first.seconds}
    calls: list[int] = []
    with keeping_kernels():
        assert measured_kernel(seen.node) == first  # cached, and now kept
        call, specs = workspace._runners[first.key]  # type: ignore[index]

        def slow_call(tensors: list[torch.Tensor]) -> torch.Tensor:
            calls.append(1)
            time.sleep(0.02)  # far above a 64**3 multiply: the rounds must not keep `first`
            return call(tensors)

        workspace._runners[first.key] = (slow_call, specs)  # type: ignore[index]
        times = retime([first.key, first.key], rounds=4)
    assert len(calls) == 4  # a repeated key runs once a round
    assert first.seconds < 0.02 <= times[first.key]  # the rounds replace the first measurement
    assert workspace._runners is None  # the kernels (and their IR nodes) are let go


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_cuda_attention_backward_workspace_is_measured() -> None:
    """On CUDA the workspace comes from the allocator's trace (no rules there): the efficient
    attention backward's equals what CUDA's counters show for the same call (blocks rounded
    to 512 B), and measuring does not reset the peak counters."""
    op = aten._scaled_dot_product_efficient_attention_backward.default
    q, k, v = (torch.randn(2, 4, 128, 16, device="cuda", requires_grad=True) for _ in range(3))

    def step(compiled: Callable[..., Any]) -> None:
        compiled(q, k, v).sum().backward()

    seen = _compile_and_collect(op, step, _Attention().cuda())
    assert seen.rule == 0
    assert seen.measured > 0

    inputs = []
    for x in seen.node.inputs:
        size = [int(s) for s in x.get_size()]
        stride = [int(s) for s in x.get_stride()]
        inputs.append(torch.empty_strided(size, stride, dtype=x.get_dtype(), device=x.get_device()))
        inputs[-1].zero_()
    args, kwargs = seen.node.unflatten_args(inputs, seen.node.constant_args)

    def call() -> Any:
        return op(*args, **{**seen.node.kwargs, **kwargs})

    call()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    out = call()
    torch.cuda.synchronize()
    counted = torch.cuda.max_memory_allocated() - start
    kept = sum(t.numel() * t.element_size() for t in out if isinstance(t, torch.Tensor))
    assert abs((counted - kept) - seen.measured) <= 512 * (len(out) + 1)

    level = torch.cuda.max_memory_allocated()
    workspace._measured_cache.clear()
    assert measured_workspace_bytes(seen.node) == seen.measured
    assert torch.cuda.max_memory_allocated() >= level  # not reset
