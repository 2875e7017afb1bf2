"""Bounded process-wide memos, and the one call that empties them all.

Measured kernel and operator times are kept per process so that a graph compiled again, or a
candidate compared with another, does not time the same kernel twice. A long-lived process
compiling many shapes would grow such a memo without end, so each one forgets its least
recently used entries beyond a fixed size; `clear_caches()` empties them all.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

_all_caches: list[BoundedCache] = []


class BoundedCache(Generic[K, T]):
    """A mapping that keeps at most `maxsize` entries, dropping the least recently used."""

    def __init__(self, name: str, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be positive, got {maxsize}")
        self.name = name
        self.maxsize = maxsize
        self._entries: OrderedDict[K, T] = OrderedDict()
        self._lock = threading.Lock()  # compiles may run on several threads
        _all_caches.append(self)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __getitem__(self, key: K) -> T:
        with self._lock:
            value = self._entries[key]
            self._entries.move_to_end(key)
            return value

    def get(self, key: K, default: T | None = None) -> T | None:
        with self._lock:
            if key not in self._entries:
                return default
            self._entries.move_to_end(key)
            return self._entries[key]

    def __setitem__(self, key: K, value: T) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def cache_root() -> Path:
    """Where modelopt keeps what it remembers between processes (decisions, kernel times):
    `$MODELOPT_CACHE_DIR`, else `modelopt` under Inductor's cache directory."""
    given = os.environ.get("MODELOPT_CACHE_DIR")
    if given:
        return Path(given)
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir

    return Path(inductor_cache_dir()) / "modelopt"


def clear_caches() -> None:
    """Forget every measured kernel and operator time held in this process, and the solver
    licence check (the kernel times kept on disk stay: delete `cache_root()/kernel_times` to
    time again)."""
    from .capture.kernel_times import forget_tables
    from .planner.gurobi import license_limit

    for cache in _all_caches:
        cache.clear()
    forget_tables()
    license_limit.cache_clear()
