"""Peak memory of one call, from the profiler's allocator events (CPU) or CUDA's counters.

The kineto profiler records one "[memory]" event per allocation (positive bytes) and per
free (negative bytes). The memory timeline is the prefix sum of those events in time order;
the peak is its maximum, counted from 0 at the start of the profiled window. Only memory
allocated or freed inside the window is seen, so callers should drop tensors made before the
window that the call would free (e.g. set `p.grad = None`), and warm up (compile) first.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

log = logging.getLogger(__name__)

MEMORY_EVENT_NAME = "[memory]"


@dataclass(frozen=True)
class MemoryEvent:
    """One allocator event: `delta_bytes` > 0 for an allocation, < 0 for a free."""

    time_ns: int
    delta_bytes: int


def timeline_from_events(events: Iterable[MemoryEvent]) -> list[tuple[int, int]]:
    """(time_ns, live bytes after the event) in time order; live bytes start at 0."""
    live_bytes = 0
    timeline: list[tuple[int, int]] = []
    # A stable sort keeps the recorded order of events with equal timestamps.
    for event in sorted(events, key=lambda e: e.time_ns):
        live_bytes += event.delta_bytes
        timeline.append((event.time_ns, live_bytes))
    return timeline


def peak_from_timeline(timeline: Iterable[tuple[int, int]]) -> int:
    """Highest live bytes of the timeline; 0 if nothing stayed allocated above the start."""
    return max((live for _, live in timeline), default=0)


def peak_from_events(events: Iterable[MemoryEvent]) -> int:
    """Max prefix sum of the deltas in time order, never below 0 (the level at the start)."""
    return max(0, peak_from_timeline(timeline_from_events(events)))


def memory_events_of(prof: profile) -> list[MemoryEvent]:
    """The allocator events kineto recorded in `prof`."""
    return [
        MemoryEvent(time_ns=event.start_ns(), delta_bytes=event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == MEMORY_EVENT_NAME
    ]


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null: kineto's C++ logging writes there directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextmanager
def cpu_memory_profile() -> Iterator[profile]:
    """The CPU profiler with memory tracking over the `with` block, started and stopped without
    kineto's lines on stderr (its "profiler_start"/"profiler_stop" and, on a machine without a
    GPU, "gpuGetDeviceCount failed"), which plain Inductor never prints; the block itself keeps
    stderr."""
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _stderr_silenced():
        prof.__enter__()
    try:
        yield prof
    finally:
        with _stderr_silenced():
            prof.__exit__(None, None, None)


def profile_memory_events(fn: Callable[[], Any]) -> list[MemoryEvent]:
    """Run `fn()` once under the CPU profiler with memory tracking; return its memory events."""
    gc.collect()
    with cpu_memory_profile() as prof:
        fn()
    return memory_events_of(prof)


def kineto_peak_bytes(fn: Callable[[], Any], after_leading_frees: bool = False) -> int:
    """Run `fn()` once under the profiler; peak bytes allocated above the level at its start.

    `after_leading_frees`: count from the level after the frees that come before the first
    allocation instead (a training step that starts by dropping the last step's gradients:
    the profiler reports those frees only when it saw the blocks allocated, in this process's
    earlier profiling, so the level at the start is not reliable).
    """
    events = sorted(profile_memory_events(fn), key=lambda e: e.time_ns)
    if after_leading_frees:
        first = next((i for i, e in enumerate(events) if e.delta_bytes > 0), len(events))
        events = events[first:]
    return peak_from_events(events)


def kineto_timeline(fn: Callable[[], Any]) -> list[tuple[int, int]]:
    """Run `fn()` once under the profiler; (ns since the first event, live bytes) pairs."""
    timeline = timeline_from_events(profile_memory_events(fn))
    if not timeline:
        return []
    start_ns = timeline[0][0]
    return [(time_ns - start_ns, live) for time_ns, live in timeline]


@dataclass(frozen=True)
class CudaPeak:
    """CUDA peak of one call: above the allocated level at its start, and absolute."""

    peak_above_start_bytes: int
    max_allocated_bytes: int
    max_reserved_bytes: int


def trace_peak_bytes(entries: Iterable[Mapping[str, Any]], after_leading_frees: bool) -> int:
    """Highest live bytes of a CUDA caching-allocator trace (the entries of
    `torch.cuda.memory._snapshot()["device_traces"][i]`), counted from 0 at its start.

    An "alloc" adds its size, a "free_completed" (the block is returned: CUDA's allocated
    counter drops then) subtracts it. `after_leading_frees`: count from the level after the
    frees requested before the first allocation instead (a training step that starts by
    dropping the last step's gradients), as `kineto_peak_bytes` does on the CPU.
    """
    live = peak = 0
    allocated_yet = False
    leading: set[int] = set()  # blocks freed before the first allocation
    for entry in entries:
        action, addr = entry["action"], entry["addr"]
        if action == "alloc":
            allocated_yet = True
            live += entry["size"]
            peak = max(peak, live)
        elif action == "free_requested" and not allocated_yet and after_leading_frees:
            leading.add(addr)
        elif action == "free_completed":
            if addr in leading:  # its address may be handed out again later
                leading.discard(addr)
            elif allocated_yet or not after_leading_frees:
                live -= entry["size"]
    return peak


def cuda_trace_available() -> bool:
    """Whether `cuda_allocation_trace` can record: the allocator's history API is there and
    nobody records it already (a user's trace is theirs; ours would need it cleared)."""
    is_enabled = getattr(torch._C, "_cuda_isHistoryEnabled", None)
    return is_enabled is not None and not is_enabled()


@contextmanager
def cuda_allocation_trace(device: torch.device | str = "cuda") -> Iterator[list[dict[str, Any]]]:
    """Record the caching allocator's trace of the `with` block (no stack traces); the list
    yielded is filled with the block's entries on exit. Check `cuda_trace_available()` first."""
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    entries: list[dict[str, Any]] = []
    torch.cuda.synchronize(device)  # what was queued before is not the block's
    torch.cuda.memory._record_memory_history(enabled="all", context=None, stacks="python")
    try:
        yield entries
        torch.cuda.synchronize(device)
        traces = torch.cuda.memory._snapshot(device)["device_traces"]
        entries.extend(traces[index] if index < len(traces) else [])
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)


def cuda_peak(
    fn: Callable[[], Any], device: torch.device | str = "cuda", after_leading_frees: bool = False
) -> CudaPeak:
    """Run `fn()` once with CUDA's peak counters reset before it.

    The caching allocator's cache is emptied first, so the reserved peak is this call's own and
    not what earlier calls (another backend, the compile) left reserved. `after_leading_frees`:
    the peak above the level after the frees that come before the call's first allocation,
    read from the allocator's trace (`trace_peak_bytes`: bytes as asked for, where the counters
    count blocks rounded up to 512 B); where no trace can be recorded, the counters' peak above
    the start."""
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    start_bytes = torch.cuda.memory_allocated(device)
    traced: int | None = None
    if after_leading_frees and cuda_trace_available():
        with cuda_allocation_trace(device) as entries:
            fn()
        traced = trace_peak_bytes(entries, after_leading_frees=True)
    else:
        if after_leading_frees:
            log.info("CUDA peak from the counters: the allocator's history is recorded already")
        fn()
    torch.cuda.synchronize(device)
    max_allocated = torch.cuda.max_memory_allocated(device)
    return CudaPeak(
        peak_above_start_bytes=max_allocated - start_bytes if traced is None else traced,
        max_allocated_bytes=max_allocated,
        max_reserved_bytes=torch.cuda.max_memory_reserved(device),
    )


def step_peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """Peak bytes of one call of a training step above the level after the step's leading
    frees (the previous step's gradients let go): from the allocator's trace on CUDA
    (`cuda_peak`), kineto's events on the CPU. The predictions count no gradients of an earlier
    step, so this is what they are compared with."""
    if torch.device(device).type == "cuda":
        return cuda_peak(fn, device, after_leading_frees=True).peak_above_start_bytes
    return kineto_peak_bytes(fn, after_leading_frees=True)
