"""Trials built by hand, to test the choice between compile settings without compiling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dynamo_modelopt
from dynamo_modelopt.decide import Candidate, Trial


def make_trial(
    name: str,
    peak: int,
    runtime: float,
    fell_back: bool = False,
    compiled: Callable[..., Any] | None = None,
    runtime_model: str | None = None,
) -> Trial:
    """A trial whose one report predicts `peak` bytes and `runtime` seconds."""
    details: dict[str, Any] = {"estimated_runtime": runtime}
    if runtime_model is not None:
        details["runtime_model"] = runtime_model
    report = dynamo_modelopt.GraphReport(
        graph_kind="forward",
        num_nodes=1,
        inductor_peak_bytes=peak,
        planned_peak_bytes=peak,
        lower_bound_bytes=0,
        solver="x",
        status="fallback" if fell_back else "optimal",
        solve_seconds=0.0,
        emitted_peak_bytes=peak,
        details=details,
    )
    return Trial(Candidate(name), compiled=compiled or (lambda *a: None), reports=[report])
