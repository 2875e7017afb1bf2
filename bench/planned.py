"""Planned figures at full size without computing anything: compile on fake tensors.

The model and its inputs are made under `FakeTensorMode`, so they have shapes but no storage.
Dynamo traces a call as usual and hands its graph (with fake example inputs, as it always does)
to a capturing backend, which runs the modelopt backend on it to get its plan and reports,
then discards the compiled code and lets the graph run eagerly on the fake tensors. With
`force_non_lazy_backward_lowering` AOTAutograd compiles the backward graph right away instead
of inside the first `loss.backward()`, so the backward's plan is made too. Inductor still
generates (and compiles) its CPU code, which is most of the time spent.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

from bench.measure import describe_error, load_modelopt, no_compile_caches
from bench.models import FULL, ModelSpec, Scale, make_inputs, wrap_for_mode

GraphCompiler = Callable[[torch.fx.GraphModule, Sequence[Any]], Any]


@dataclass
class PlannedResult:
    reports: list[Any] = field(default_factory=list)
    compile_seconds: float | None = None
    error: str | None = None


def capturing_backend(compile_graph: GraphCompiler) -> Callable[..., Any]:
    """A dynamo backend that compiles each graph with `compile_graph`, then runs it eagerly."""

    def backend(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
        with torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
            compile_graph(gm, example_inputs)
        return gm.forward

    return backend


def modelopt_graph_compiler(options: dict[str, Any]) -> GraphCompiler:
    modelopt = load_modelopt()

    def compile_graph(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
        return modelopt.modelopt_backend(gm, example_inputs, options=dict(options))

    return compile_graph


def to_fake(module: nn.Module, fake_mode: FakeTensorMode) -> nn.Module:
    """Replace every parameter and buffer of `module` with a fake tensor of its shape."""
    for submodule in module.modules():
        for name, parameter in list(submodule.named_parameters(recurse=False)):
            fake = nn.Parameter(fake_mode.from_tensor(parameter), parameter.requires_grad)
            setattr(submodule, name, fake)
        for name, buffer in list(submodule.named_buffers(recurse=False)):
            submodule._buffers[name] = fake_mode.from_tensor(buffer)
    return module


def build_fake_model(spec: ModelSpec, scale: Scale, fake_mode: FakeTensorMode) -> nn.Module:
    """`spec`'s model with fake weights: built under the fake mode, or for real and converted
    when its initialisation reads values (vit_b_16's init calls .item())."""
    try:
        with fake_mode:
            return spec.build(scale)
    except DataDependentOutputException:
        return to_fake(spec.build(scale), fake_mode)


def compile_on_fake_tensors(
    spec: ModelSpec,
    mode: str,
    batch: int,
    compile_graph: GraphCompiler,
    scale: Scale = FULL,
) -> float:
    """Trace one step of `spec` on fake tensors through `compile_graph`; returns seconds."""
    torch._dynamo.reset()
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    torch.manual_seed(0)
    module = wrap_for_mode(spec, build_fake_model(spec, scale, fake_mode), mode)
    with fake_mode:
        inputs = make_inputs(spec, scale, mode, batch)
    compiled = torch.compile(module, backend=capturing_backend(compile_graph))
    begin = time.perf_counter()
    if mode == "train":
        compiled(*inputs).backward()
    else:
        with torch.no_grad():
            compiled(*inputs)
    return time.perf_counter() - begin


def plan_on_fake_tensors(
    spec: ModelSpec, mode: str, batch: int, options: dict[str, Any], scale: Scale = FULL
) -> PlannedResult:
    """The modelopt reports of one full-size step, made without running it."""
    result = PlannedResult()
    try:
        modelopt = load_modelopt()
        modelopt.clear_reports()
        compile_graph = modelopt_graph_compiler(options)
        # A cache hit would skip the backend's planning pass, and with it the reports.
        with no_compile_caches():
            result.compile_seconds = compile_on_fake_tensors(
                spec, mode, batch, compile_graph, scale
            )
        result.reports = modelopt.get_reports()
    except Exception as error:  # reported in the row; the run goes on
        result.error = describe_error(error)
    finally:
        torch._dynamo.reset()
        gc.collect()
    return result
