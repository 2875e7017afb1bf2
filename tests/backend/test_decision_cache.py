"""A later compile of the same graph builds the settings an earlier search chose, alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo

import dynamo_modelopt
import dynamo_modelopt.backend as backend
from dynamo_modelopt.decision_cache import Decision, cache_dir, decision_key, load, store

# FLOPs and no timed candidates: "deep_mlp" takes planned_saves on any machine
# (`test_auto_plans_recomputation_on_the_compiled_backward`)
OPTIONS = {"strict": True, "measure_kernel_time": False, "timing_rounds": 0}


def _compile_and_step(
    monkeypatch: pytest.MonkeyPatch, **more: Any
) -> tuple[int, dict[str, torch.Tensor], list[dynamo_modelopt.GraphReport]]:
    """Candidates compiled, loss and grads of one step, and the reports, from a fresh Dynamo."""
    from .models import make_case

    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    compiled_candidates: list[str] = []
    real = backend.compile_trial

    def counting(candidate: Any, *args: Any, **kwargs: Any) -> Any:
        compiled_candidates.append(candidate.name)
        return real(candidate, *args, **kwargs)

    monkeypatch.setattr(backend, "compile_trial", counting)
    model, inputs = make_case("deep_mlp")
    model.train()
    compiled = torch.compile(model, backend="modelopt", options={**OPTIONS, **more})
    loss = compiled(*inputs)
    loss.backward()
    result = {"loss": loss.detach()} | {n: p.grad.clone() for n, p in model.named_parameters()}
    return len(compiled_candidates), result, dynamo_modelopt.get_reports()


def _stored() -> list[Path]:
    return sorted(cache_dir().glob("*.json")) if cache_dir().exists() else []


def test_a_second_compile_replays_the_chosen_settings_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    searched, first, first_reports = _compile_and_step(monkeypatch)
    assert searched > 1
    assert first_reports[0].details["settings"]["chosen"] == "planned_saves"
    (entry,) = _stored()
    assert json.loads(entry.read_text())["chosen"] == "planned_saves"

    compiled, second, reports = _compile_and_step(monkeypatch)
    assert compiled == 1
    settings = reports[0].details["settings"]
    assert settings["chosen"] == "planned_saves" and settings["from_decision_cache"]
    assert settings["why"] == first_reports[0].details["settings"]["why"]
    plan = reports[0].internals.recompute_plan
    assert plan["replayed"]
    assert plan["recompute"] == first_reports[0].internals.recompute_plan["recompute"]
    # the same partition, so the same code: the same predicted peaks and the same numbers
    assert [r.emitted_peak_bytes for r in reports] == [r.emitted_peak_bytes for r in first_reports]
    for name in first:
        torch.testing.assert_close(second[name], first[name], rtol=0, atol=0)
    step = dynamo_modelopt.measure_step(lambda: None, reports=reports, repeats=1)
    assert "settings: planned_saves (chosen by an earlier compile)" in step.summary()


def test_a_stored_plan_the_graph_does_not_offer_is_searched_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _compile_and_step(monkeypatch)
    (entry,) = _stored()
    data = json.loads(entry.read_text())
    data["recompute_plan"]["recompute"] = ["no_such_tensor"]
    entry.write_text(json.dumps(data))

    searched, _, reports = _compile_and_step(monkeypatch)
    assert searched > 1
    assert "from_decision_cache" not in reports[0].details["settings"]
    # the search stored its own plan over the stale one
    stored = json.loads(entry.read_text())["recompute_plan"]["recompute"]
    assert stored == reports[0].internals.recompute_plan["recompute"] != ["no_such_tensor"]


def test_an_unreadable_entry_is_searched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    _compile_and_step(monkeypatch)
    (entry,) = _stored()
    entry.write_text("{not json")
    searched, _, _ = _compile_and_step(monkeypatch)
    assert searched > 1
    assert json.loads(entry.read_text())["chosen"] == "planned_saves"


@pytest.mark.parametrize(
    "entry",
    [
        {"chosen": "default", "settings": "x"},
        {"chosen": "default", "settings": None},
        {"chosen": 3},
        {"settings": {}},
        {"chosen": "planned_saves", "recompute_plan": "x"},
        {"chosen": "planned_saves", "recompute_plan": {"recompute": "buf0"}},
        ["chosen", "default"],
        "default",
        None,
    ],
)
def test_an_entry_of_another_shape_is_absent(entry: Any) -> None:
    key = "k" * 64
    store(key, Decision("default"))
    assert load(key) == Decision("default")
    (cache_dir() / f"{key}.json").write_text(json.dumps(entry))
    assert load(key) is None


def test_with_the_cache_off_every_compile_searches(monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):
        searched, _, _ = _compile_and_step(monkeypatch, decision_cache=False)
        assert searched > 1
    assert _stored() == []


def test_the_key_changes_with_the_inputs_the_options_and_grad_mode() -> None:
    gm = torch.fx.symbolic_trace(torch.nn.Linear(4, 4))
    x = torch.randn(2, 4)
    key = decision_key(gm, [x], "options-a", True)
    assert key == decision_key(gm, [x.clone()], "options-a", True)
    assert key != decision_key(gm, [torch.randn(3, 4)], "options-a", True)
    assert key != decision_key(gm, [x.t().contiguous().t()], "options-a", True)
    assert key != decision_key(gm, [x.requires_grad_()], "options-a", True)
    assert key != decision_key(gm, [x], "options-b", True)
    assert key != decision_key(gm, [x], "options-a", False)
    with torch._inductor.config.patch(layout_optimization=False):
        assert key != decision_key(gm, [x], "options-a", True)


def test_the_cache_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELOPT_CACHE_DIR", "/some/where")
    assert cache_dir() == Path("/some/where/decisions")
    monkeypatch.delenv("MODELOPT_CACHE_DIR")
    assert str(cache_dir()).endswith(os.path.join("modelopt", "decisions"))
