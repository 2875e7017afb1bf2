"""Every backend test starts from a fresh Dynamo cache, an empty report list, no warning said
yet, no plan or kernel time remembered, an empty decision cache and no FX graph cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch._dynamo
import torch._inductor.config

import dynamo_modelopt
from dynamo_modelopt import report


@pytest.fixture(autouse=True)
def _fresh_dynamo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    # no plan or kernel time kept from another test (some patch the solver or the timer)
    dynamo_modelopt.clear_caches()
    # what warns once per process warns again in each test
    monkeypatch.setattr(report, "_warned", set())
    # each test searches afresh: no decision stored by another test (or run) is reused
    monkeypatch.setenv("MODELOPT_CACHE_DIR", str(tmp_path / "decisions"))
    # no FX graph cache hits across tests (some change our pass and not its key); the cache
    # is tested across processes (`test_report_cache.py`)
    with torch._inductor.config.patch(fx_graph_cache=False):
        yield
