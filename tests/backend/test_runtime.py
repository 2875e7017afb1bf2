"""Run time of joint-graph operations: timed where they do the heavy work, priced otherwise."""

from __future__ import annotations

import pytest
import torch
from torch import fx
from torch.fx.experimental.proxy_tensor import make_fx

from dynamo_modelopt.capture import runtime
from dynamo_modelopt.capture.runtime import (
    measured_node_seconds,
    node_flops,
    node_seconds,
    roofline_seconds,
)


def _matmuls(mode: str = "fake") -> dict[str, fx.Node]:
    def f(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.relu(a @ a) + (b @ b).sum() + c.sum()

    graph = make_fx(f, tracing_mode=mode)(
        torch.randn(384, 384), torch.randn(8, 8), torch.randn(3)
    ).graph
    mms = [n for n in graph.nodes if n.target == torch.ops.aten.mm.default]
    relu = next(n for n in graph.nodes if n.target == torch.ops.aten.relu.default)
    return {"large": mms[0], "small": mms[1], "relu": relu}


def test_matmuls_are_timed_by_running_them() -> None:
    runtime._fx_cache.clear()
    nodes = _matmuls()
    large, small = measured_node_seconds(nodes["large"]), measured_node_seconds(nodes["small"])
    assert large is not None and small is not None
    assert 0 < small < large  # 384**3 multiply-adds against 8**3
    assert node_seconds(nodes["large"]) == large  # cached: the same figure
    assert node_flops(nodes["large"]) == 2 * 384**3


def test_operations_without_flops_or_measurement_cost_flops_and_bytes() -> None:
    nodes = _matmuls()
    # each reads one 384 x 384 input (a @ a reads it once) and writes one
    moved = 2 * 384 * 384 * 4
    assert node_seconds(nodes["relu"]) == pytest.approx(roofline_seconds(0, moved))
    assert node_seconds(nodes["large"], measure=False) == pytest.approx(
        roofline_seconds(2 * 384**3, moved)
    )


def test_symbolic_sizes_are_not_run() -> None:
    nodes = _matmuls("symbolic")
    assert measured_node_seconds(nodes["large"]) is None
    assert node_seconds(nodes["large"]) > 0  # priced by its formula instead
