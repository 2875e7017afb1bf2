"""The kineto peak and timeline against allocation patterns whose peak is known exactly."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynamo_modelopt.measure import (
    MemoryEvent,
    kineto_peak_bytes,
    kineto_timeline,
    peak_from_events,
    peak_from_timeline,
    timeline_from_events,
    trace_peak_bytes,
)


def _bytes(size: int) -> torch.Tensor:
    return torch.empty(size, dtype=torch.uint8)


def allocate_and_free() -> None:
    first = _bytes(1000)
    second = _bytes(4096)
    del first
    third = _bytes(2000)  # live: 4096 + 2000 = 6096, the peak
    del second, third
    fourth = _bytes(3000)  # below the peak
    del fourth


def test_kineto_peak_is_exact_for_a_known_pattern() -> None:
    assert kineto_peak_bytes(allocate_and_free) == 6096


def test_kineto_peak_counts_what_stays_allocated() -> None:
    kept: list[torch.Tensor] = []

    def keep_some() -> None:
        kept.append(_bytes(5000))
        scratch = _bytes(700)
        del scratch

    assert kineto_peak_bytes(keep_some) == 5700


FREE_BEFORE_WINDOW = """
import torch
from dynamo_modelopt.measure import kineto_peak_bytes
older = [torch.empty(1 << 20, dtype=torch.uint8)]
def free_older_then_allocate():
    older.clear()
    scratch = torch.empty(1000, dtype=torch.uint8)
    del scratch
print(kineto_peak_bytes(free_older_then_allocate))
"""


def test_kineto_does_not_see_frees_of_memory_from_before_the_window() -> None:
    """A free of a block never seen allocated under the profiler is invisible: why the bench
    drops old gradients first. Run in a fresh process: the profiler remembers blocks it saw
    allocated in earlier windows of this one (at addresses the allocator may hand out again)."""
    run = subprocess.run(
        [sys.executable, "-c", FREE_BEFORE_WINDOW], capture_output=True, text=True, check=True
    )
    assert run.stdout.split()[-1] == "1000", run.stderr[-2000:]


def test_leading_frees_can_be_left_out() -> None:
    """A block the profiler saw allocated in an earlier window is reported when freed: a step
    that starts by dropping it would look smaller unless counted after its leading frees."""
    older: list[torch.Tensor] = []
    kineto_peak_bytes(lambda: older.append(_bytes(1 << 20)))

    def free_older_then_allocate() -> None:
        older.clear()
        scratch = _bytes(1000)
        del scratch

    assert kineto_peak_bytes(free_older_then_allocate, after_leading_frees=True) == 1000


def test_kineto_timeline_starts_at_zero_time_and_returns_to_zero() -> None:
    timeline = kineto_timeline(allocate_and_free)
    assert timeline[0] == (0, 1000)
    assert [live for _, live in timeline] == [1000, 5096, 4096, 6096, 2000, 0, 3000, 0]
    times = [time_ns for time_ns, _ in timeline]
    assert times == sorted(times)


def test_timeline_sorts_by_time_and_sums_prefixes() -> None:
    events = [MemoryEvent(30, -100), MemoryEvent(10, 100), MemoryEvent(20, 50)]
    assert timeline_from_events(events) == [(10, 100), (20, 150), (30, 50)]


def test_equal_times_keep_their_recorded_order() -> None:
    events = [MemoryEvent(5, 10), MemoryEvent(5, -10), MemoryEvent(5, 7)]
    assert timeline_from_events(events) == [(5, 10), (5, 0), (5, 7)]


def test_peak_of_synthetic_events() -> None:
    events = [MemoryEvent(1, 64), MemoryEvent(2, 32), MemoryEvent(3, -64), MemoryEvent(4, 100)]
    assert peak_from_events(events) == 132


def test_peak_never_below_zero() -> None:
    assert peak_from_events([]) == 0
    assert peak_from_events([MemoryEvent(1, -500), MemoryEvent(2, 200)]) == 0
    assert peak_from_timeline([]) == 0


# CUDA allocator traces (`trace_peak_bytes`): a real one from an H100, and small made-up ones.

_TRACE_FILE = Path(__file__).parent / "data" / "cuda_trace_gpt2_step.json"


def _entry(action: str, addr: int, size: int) -> dict[str, object]:
    return {"action": action, "addr": addr, "size": size}


def test_a_cuda_step_trace_counted_after_its_leading_frees_adds_back_the_old_gradients() -> None:
    """The recorded steps begin by dropping the last step's gradients: counted from the start,
    their frees lower the peak by the model's parameter bytes, which the predictions never
    count (measured on the H100: counters 0.38 MiB, prediction 0.75 MiB)."""
    from tests.backend.models import make_case

    entries = [_entry(*row) for row in json.loads(_TRACE_FILE.read_text())["entries"]]
    model, _ = make_case("gpt2")
    gradient_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    from_start = trace_peak_bytes(entries, after_leading_frees=False)
    after_frees = trace_peak_bytes(entries, after_leading_frees=True)
    assert after_frees - from_start == gradient_bytes


_MADE_UP_TRACES = {
    # peak 100 + 300 = 400; after a free, 350 stays below it; the cache handing a segment back
    # is not an allocation
    "known_pattern": (
        [("alloc", 1, 100), ("alloc", 2, 300), ("free_requested", 1, 100),
         ("free_completed", 1, 100), ("alloc", 3, 50), ("segment_free", 9, 1 << 20)],
        400,
        400,
    ),
    # a block whose free was requested before the first allocation but completed after it (a
    # stream still used it) belongs to the leading frees
    "leading_free_completed_late": (
        [("free_requested", 7, 1000), ("alloc", 1, 200), ("free_completed", 7, 1000),
         ("alloc", 2, 300)],
        500,
        200,
    ),
    # an address freed at the start and handed out again counts when freed later
    "leading_address_reused": (
        [("free_requested", 7, 1000), ("free_completed", 7, 1000), ("alloc", 7, 1000),
         ("free_requested", 7, 1000), ("free_completed", 7, 1000), ("alloc", 8, 600),
         ("alloc", 9, 300)],
        1000,
        0,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(_MADE_UP_TRACES))
def test_trace_peak_of_made_up_traces(name: str) -> None:
    rows, after_frees, from_start = _MADE_UP_TRACES[name]
    entries = [_entry(*row) for row in rows]
    assert trace_peak_bytes(entries, after_leading_frees=True) == after_frees
    assert trace_peak_bytes(entries, after_leading_frees=False) == from_start
