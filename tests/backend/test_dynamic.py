"""Dynamic sizes: no part of the settings search specializes a dynamic size, and a model whose
batch size changes is compiled once for all sizes, with one warning, and stays correct."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
import torch._dynamo
from torch.fx.experimental.proxy_tensor import make_fx

import dynamo_modelopt
from dynamo_modelopt.capture.runtime import node_flops
from dynamo_modelopt.dynamic import symbolic_sizes

from .models import MLP

BATCHES = (4, 7, 9)  # Dynamo's automatic dynamic shapes mark the batch dynamic at the second


def _mm_graph() -> tuple[torch.fx.Node, torch.fx.experimental.symbolic_shapes.ShapeEnv]:
    graph = make_fx(lambda a, b: a @ b, tracing_mode="symbolic")(
        torch.randn(6, 8), torch.randn(8, 5)
    ).graph
    mm = next(n for n in graph.nodes if n.target == torch.ops.aten.mm.default)
    return mm, mm.meta["val"].shape[0].node.shape_env


def test_node_flops_reads_the_hint_without_a_guard() -> None:
    mm, shape_env = _mm_graph()
    before = len(shape_env.guards)
    assert node_flops(mm) == 2 * 6 * 8 * 5
    assert len(shape_env.guards) == before  # a guard would specialize the sizes to 6, 8, 5


def test_symbolic_sizes_names_the_dynamic_inputs() -> None:
    mm, _ = _mm_graph()
    a, b = (arg.meta["val"] for arg in mm.args)
    assert symbolic_sizes([a, 3, torch.ones(2)]) == [f"input 0 size ({a.shape[0]}, {a.shape[1]})"]
    assert symbolic_sizes([torch.ones(2), b.shape[1]]) == [f"input 1 ({b.shape[1]})"]
    assert symbolic_sizes([torch.ones(2), 3]) == []


def _train(fn: Callable, model: torch.nn.Module, batch: int, mark: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(batch)
    x, y = torch.randn(batch, 64), torch.randint(0, 10, (batch,))
    if mark:
        torch._dynamo.mark_dynamic(x, 0)
        torch._dynamo.mark_dynamic(y, 0)
    for p in model.parameters():
        p.grad = None
    loss = fn(x, y)
    loss.backward()
    return {"loss": loss.detach(), **{n: p.grad.clone() for n, p in model.named_parameters()}}


@pytest.mark.parametrize(
    ("how", "options", "searches"),
    [
        ("dynamic_true", {}, 0),
        ("mark_dynamic", {}, 0),
        # the first size is compiled static, with the search; the second dynamic, without
        ("automatic", {"timing_rounds": 0, "plan_recomputation": False}, 1),
        # forced settings compile at the sizes' hints, without specializing them
        ("mark_dynamic", {"settings": "planned_saves", "time_limit": 2.0}, 0),
    ],
)
def test_changing_batch_size_compiles_once_for_all_sizes(
    how: str, options: dict, searches: int
) -> None:
    model = MLP()
    eager_model = copy.deepcopy(model)
    dynamic = True if how == "dynamic_true" else None
    compiled = torch.compile(model, backend="modelopt", dynamic=dynamic, options=options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in BATCHES:
            got = _train(compiled, model, batch, how == "mark_dynamic")
            want = _train(eager_model, eager_model, batch, False)
            for name in want:
                torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5)
    dynamic_warnings = [
        w for w in caught if issubclass(w.category, dynamo_modelopt.ModeloptDynamicShapeWarning)
    ]
    fallbacks = [
        w for w in caught if issubclass(w.category, dynamo_modelopt.ModeloptFallbackWarning)
    ]
    assert not fallbacks, [str(w.message) for w in fallbacks]
    reports = dynamo_modelopt.get_reports()
    forwards = [r for r in reports if r.graph_kind == "forward"]
    # one compile for every dynamic size, after the searched static one
    assert len(forwards) == 1 + searches, [r.summary() for r in reports]
    searched = [
        r for r in reports if len(r.details.get("settings", {}).get("alternatives", {})) > 1
    ]
    assert len(searched) == 2 * searches
    if options.get("settings", "auto") == "auto":
        assert len(dynamic_warnings) == 1
        assert "dynamic sizes" in str(dynamic_warnings[0].message)
    else:
        assert not dynamic_warnings
    dynamic_reports = reports[2 * searches :]
    for report in dynamic_reports:
        assert report.status != "fallback", report.fallback_reason
    # arenas are skipped where a buffer's size is symbolic: their offsets fit one size only
    reasons = [(r.details.get("arena") or {}).get("reason", "") for r in dynamic_reports]
    assert any("symbolic size" in reason for reason in reasons), reasons


def test_no_warning_where_there_is_no_search() -> None:
    # inference without convolutions or concatenations: the defaults are the only candidate
    net = MLP().net
    compiled = torch.compile(net, backend="modelopt", dynamic=True)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        for batch in BATCHES:
            x = torch.randn(batch, 64)
            torch.testing.assert_close(compiled(x), net(x), rtol=1e-4, atol=1e-5)
    assert not [w for w in caught if "modelopt" in str(w.message)]
    assert [r.graph_kind for r in dynamo_modelopt.get_reports()] == ["inference"]
