"""Kernel times measured once per machine and kept on disk: one kernel, one time, everywhere.

On the CPU the choice between compile settings prices each extern kernel (convolution,
matmul, attention) by its measured time (`workspace.measured_kernel`), and the planned saved
set prices the operations it recomputes the same way (`runtime.measured_node_seconds`). A
measurement on a shared machine varies by a few percent from one run to the next, so a choice
whose candidates sat near the run-time budget went either way in two processes (a small MLP's
planned saved set: planned in one process, "nothing to recompute" in the other, code bef87e6).

So, as Inductor keeps its autotuning results, a kernel is timed once per machine:
- its first measurement in a process is provisional; `workspace.retime` times it again side by
  side with the other candidates' kernels and makes it final (a provisional time that is never
  retimed becomes final as it is when the compile ends);
- final times are never measured again: they are written to `kernel_times/<machine>.json`
  under the modelopt cache directory (`caches.cache_root`), and a later compile on the same
  machine, in this process or another, reads them instead of timing.
Every later compile then prices every kernel as the first one did, and the same graph, inputs
and options choose the same settings. The machine is the CPU model, core count and torch
version (a kernel's key holds its thread count and, on CUDA, the GPU's name). Off with
`options={"kernel_time_cache": False}`: times then live in this process only. Delete the
directory to time everything again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# bump when what an entry means changes, so old tables are not read
FORMAT = 1


@dataclass(frozen=True)
class KernelTime:
    """What one run of a kernel showed: seconds (None: it could not be timed) and, for extern
    kernels, the workspace it allocated (None: not measured)."""

    seconds: float | None
    workspace_bytes: int | None = None


def key_text(key: tuple[Any, ...]) -> str:
    """A measurement key as stable text: its parts' reprs (ops, sizes, strides, dtypes,
    devices, arguments, threads), with the GPU's name where it runs on one."""
    text = repr(key)
    if "type='cuda'" in text:
        import torch

        text += f" on {torch.cuda.get_device_name()}"
    return text


def machine() -> str:
    """What a table's times hold for: the CPU, its cores and the torch build."""
    import torch

    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = (line.split(":", 1)[1] for line in cpuinfo if line.startswith("model name"))
            model = next(names, model).strip()
    except OSError:
        pass
    return f"{platform.machine()} {model} cpus={os.cpu_count()} torch={torch.__version__}"


def table_path() -> Path:
    from ..caches import cache_root

    digest = hashlib.sha256(machine().encode()).hexdigest()[:16]
    return cache_root() / "kernel_times" / f"{digest}.json"


class KernelTimeTable:
    """The final times of this machine (read from disk once), and this process's provisional
    ones until they become final."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._final: dict[str, KernelTime] = _read(path)
        self._provisional: dict[str, KernelTime] = {}
        self._unsaved: set[str] = set()

    def final(self, key: str) -> KernelTime | None:
        with self._lock:
            return self._final.get(key)

    def is_final(self, key: str) -> bool:
        with self._lock:
            return key in self._final

    def provisional(self, key: str, measured: KernelTime) -> None:
        with self._lock:
            if key not in self._final:
                self._provisional[key] = measured

    def finalize(self, key: str, measured: KernelTime) -> None:
        """Make `measured` (a retimed kernel's) `key`'s final time, unless it has one."""
        with self._lock:
            if key in self._final:
                return
            self._provisional.pop(key, None)
            self._final[key] = measured
            self._unsaved.add(key)

    def save(self) -> None:
        """Make every provisional time final and write the new final times, merged with what
        another process wrote meanwhile (its entries win: they were final first). A failure
        only costs a later compile some timing."""
        with self._lock:
            for key, measured in self._provisional.items():
                self._final.setdefault(key, measured)
                self._unsaved.add(key)
            self._provisional.clear()
            if not self._unsaved:
                return
            merged = {key: self._final[key] for key in self._unsaved}
            merged.update(_read(self.path))
            self._final.update(merged)
            self._unsaved.clear()
        data = {
            "format": FORMAT,
            "machine": machine(),
            "entries": {k: [t.seconds, t.workspace_bytes] for k, t in sorted(merged.items())},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self.path)  # atomic: a reader never sees half a file
        except OSError as exc:
            log.info("modelopt: could not store kernel times: %s", exc)


def _read(path: Path) -> dict[str, KernelTime]:
    """The final times stored at `path`; none where it is absent, unreadable or of another
    format (damaged entries are skipped: the kernels are timed again)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.info("modelopt: ignoring the unreadable kernel times %s: %s", path, exc)
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    entries = data.get("entries")
    found: dict[str, KernelTime] = {}
    for key, value in entries.items() if isinstance(entries, dict) else ():
        if not (isinstance(value, list) and len(value) == 2):
            continue
        seconds, workspace = value
        if (seconds is None or isinstance(seconds, (int, float))) and (
            workspace is None or isinstance(workspace, int)
        ):
            found[key] = KernelTime(None if seconds is None else float(seconds), workspace)
    return found


# (table, enabled) of the compiles now running on this thread, innermost last
_state = threading.local()
_tables: dict[Path, KernelTimeTable] = {}
_tables_lock = threading.Lock()


def _stack() -> list[KernelTimeTable | None]:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


@contextmanager
def using(enabled: bool) -> Iterator[None]:
    """Within: measured kernel times go through this machine's table (`enabled`) or stay in
    this process (not). The outermost `using` saves the table as it ends, so a compile's
    provisional times are final once it returns."""
    table = None
    if enabled:
        path = table_path()
        with _tables_lock:
            table = _tables.get(path)
            if table is None:
                table = _tables[path] = KernelTimeTable(path)
    stack = _stack()
    stack.append(table)
    try:
        yield
    finally:
        stack.pop()
        if not stack and table is not None:
            table.save()


def current() -> KernelTimeTable | None:
    """The table measurements go through now; None outside `using(True)`."""
    stack = _stack()
    return stack[-1] if stack else None


def forget_tables() -> None:
    """Drop the tables read into this process (`clear_caches`); the files stay."""
    with _tables_lock:
        _tables.clear()
