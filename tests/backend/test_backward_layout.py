"""A candidate's backward compiled without layout optimization where recomputation puts
convolutions in it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch._dynamo
import torch.nn as nn
from torch._inductor.graph import GraphLowering

import dynamo_modelopt
from dynamo_modelopt.measure import kineto_peak_bytes

from .models import assert_effect_predicted


def _depthwise_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


_INPUT = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _grads(model: nn.Module, run: Any) -> dict[str, torch.Tensor]:
    for p in model.parameters():
        p.grad = None
    loss = run(_INPUT).square().mean()
    loss.backward()
    return {"loss": loss.detach()} | {n: p.grad.clone() for n, p in model.named_parameters()}


def _options(backward_layout_opt: bool) -> dict[str, Any]:
    """The activation budget 0.1 (it recomputes every convolution of this net), forced with the
    backward left to Inductor or compiled without layout optimization."""
    prefix = "" if backward_layout_opt else "bw_no_layout_opt+"
    return {
        "strict": True,
        "settings": f"{prefix}budget_0.1",
        "activation_budgets": (0.1,),
        "decision_cache": False,
    }


@pytest.mark.parametrize("backward_layout_opt", [False, True])
def test_recomputed_convolutions_leave_the_backward_layout_to_the_candidate(
    backward_layout_opt: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    decisions: list[tuple[int, bool]] = []  # (convolutions in the backward, layout optimized)
    decide = GraphLowering.decide_layout_opt

    def recording(gm: torch.fx.GraphModule, *, is_inference: bool) -> bool:
        chosen = decide(gm, is_inference=is_inference)
        if any(n.op == "placeholder" and n.name.startswith("tangents") for n in gm.graph.nodes):
            convs = sum(n.target is torch.ops.aten.convolution.default for n in gm.graph.nodes)
            decisions.append((convs, chosen))
        return chosen

    monkeypatch.setattr(GraphLowering, "decide_layout_opt", staticmethod(recording))
    eager = _depthwise_net()
    want = _grads(eager, eager)
    torch._dynamo.reset()
    model = _depthwise_net()
    options = _options(backward_layout_opt)
    got = _grads(model, torch.compile(model, backend="modelopt", options=options))
    [(convs, optimized)] = decisions
    assert convs > 0  # the backward recomputes convolutions: Inductor would optimize it
    assert optimized == backward_layout_opt
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-3, atol=1e-4)


def _peaks(backward_layout_opt: bool) -> tuple[int, int]:
    """Measured and predicted peak of a step under the activation budget 0.1."""
    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    model = _depthwise_net()
    compiled = torch.compile(model, backend="modelopt", options=_options(backward_layout_opt))
    _grads(model, compiled)
    predicted = max(r.emitted_peak_bytes for r in dynamo_modelopt.get_reports())
    for p in model.parameters():
        p.grad = None
    return kineto_peak_bytes(lambda: _grads(model, compiled)), predicted


def test_the_backward_layout_effect_is_predicted() -> None:
    """Channels-last copies in the backward and oneDNN's scratch for them: the cost model
    sees both, so it predicts the change the candidate makes (here the channels-last backward
    peaks lower)."""
    assert_effect_predicted(_peaks(backward_layout_opt=False), _peaks(backward_layout_opt=True))
