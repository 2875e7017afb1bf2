"""Candidates compared without building their kernels: the same predictions as a build, a
stand-in that refuses to run, and the same choice in two fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from dynamo_modelopt.backend import compiler_for
from dynamo_modelopt.config import ModeloptConfig
from dynamo_modelopt.decide import candidates, compile_trial
from dynamo_modelopt.inductor import plan_only

from .models import make_case

ROOT = Path(__file__).resolve().parents[2]


def _dynamo_graph(case: str) -> tuple[torch.fx.GraphModule, list[torch.Tensor]]:
    """Dynamo's graph of the model's training step and its example inputs."""
    model, inputs = make_case(case)
    model.train()
    captured: list[tuple[torch.fx.GraphModule, list[torch.Tensor]]] = []

    def grab(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        captured.append((gm, list(example_inputs)))
        return gm.forward

    torch.compile(model, backend=grab)(*inputs)
    return captured[0]


@pytest.mark.parametrize("name", ["default", "no_layout_opt"])
def test_a_planned_candidate_predicts_what_its_build_does(name: str) -> None:
    """ConvBN in training: forward and backward planned only report the same plan and
    emitted peaks as the built candidate, and its stand-in refuses to run."""
    gm, inputs = _dynamo_graph("convbn")
    (candidate,) = [c for c in candidates(True, True, (0.5,)) if c.name == name]
    compile_with = compiler_for(ModeloptConfig(strict=True))
    planned = compile_trial(candidate, gm, inputs, compile_with, build=False)
    built = compile_trial(candidate, gm, inputs, compile_with, build=True)
    assert not planned.built and built.built
    assert [r.graph_kind for r in planned.reports] == ["forward", "backward"]

    def peaks(trial: Any) -> list[tuple[Any, ...]]:
        return [
            (r.graph_kind, r.planned_peak_bytes, r.emitted_peak_bytes, r.order_changed)
            for r in trial.reports
        ]

    assert peaks(planned) == peaks(built)
    assert planned.predicted_peak_bytes == built.predicted_peak_bytes > 0
    with pytest.raises(RuntimeError, match="planned only"):
        planned.compiled(*inputs)
    assert not plan_only.active()


def test_candidates_carry_what_they_do() -> None:
    found = {
        c.name: c
        for c in candidates(True, True, (0.5,), planned_saves=lambda: None, backward_layouts=True)
    }
    assert not found["default"].recomputes and not found["no_layout_opt"].recomputes
    assert found["budget_0.5"].recomputes and found["planned_saves"].recomputes
    assert found["planned_saves"].plans_saves_on == "default"
    assert found["no_layout_opt+planned_saves"].plans_saves_on == "no_layout_opt"
    assert found["bw_no_layout_opt+planned_saves"].plans_saves_on == "default"
    assert found["budget_0.5"].plans_saves_on is None


CHOICE_SCRIPT = """
import json, sys, torch
sys.path.insert(0, {root!r})
import dynamo_modelopt
from tests.backend.models import make_case
model, inputs = make_case("deep_mlp")
model.train()
options = {{"decision_cache": False, "measure_kernel_time": False}}
compiled = torch.compile(model, backend="modelopt", options=options)
compiled(*inputs).backward()
settings = dynamo_modelopt.get_reports()[0].details["settings"]
peaks = {{n: a["predicted_peak_bytes"] for n, a in settings["alternatives"].items()}}
print(json.dumps({{"chosen": settings["chosen"], "peaks": peaks}}))
"""


def test_two_fresh_processes_choose_the_same_settings(tmp_path: Path) -> None:
    """Same model, inputs and options, no decision cache: the same choice and predictions
    (deep_mlp has the defaults, an activation budget and the planner's saved set to choose
    from). Run times by FLOPs: with extern kernels timed (the default), two processes on a
    busy machine gave the planned saved set budgets on either side of zero (one process
    planned it, the other found nothing to recompute), so the timings are what can differ."""
    script = tmp_path / "choose.py"
    script.write_text(CHOICE_SCRIPT.format(root=str(ROOT)))
    env = {**os.environ, "MODELOPT_CACHE_DIR": str(tmp_path / "decisions")}
    runs = [
        subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert len(results[0]["peaks"]) > 1
    assert results[0] == results[1]
