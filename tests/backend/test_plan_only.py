"""Candidates compared without building their kernels: the same predictions as a build, a
stand-in that refuses to run, and the same choice in two fresh processes."""

from __future__ import annotations

import copy
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
    # the build planned nothing again: it emitted the plan the candidate was chosen on
    assert all(r.details["stats"].get("plan_reused") for r in built.reports)
    assert not any(r.details["stats"].get("plan_reused") for r in planned.reports)
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
from dynamo_modelopt.capture import runtime, workspace
from tests.backend.models import make_case

timed = []
def counting(call, *args, **kwargs):
    timed.append(1)
    return fastest_call(call, *args, **kwargs)
fastest_call = workspace.fastest_call
workspace.fastest_call = runtime.fastest_call = counting

model, inputs = make_case("deep_mlp")
model.train()
compiled = torch.compile(model, backend="modelopt", options={{"decision_cache": False}})
compiled(*inputs).backward()
settings = dynamo_modelopt.get_reports()[0].details["settings"]
alternatives = settings["alternatives"].items()
print(json.dumps({{
    "chosen": settings["chosen"],
    "peaks": {{n: a["predicted_peak_bytes"] for n, a in alternatives}},
    "runtimes": {{n: round(a["estimated_runtime"], 12) for n, a in alternatives}},
    "timed": len(timed),
}}))
"""


def test_two_fresh_processes_choose_the_same_settings(tmp_path: Path) -> None:
    """Same model, inputs and options, no decision cache, kernels timed (the default): the
    second process on the machine reads the first one's kernel times (`kernel_times.py`), times
    nothing, and makes the same choice on the same predictions (deep_mlp has the defaults, an
    activation budget and the planner's saved set to choose from). Before the times were
    kept, two processes on a busy machine gave the planned saved set budgets on either side
    of zero: one planned it, the other found nothing to recompute."""
    script = tmp_path / "choose.py"
    script.write_text(CHOICE_SCRIPT.format(root=str(ROOT)))
    env = {**os.environ, "MODELOPT_CACHE_DIR": str(tmp_path / "modelopt")}
    results = []
    for _ in range(2):  # one after the other: the second finds the first one's table
        run = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600
        )
        assert run.returncode == 0, run.stderr[-2000:]
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    first, second = results
    assert len(first["peaks"]) > 1
    assert first["timed"] > 0 and second["timed"] == 0
    assert first.pop("timed") is not None and second.pop("timed") == 0
    assert first == second
    assert list((tmp_path / "modelopt" / "kernel_times").glob("*.json"))


def test_a_backward_layout_twin_is_not_planned_where_nothing_differs() -> None:
    """ "bw_no_layout_opt+X" is X with its backward compiled without layout optimization; where
    X's backward runs no forward convolution, both are the same code and the twin is skipped."""
    from dynamo_modelopt.decide import Candidate, compiles_as_planned

    from .trials import make_trial

    def with_backward(name: str, convolutions: int | None) -> Any:
        trial = make_trial(name, 100, 1.0)
        backward = copy.deepcopy(trial.reports[0])
        backward.graph_kind = "backward"
        if convolutions is not None:
            backward.details["forward_convolutions"] = convolutions
        trial.reports.append(backward)
        return trial

    twin = Candidate("bw_no_layout_opt+planned_saves", backward_layout_opt=False)
    assert "compiles as planned_saves" in str(
        compiles_as_planned(twin, [with_backward("planned_saves", 0)])
    )
    assert compiles_as_planned(twin, [with_backward("planned_saves", 2)]) is None
    assert compiles_as_planned(twin, [with_backward("planned_saves", None)]) is None
    assert compiles_as_planned(twin, [with_backward("budget_0.5", 0)]) is None
    same_layout = Candidate("planned_saves")
    assert compiles_as_planned(same_layout, [with_backward("planned_saves", 0)]) is None


def test_the_backward_counts_the_convolutions_it_recomputes() -> None:
    """ConvBN in training: the forward runs its convolution; Inductor's own partition saves
    its output, so the backward runs none (convolution_backward is not one)."""
    gm, inputs = _dynamo_graph("convbn")
    (candidate,) = [c for c in candidates(True, True, (0.5,)) if c.name == "default"]
    trial = compile_trial(candidate, gm, inputs, compiler_for(ModeloptConfig(strict=True)))
    counts = {r.graph_kind: r.details["forward_convolutions"] for r in trial.reports}
    assert counts["forward"] >= 1 and counts["backward"] == 0
