"""Measured figures: compile a model with one backend, warm up, then time and profile steps.

CPU peaks come from the kineto allocator events (`dynamo_modelopt.measure`); CUDA peaks from CUDA's
counters. Both are the step's peak above the memory resting before the step. Compilation
happens in the warm-up step, outside the profiled window; its wall time (including that first
step) is the reported compile time.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dynamo_modelopt.measure import cuda_peak, kineto_timeline, peak_from_timeline

BACKENDS = ("eager", "inductor", "modelopt")


@dataclass
class BackendResult:
    """What one backend did on one (model, mode, batch); error is set instead on failure."""

    backend: str
    peak_bytes: int | None = None
    reserved_bytes: int | None = None  # CUDA only: max_memory_reserved during the step
    step_ms: float | None = None
    compile_seconds: float | None = None
    # modelopt: compile and first step again after a Dynamo reset, where the choice of settings
    # comes from the decision cache (`dynamo_modelopt/decision_cache.py`): the next run's cost
    recompile_seconds: float | None = None
    timeline: list[tuple[int, int]] = field(default_factory=list)
    reports: list[Any] = field(default_factory=list)
    notes: str = ""
    error: str | None = None


@dataclass(frozen=True)
class MeasureSettings:
    device: torch.device
    repeats: int = 3
    sgd: bool = False
    modelopt_options: dict[str, Any] = field(default_factory=dict)
    recompile: bool = True  # modelopt: also time a compile after a Dynamo reset


def describe_error(error: BaseException) -> str:
    """Exception type, message and the innermost frame, on one line."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    message = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {message}{where}"


def load_modelopt() -> Any:
    """The dynamo_modelopt package; raises ImportError when it is not usable yet."""
    import dynamo_modelopt

    return dynamo_modelopt


def compile_for(module: nn.Module, backend: str, modelopt_options: dict[str, Any]) -> nn.Module:
    """`module` as `backend` runs it: plain, under Inductor, or under modelopt."""
    if backend == "eager":
        return module
    if backend == "inductor":
        return torch.compile(module, backend="inductor")
    if backend == "modelopt":
        load_modelopt()  # registers the backend even without the entry point installed
        return torch.compile(module, backend="modelopt", options=dict(modelopt_options))
    raise ValueError(f"unknown backend {backend!r}; known: {BACKENDS}")


def drop_grads(module: nn.Module) -> None:
    # The profiler cannot see frees of memory allocated before it started, so old gradients
    # must not be freed (replaced) inside the profiled step.
    for parameter in module.parameters():
        parameter.grad = None


def make_step(
    compiled: Callable[..., Any],
    inputs: Sequence[torch.Tensor],
    mode: str,
    optimizer: torch.optim.Optimizer | None,
) -> Callable[[], None]:
    """One training step (loss, backward, optional SGD step) or one no-grad inference call."""
    if mode == "train":

        def train_step() -> None:
            loss = compiled(*inputs)
            loss.backward()
            if optimizer is not None:
                optimizer.step()

        return train_step

    def infer_step() -> None:
        with torch.no_grad():
            compiled(*inputs)

    return infer_step


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step_ms(step: Callable[[], None], module: nn.Module, device: torch.device) -> float:
    """Wall time of one step in ms: CUDA events on a GPU, perf_counter on CPU."""
    drop_grads(module)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    begin = time.perf_counter()
    step()
    return (time.perf_counter() - begin) * 1e3


def measure_backend(
    backend: str,
    module: nn.Module,
    inputs: Sequence[torch.Tensor],
    mode: str,
    settings: MeasureSettings,
) -> BackendResult:
    """Compile, warm up, profile one step and time a few; any exception becomes `error`."""
    result = BackendResult(backend)
    torch._dynamo.reset()
    try:
        with no_compile_caches():
            _measure_into(result, backend, module, inputs, mode, settings)
    except Exception as error:  # one backend failing must not stop the others
        result.error = describe_error(error)
    finally:
        drop_grads(module)
        torch._dynamo.reset()
        gc.collect()
    return result


@contextlib.contextmanager
def no_compile_caches() -> Iterator[None]:
    # modelopt turns Inductor's caches off (a hit would skip its pass); Inductor gets the same,
    # so both compile times are cold compiles and comparable.
    with (
        torch._inductor.config.patch(fx_graph_cache=False),
        torch._functorch.config.patch(enable_autograd_cache=False),
    ):
        yield


def _measure_into(
    result: BackendResult,
    backend: str,
    module: nn.Module,
    inputs: Sequence[torch.Tensor],
    mode: str,
    settings: MeasureSettings,
) -> None:
    """Fill `result` in place, so figures measured before an exception are kept."""
    modelopt = load_modelopt() if backend == "modelopt" else None
    if modelopt is not None:
        modelopt.clear_reports()
    compiled = compile_for(module, backend, settings.modelopt_options)
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3) if settings.sgd else None
    step = make_step(compiled, inputs, mode, optimizer)

    # compiles (the forward, and the backward lazily inside loss.backward())
    result.compile_seconds = _first_step_seconds(step, module, settings.device)
    if modelopt is not None:
        result.reports = modelopt.get_reports()

    drop_grads(module)
    _measure_peak(result, step, settings.device)
    timings = [time_step_ms(step, module, settings.device) for _ in range(settings.repeats)]
    result.step_ms = statistics.median(timings)
    if modelopt is not None and settings.recompile:
        try:
            result.recompile_seconds = _recompile_seconds(module, inputs, mode, settings)
        except Exception as error:  # the figures above stand without it
            result.notes = f"modelopt recompile failed: {describe_error(error)}"


def _recompile_seconds(
    module: nn.Module, inputs: Sequence[torch.Tensor], mode: str, settings: MeasureSettings
) -> float:
    """Wall time of compiling `module` under modelopt again, first step included, as a later
    run of the same script would (its choice of settings read from the decision cache)."""
    torch._dynamo.reset()
    step = make_step(compile_for(module, "modelopt", settings.modelopt_options), inputs, mode, None)
    seconds = _first_step_seconds(step, module, settings.device)
    drop_grads(module)
    torch._dynamo.reset()
    return seconds


def _first_step_seconds(step: Callable[[], None], module: nn.Module, device: torch.device) -> float:
    """Wall time of a freshly compiled step's first call: the compile, and the step."""
    drop_grads(module)
    begin = time.perf_counter()
    step()
    _synchronize(device)
    return time.perf_counter() - begin


def _measure_peak(result: BackendResult, step: Callable[[], None], device: torch.device) -> None:
    if device.type == "cuda":
        peak = cuda_peak(step, device)
        result.peak_bytes = peak.peak_above_start_bytes
        result.reserved_bytes = peak.max_reserved_bytes
        result.notes = (
            f"{result.backend}: max_allocated {peak.max_allocated_bytes / 2**20:.1f} MiB, "
            f"max_reserved {peak.max_reserved_bytes / 2**20:.1f} MiB"
        )
        return
    result.timeline = kineto_timeline(step)
    result.peak_bytes = max(0, peak_from_timeline(result.timeline))
