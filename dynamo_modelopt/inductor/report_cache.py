"""Inductor's FX graph cache with our plan: a hit skips the scheduler, so our pass neither runs
nor reports; the reports (and what a forward's pass leaves its backward) are kept beside the
cache entry, under its key, and published again on a hit.

The plan is part of the cached code, and the pass's `uuid` (our options and our source) is part
of the key, so a hit runs the code our plan produced. Where no record was kept (it could not be
written or read), the graph is compiled again without the cache, as before this cache existed.
AOTAutograd's cache stays off: its hit loads the graphs without calling the inner compile this
wraps.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..report import GraphReport, add_report, recording_reports

log = logging.getLogger(__name__)


@functools.cache
def source_hash() -> str:
    """A hash of this package's source: a changed plan or report invalidates the cache."""
    root = Path(__file__).resolve().parent.parent
    hasher = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        hasher.update(str(path.relative_to(root)).encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def records_dir() -> Path:
    from .._torch_compat import cache_dir

    return Path(cache_dir()) / "modelopt" / "reports"


def _store(key: str, record: dict[str, Any]) -> None:
    folder = records_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{key}.{os.getpid()}.tmp"
        tmp.write_bytes(pickle.dumps(record))
        tmp.replace(folder / f"{key}.pkl")  # atomic: a reader never sees half a file
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
        log.info("modelopt: could not keep the reports of cached graph %s: %s", key, exc)


def _load(key: str) -> dict[str, Any] | None:
    try:
        record = pickle.loads((records_dir() / f"{key}.pkl").read_bytes())
    except FileNotFoundError:
        return None
    except Exception as exc:  # another version's or a damaged record: compile again
        log.info("modelopt: ignoring the unreadable reports of cached graph %s: %s", key, exc)
        return None
    reports = record.get("reports") if isinstance(record, dict) else None
    if not isinstance(reports, list) or not all(isinstance(r, GraphReport) for r in reports):
        return None
    return record


def _pass_state(plan_pass: Any) -> dict[str, Any]:
    """What a forward's pass leaves for its backward's (`PlanOrderPass`)."""
    names = ("saved_input_views", "saved", "held")
    return {name: getattr(plan_pass, name) for name in names if hasattr(plan_pass, name)}


@contextmanager
def _hits() -> Iterator[list[int]]:
    """How many FX graph cache hits happened inside, in the list yielded (filled on exit)."""
    from .._torch_compat import counters

    before = counters["inductor"]["fxgraph_cache_hit"]
    found: list[int] = []
    try:
        yield found
    finally:
        found.append(counters["inductor"]["fxgraph_cache_hit"] - before)


def with_report_cache(inner_compile: Callable[..., Any]) -> Callable[..., Any]:
    """`inner_compile` that keeps our reports beside each FX graph cache entry it writes and
    publishes them again where it reads one."""

    @functools.wraps(inner_compile)
    def compile_inner(gm: Any, example_inputs: Any, **kwargs: Any) -> Any:
        from .._torch_compat import inductor_config

        plan_pass = inductor_config._post_fusion_custom_pass
        with recording_reports() as made, _hits() as hits:
            compiled = inner_compile(gm, example_inputs, **kwargs)
        key = getattr(compiled, "_fx_graph_cache_key", None)
        if key is None:  # not cached (bypassed, or the cache is off)
            return compiled
        if not hits[0]:  # a miss: our pass ran and reported
            _store(key, {"reports": made, "pass_state": _pass_state(plan_pass)})
            return compiled
        record = _load(key)
        if record is None:
            with inductor_config.patch(fx_graph_cache=False):
                return inner_compile(gm, example_inputs, **kwargs)
        for name, value in record.get("pass_state", {}).items():
            setattr(plan_pass, name, value)
        for report in record["reports"]:
            report.details["from_fx_graph_cache"] = True
            add_report(report)
        return compiled

    return compile_inner
