"""Peak memory of one call, from the profiler's allocator events (CPU) or CUDA's counters.

The kineto profiler records one "[memory]" event per allocation (positive bytes) and per
free (negative bytes). The memory timeline is the prefix sum of those events in time order;
the peak is its maximum, counted from 0 at the start of the profiled window. Only memory
allocated or freed inside the window is seen, so callers should drop tensors made before the
window that the call would free (e.g. set `p.grad = None`), and warm up (compile) first.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

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


def profile_memory_events(fn: Callable[[], Any]) -> list[MemoryEvent]:
    """Run `fn()` once under the CPU profiler with memory tracking; return its memory events."""
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
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


def cuda_peak(fn: Callable[[], Any], device: torch.device | str = "cuda") -> CudaPeak:
    """Run `fn()` once with CUDA's peak counters reset before it.

    The caching allocator's cache is emptied first, so the reserved peak is this call's own and
    not what earlier calls (another backend, the compile) left reserved."""
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    start_bytes = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    max_allocated = torch.cuda.max_memory_allocated(device)
    return CudaPeak(
        peak_above_start_bytes=max_allocated - start_bytes,
        max_allocated_bytes=max_allocated,
        max_reserved_bytes=torch.cuda.max_memory_reserved(device),
    )


def step_peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """Peak bytes of one call of a training step above the level at its start: CUDA's
    allocated peak (`cuda_peak`), or on CPU kineto's after the step's leading frees (the
    previous step's gradients let go)."""
    if torch.device(device).type == "cuda":
        return cuda_peak(fn, device).peak_above_start_bytes
    return kineto_peak_bytes(fn, after_leading_frees=True)
