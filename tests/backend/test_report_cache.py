"""A second process compiling the same model hits Inductor's FX graph cache, as plain Inductor
would, and publishes the same reports: the same plan, kept beside the cache entry."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from .processes import run_script

SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    import dynamo_modelopt
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 4),
    )
    options = {"settings": "default", "timing_rounds": 0, "strict": True}
    compiled = torch.compile(model, backend="modelopt", options=options)
    compiled(torch.randn(8, 16)).sum().backward()
    reports = [
        {
            "kind": r.graph_kind,
            "planned_peak_bytes": r.planned_peak_bytes,
            "emitted_peak_bytes": r.emitted_peak_bytes,
            "planned_order": r.details["planned_order"],
            "node_buffers": r.details["node_buffers"],
            "from_cache": r.details.get("from_fx_graph_cache", False),
        }
        for r in dynamo_modelopt.get_reports()
    ]
    print(json.dumps({"counters": dict(counters["inductor"]), "reports": reports}))
    """
)


def _run(tmp_path: Path) -> dict:
    done = run_script(SCRIPT, tmp_path)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_hits_the_fx_graph_cache_with_the_same_reports(tmp_path: Path) -> None:
    first, second = _run(tmp_path), _run(tmp_path)
    assert first["counters"].get("fxgraph_cache_miss") == 2, first["counters"]
    assert second["counters"].get("fxgraph_cache_hit") == 2, second["counters"]
    assert "fxgraph_cache_miss" not in second["counters"]
    assert [r["kind"] for r in first["reports"]] == ["forward", "backward"]
    assert not any(r.pop("from_cache") for r in first["reports"])
    assert all(r.pop("from_cache") for r in second["reports"])
    assert second["reports"] == first["reports"]
