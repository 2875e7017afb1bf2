"""Options are checked once, before any graph is compiled; torch.compile's `mode` is honoured;
a forced setting or solver that cannot act on a graph is said once, or raised under strict."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

import dynamo_modelopt
from dynamo_modelopt import ModeloptConfig, ModeloptSettingWarning
from dynamo_modelopt.backend import build_config
from dynamo_modelopt.inductor import order_pass
from dynamo_modelopt.planner import gurobi

from .models import make_case, scalar_loss

FAST = {"time_limit": 2.0, "timing_rounds": 0, "measure_kernel_time": False}


@pytest.mark.parametrize(
    ("options", "error", "says"),
    [
        ({"activation_budgets": [0.5, 2.0]}, ValueError, "activation_budgets"),
        ({"relative_gap": 1.5}, ValueError, "relative_gap=1.5"),
        ({"relative_gap": -0.1}, ValueError, "relative_gap"),
        ({"strict": "false"}, TypeError, "strict='false'"),
        ({"decision_cache": "off"}, TypeError, "decision_cache='off'"),
        ({"reorder": "no"}, TypeError, "True or False"),
        ({"threads": 2.5}, TypeError, "threads=2.5.*an int >= 1"),
        ({"threads": True}, TypeError, "threads=True"),
        ({"seed": "x"}, TypeError, "seed='x'"),
        ({"timing_rounds": 2.5}, TypeError, "timing_rounds"),
        ({"max_recompute_overhead": "x"}, TypeError, "max_recompute_overhead='x'.*a number"),
        ({"solver": "glpk"}, ValueError, 'solver.*"cpsat"'),
        ({"arena": True}, TypeError, "arena"),
        ({"settings": "no_such_settings"}, ValueError, "settings='no_such_settings'"),
        ({"settings": "planned_saves", "plan_recomputation": False}, ValueError, "settings="),
        ({"sovler": "cpsat"}, ValueError, "did you mean 'solver'"),
    ],
)
def test_an_option_not_allowed_is_named_with_what_is(
    options: dict[str, Any], error: type, says: str
) -> None:
    with pytest.raises(error, match=says):
        build_config(options)


def test_the_options_error_before_any_graph_is_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compile(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled before the options were checked")

    monkeypatch.setattr(order_pass.PlanOrderPass, "__call__", no_compile)
    model, inputs = make_case("mlp")
    compiled = torch.compile(model, backend="modelopt", options={"seed": "x"})
    with pytest.raises(Exception, match="seed='x'"):
        compiled(*inputs)


def test_options_are_normalized() -> None:
    config = build_config({"activation_budgets": 0.5, "time_limit": 3, "relative_gap": 0})
    assert config.activation_budgets == (0.5,)
    assert isinstance(config.time_limit, float) and config.time_limit == 3.0
    assert build_config({"activation_budgets": [0.25, 0.5]}).activation_budgets == (0.25, 0.5)
    given = ModeloptConfig(threads=1)
    assert build_config(given) is given


def test_the_planner_mode_option_is_renamed_with_a_deprecation_warning() -> None:
    with pytest.warns(FutureWarning, match="plan_mode"):
        config = build_config({"mode": "joint"})
    assert config.plan_mode == "joint"
    assert config.planner_options().plan_mode == "joint"
    with pytest.raises(ValueError, match="plan_mode"):
        build_config({"mode": "joint", "plan_mode": "two_stage"})


def test_a_config_object_is_accepted_as_options() -> None:
    model, inputs = make_case("mlp")
    config = ModeloptConfig(strict=True, settings="default", **FAST)
    compiled = torch.compile(model.eval(), backend="modelopt", options=config)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs))
    assert dynamo_modelopt.get_reports()


def _inductor_config_in_our_pass(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Inductor's settings as our scheduler pass sees them, filled in by the next compile."""
    from torch._inductor import config as inductor_config

    seen: dict[str, Any] = {}
    real = order_pass._inductor_order

    def recording(nodes: Any) -> Any:
        seen.update(inductor_config.get_config_copy())
        return real(nodes)

    monkeypatch.setattr(order_pass, "_inductor_order", recording)
    return seen


