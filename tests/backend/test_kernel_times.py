"""Kernel times are measured once per machine and kept on disk (`capture/kernel_times.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dynamo_modelopt.capture import kernel_times, workspace
from dynamo_modelopt.capture.kernel_times import KernelTime, KernelTimeTable, using
from dynamo_modelopt.capture.workspace import keeping_kernels, measured_kernel, retime

from .test_workspace import _mm_seen


def _fresh_process() -> None:
    """What a new process knows: nothing measured, no table read."""
    workspace._measured_cache.clear()
    kernel_times.forget_tables()


def _no_timing(*args: object, **kwargs: object) -> float:
    raise AssertionError("a kernel with a final time on this machine was timed again")


def test_a_table_keeps_final_times_and_makes_provisional_ones_final_when_saved(
    tmp_path: Path,
) -> None:
    path = tmp_path / "times.json"
    table = KernelTimeTable(path)
    table.provisional("a", KernelTime(1.0, 64))
    table.provisional("b", KernelTime(2.0, 0))
    table.finalize("a", KernelTime(0.5, 64))  # retimed
    table.finalize("a", KernelTime(0.1, 64))  # final already: unchanged
    assert table.final("a") == KernelTime(0.5, 64) and table.final("b") is None
    table.provisional("a", KernelTime(9.0, 9))  # a final time is never replaced
    table.save()
    again = KernelTimeTable(path)
    assert again.final("a") == KernelTime(0.5, 64)
    assert again.final("b") == KernelTime(2.0, 0)  # provisional, never retimed: final as is


def test_what_another_process_saved_first_wins(tmp_path: Path) -> None:
    path = tmp_path / "times.json"
    ours, theirs = KernelTimeTable(path), KernelTimeTable(path)
    theirs.provisional("shared", KernelTime(1.0))
    theirs.save()
    ours.provisional("shared", KernelTime(3.0))
    ours.provisional("ours", KernelTime(4.0))
    ours.save()
    assert ours.final("shared") == KernelTime(1.0)
    read = KernelTimeTable(path)
    assert read.final("shared") == KernelTime(1.0) and read.final("ours") == KernelTime(4.0)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"format": kernel_times.FORMAT + 1, "entries": {"a": [1.0, 0]}}),
        json.dumps({"format": kernel_times.FORMAT, "entries": "x"}),
        json.dumps([1, 2]),
    ],
)
def test_an_unreadable_table_is_ignored(tmp_path: Path, text: str) -> None:
    path = tmp_path / "times.json"
    path.write_text(text)
    table = KernelTimeTable(path)
    assert table.final("a") is None
    table.provisional("a", KernelTime(1.0))
    table.save()  # and replaced by a readable one
    assert KernelTimeTable(path).final("a") == KernelTime(1.0)


def test_damaged_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "times.json"
    entries = {"good": [1.0, 8], "untimed": [None, None], "bad": ["x", 0], "short": [1.0]}
    path.write_text(json.dumps({"format": kernel_times.FORMAT, "entries": entries}))
    table = KernelTimeTable(path)
    assert table.final("good") == KernelTime(1.0, 8)
    assert table.final("untimed") == KernelTime(None, None)
    assert table.final("bad") is None and table.final("short") is None


def test_a_later_process_reads_a_kernels_time_instead_of_timing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELOPT_CACHE_DIR", str(tmp_path))
    _fresh_process()
    with using(True):
        first = measured_kernel(_mm_seen(64).node)
    assert first is not None
    assert kernel_times.table_path().is_file()  # saved when the outermost `using` ended
    _fresh_process()
    monkeypatch.setattr(workspace, "fastest_call", _no_timing)
    with using(True):
        again = measured_kernel(_mm_seen(64).node)
    assert again == first


def test_retime_makes_a_time_final_and_never_times_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELOPT_CACHE_DIR", str(tmp_path))
    _fresh_process()
    seen = _mm_seen(64)
    with using(True), keeping_kernels():
        first = measured_kernel(seen.node)
        assert first is not None
        retimed = retime([first.key], rounds=2)[first.key]
        # final now: the memo holds the retimed time, and retiming again runs nothing
        assert measured_kernel(seen.node).seconds == retimed  # type: ignore[union-attr]
        calls: list[int] = []
        call, specs = workspace._runners[first.key]  # type: ignore[index]
        workspace._runners[first.key] = (lambda t: calls.append(1) or call(t), specs)  # type: ignore[index]
        assert retime([first.key], rounds=2) == {first.key: retimed}
        assert not calls
    _fresh_process()
    with using(True):
        assert measured_kernel(seen.node).seconds == retimed  # type: ignore[union-attr]


def test_without_the_table_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELOPT_CACHE_DIR", str(tmp_path))
    _fresh_process()
    with using(False):
        assert kernel_times.current() is None
        assert measured_kernel(_mm_seen(32).node) is not None
    assert not (tmp_path / "kernel_times").exists()


def test_the_backend_keeps_the_times_of_what_it_compiled(tmp_path: Path) -> None:
    """The conftest points `MODELOPT_CACHE_DIR` at this test's own directory."""
    _fresh_process()
    model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    compiled = torch.compile(model, backend="modelopt")
    compiled(torch.randn(8, 32)).sum().backward()
    tables = list((tmp_path / "decisions" / "kernel_times").glob("*.json"))
    assert len(tables) == 1
    entries = json.loads(tables[0].read_text())["entries"]
    assert any("mm" in key for key in entries)
    _fresh_process()
    off = torch.compile(model, backend="modelopt", options={"kernel_time_cache": False})
    tables[0].unlink()
    torch._dynamo.reset()
    off(torch.randn(8, 32)).sum().backward()
    assert not tables[0].exists()
