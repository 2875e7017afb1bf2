"""The `modelopt` backend end to end on CPU: numerics against eager, reports, order, fallback."""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable

import pytest
import torch
import torch._dynamo

import dynamo_modelopt
from dynamo_modelopt.inductor import order_pass
from dynamo_modelopt.report import GRAPH_KINDS, STATUSES

from .models import CASES, make_case, scalar_loss

STRICT = {"strict": True, "time_limit": 5.0}


def _train_step(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], fn: Callable) -> dict:
    """Loss, every parameter's gradient and every buffer after one training step."""
    model.train()
    out = fn(*inputs)
    loss = scalar_loss(out)
    loss.backward()
    result = {"loss": loss.detach()}
    result.update({f"grad.{n}": p.grad.clone() for n, p in model.named_parameters()})
    result.update({f"buffer.{n}": b.clone() for n, b in model.named_buffers()})
    return result


def _max_error(got: dict, want: dict) -> float:
    assert got.keys() == want.keys()
    return max(float((got[k].double() - want[k].double()).abs().max()) for k in want)


BACKENDS = ("eager", "inductor", "modelopt")


def _fresh_copy(model: torch.nn.Module, backend: str) -> tuple[torch.nn.Module, Callable]:
    """A copy of `model` and the callable that runs it under `backend` ("eager": itself)."""
    torch._dynamo.reset()
    m = copy.deepcopy(model)
    if backend == "eager":
        return m, m
    return m, torch.compile(m, backend=backend, options=STRICT if backend == "modelopt" else None)


def _compare_training(case: str) -> tuple[float, float]:
    model, inputs = make_case(case)
    results = {}
    for backend in BACKENDS:
        m, fn = _fresh_copy(model, backend)
        results[backend] = _train_step(m, inputs, fn)
    return (
        _max_error(results["inductor"], results["eager"]),
        _max_error(results["modelopt"], results["eager"]),
    )


def _check_reports(expected_kinds: set[str]) -> list[dynamo_modelopt.GraphReport]:
    reports = dynamo_modelopt.get_reports()
    assert reports, "no graph was planned"
    assert {r.graph_kind for r in reports} == expected_kinds
    for r in reports:
        assert r.graph_kind in GRAPH_KINDS
        assert r.status in STATUSES and r.status != "fallback", r.fallback_reason
        assert r.fallback_reason is None
        assert r.num_nodes > 0
        assert 0 <= r.lower_bound_bytes <= r.planned_peak_bytes <= r.inductor_peak_bytes
        assert r.solve_seconds >= 0
        assert r.emitted_peak_bytes is not None and r.emitted_peak_bytes <= r.planned_peak_bytes
    return reports


def test_backend_is_registered_by_entry_point() -> None:
    assert "modelopt" in torch._dynamo.list_backends()