def test_compile_mode_reaches_inductor_and_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "reduce-overhead" asks Inductor for CUDA graphs (which it skips on CPU, as without us)."""
    seen = _inductor_config_in_our_pass(monkeypatch)
    model, inputs = make_case("mlp")
    # torch.compile takes a mode or options, not both
    compiled = torch.compile(model.eval(), backend="modelopt", mode="reduce-overhead")
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs))
    assert seen["triton.cudagraphs"] is True
    assert seen["reorder_for_peak_memory"] is False  # ours still on top
    (report,) = dynamo_modelopt.get_reports()
    assert report.details["mode_patches"] == {"triton.cudagraphs": True}


def test_an_unknown_compile_mode_is_an_error() -> None:
    model, inputs = make_case("mlp")
    compiled = torch.compile(model, backend="modelopt", mode="fastest-please")
    with pytest.raises(Exception, match="mode='fastest-please'"):
        compiled(*inputs)


def test_a_forced_setting_that_does_not_apply_compiles_the_defaults_once_warned() -> None:
    """The MLP has no convolution, so no layout optimization to turn off."""
    model, inputs = make_case("mlp")
    options = {"settings": "no_layout_opt", **FAST}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            torch._dynamo.reset()
            compiled = torch.compile(model.eval(), backend="modelopt", options=options)
            with torch.no_grad():
                torch.testing.assert_close(compiled(*inputs), model(*inputs))
    said = [w for w in caught if issubclass(w.category, ModeloptSettingWarning)]
    assert len(said) == 1 and "no_layout_opt" in str(said[0].message)
    reports = dynamo_modelopt.get_reports()
    assert len(reports) == 2 and all(r.status != "fallback" for r in reports)
    assert all(r.details["settings"]["chosen"] == "default" for r in reports)
    assert all("does not apply" in r.details["settings"]["why"] for r in reports)


def test_a_forced_setting_that_does_not_apply_raises_under_strict() -> None:
    model, inputs = make_case("mlp")
    options = {"settings": "no_layout_opt", "strict": True, **FAST}
    compiled = torch.compile(model.eval(), backend="modelopt", options=options)
    with pytest.raises(Exception, match="does not apply to this graph"), torch.no_grad():
        compiled(*inputs)


def test_an_unlicensed_gurobi_is_said_once_or_raised_under_strict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gurobi, "license_limit", lambda: (False, None, "test: no license"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            assert build_config({"solver": "gurobi"}).solver == "gurobi"
    said = [w for w in caught if issubclass(w.category, ModeloptSettingWarning)]
    assert len(said) == 1 and "test: no license" in str(said[0].message)
    with pytest.raises(ValueError, match=r"solver='gurobi' cannot be used.*test: no license"):
        build_config({"solver": "gurobi", "strict": True})


def _too_large_for_gurobi(monkeypatch: pytest.MonkeyPatch) -> None:
    """The planner says it gave a task to CP-SAT (`test_named_solver_substitution_is_recorded`)."""
    real = order_pass.plan

    def substituting(problem: Any, options: Any) -> Any:
        result = real(problem, options)
        result.stats["substituted"] = ["gurobi unusable: test: model too large"]
        return result

    monkeypatch.setattr(order_pass, "plan", substituting)


def test_a_gurobi_substitution_is_said_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _too_large_for_gurobi(monkeypatch)
    model, inputs = make_case("mlp")
    options = {"solver": "gurobi", "settings": "default", **FAST}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = torch.compile(model, backend="modelopt", options=options)
        scalar_loss(compiled(*inputs)).backward()
    said = [w for w in caught if issubclass(w.category, ModeloptSettingWarning)]
    assert len(said) == 1 and "model too large" in str(said[0].message)
    assert len(dynamo_modelopt.get_reports()) == 2


def test_a_gurobi_substitution_raises_under_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    _too_large_for_gurobi(monkeypatch)
    model, inputs = make_case("mlp")
    options = {"solver": "gurobi", "settings": "default", "strict": True, **FAST}
    compiled = torch.compile(model.eval(), backend="modelopt", options=options)
    with pytest.raises(Exception, match="solver='gurobi' could not be used"), torch.no_grad():
        compiled(*inputs)