@pytest.mark.parametrize("case", CASES)
def test_training_matches_eager(case: str) -> None:
    inductor_error, modelopt_error = _compare_training(case)
    # Same kernels as Inductor in another order: as close to eager as Inductor, or closer.
    assert modelopt_error <= max(2 * inductor_error, 1e-5), (inductor_error, modelopt_error)
    _check_reports({"forward", "backward"})


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("grad_mode", ["no_grad", "inference_mode"])
def test_inference_matches_eager(case: str, grad_mode: str) -> None:
    model, inputs = make_case(case)
    model.eval()
    context = torch.no_grad if grad_mode == "no_grad" else torch.inference_mode
    outputs = {}
    for backend in BACKENDS:
        _, fn = _fresh_copy(model, backend)
        with context():
            out = fn(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        outputs[backend] = {str(i): o.clone() for i, o in enumerate(outs)}
    inductor_error = _max_error(outputs["inductor"], outputs["eager"])
    modelopt_error = _max_error(outputs["modelopt"], outputs["eager"])
    assert modelopt_error <= max(2 * inductor_error, 1e-5), (inductor_error, modelopt_error)
    _check_reports({"inference"})


def test_graph_break_gives_reports_per_graph() -> None:
    model, inputs = make_case("graph_break")
    compiled = torch.compile(model, backend="modelopt", options=STRICT)
    scalar_loss(compiled(*inputs)).backward()
    reports = _check_reports({"forward", "backward"})
    assert len(reports) >= 4  # two graphs, each a forward and a backward


def _other_topological_order(problem, order: list[str]) -> list[str]:
    """A valid order that differs from `order` where the graph allows: latest-ready first."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(problem.op_names)
    graph.add_edges_from(problem.edges())
    rank = {name: i for i, name in enumerate(order)}
    return list(nx.lexicographical_topological_sort(graph, key=lambda n: -rank[n]))


def test_generated_code_runs_kernels_in_planned_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force a different valid order through the planner and find it in the generated code."""
    real_plan = order_pass.plan

    def plan_other_order(problem, options):
        result = real_plan(problem, options)
        result.order = _other_topological_order(problem, problem.op_names)
        result.peak_bytes = order_pass.peak_live_bytes(problem, result.order)
        return result

    monkeypatch.setattr(order_pass, "plan", plan_other_order)
    monkeypatch.setattr(order_pass, "check_plan", lambda problem, plan: None)
    # Allow a worse peak here: this test is about emission, not about the planner.
    monkeypatch.setattr(order_pass, "peak_live_bytes", lambda problem, order: 0)
    monkeypatch.setattr(order_pass, "_better", lambda *args: True)

    model, inputs = make_case("inplace_views")
    model.eval()
    compiled = torch.compile(model, backend="modelopt", options=STRICT)
    from torch._inductor.utils import run_and_get_code

    with torch.no_grad():
        got, codes = run_and_get_code(compiled, *inputs)
        want = model(*inputs)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)

    (report,) = dynamo_modelopt.get_reports()
    assert report.order_changed
    code = "\n".join(codes)
    call_body = code[code.index("def call(") :]
    first_seen = [
        min(
            (m.start() for b in buffers for m in re.finditer(rf"\b{b}\b", call_body)),
            default=None,
        )
        for buffers in report.details["node_buffers"]
    ]
    positions = [p for p in first_seen if p is not None]
    assert len(positions) >= 3
    assert positions == sorted(positions)


def test_unknown_option_is_an_error() -> None:
    model, inputs = make_case("mlp")
    compiled = torch.compile(model, backend="modelopt", options={"no_such_option": 1})
    with pytest.raises(Exception, match="no_such_option"):
        compiled(*inputs)


def _fail_capture(*args, **kwargs):
    raise order_pass.UnplannableGraph("test: capture refused this graph")


def test_fallback_warns_once_per_graph_and_stays_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(order_pass, "problem_from_scheduler", _fail_capture)
    model, inputs = make_case("convbn")
    e = copy.deepcopy(model)
    eager = _train_step(e, inputs, e)
    m = copy.deepcopy(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _train_step(m, inputs, torch.compile(m, backend="modelopt"))
    fallback_warnings = [
        w for w in caught if issubclass(w.category, dynamo_modelopt.ModeloptFallbackWarning)
    ]
    reports = dynamo_modelopt.get_reports()
    assert len(fallback_warnings) == len(reports) == 2
    assert all("capture refused this graph" in str(w.message) for w in fallback_warnings)
    for r in reports:
        assert r.status == "fallback"
        assert "capture refused this graph" in r.fallback_reason
        # no figures: nothing was captured or planned
        assert r.inductor_peak_bytes is r.planned_peak_bytes is r.lower_bound_bytes is None
    assert dynamo_modelopt.format_reports().count("fallback: ") == 2
    assert _max_error(got, eager) < 1e-4


def test_strict_raises_instead_of_falling_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(order_pass, "problem_from_scheduler", _fail_capture)
    model, inputs = make_case("mlp")
    compiled = torch.compile(model, backend="modelopt", options={"strict": True})
    with pytest.raises(Exception, match="capture refused this graph"):
        compiled(*inputs)
