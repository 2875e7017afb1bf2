"""The in-place accumulation pass: which sums it rewrites, which it leaves, and same values."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from dynamo_modelopt.inductor.accumulate import accumulate_in_place

aten = torch.ops.aten


def _traced(fn: Callable[..., object], *args: torch.Tensor) -> torch.fx.GraphModule:
    return make_fx(fn, tracing_mode="fake")(*args)


def _targets(gm: torch.fx.GraphModule) -> list[object]:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def _fresh_addend(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0  # a new tensor no one else reads


def test_addmm_into_a_dying_fresh_addend_is_rewritten_with_the_same_values() -> None:
    def fn(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return aten.addmm(_fresh_addend(x), a, b)

    args = (torch.randn(8, 16), torch.randn(8, 4), torch.randn(4, 16))
    gm = _traced(fn, *args)
    want = gm(*args)
    assert accumulate_in_place(gm.graph) == 1
    gm.recompile()
    assert torch.ops.modelopt.addmm_into.default in _targets(gm)
    assert aten.addmm.default not in _targets(gm)
    torch.testing.assert_close(gm(*args), want, rtol=0, atol=0)


def test_unfused_sum_with_a_product_becomes_one_in_place_product() -> None:
    def fn(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return aten.mm(a, b) + _fresh_addend(x)

    args = (torch.randn(8, 16), torch.randn(8, 4), torch.randn(4, 16))
    gm = _traced(fn, *args)
    want = gm(*args)
    assert accumulate_in_place(gm.graph) == 1
    gm.recompile()
    assert aten.mm.default not in _targets(gm) and aten.add.Tensor not in _targets(gm)
    torch.testing.assert_close(gm(*args), want)


@pytest.mark.parametrize(
    "case",
    ["addend_read_again", "addend_is_an_input", "addend_broadcast", "addend_is_a_view"],
)
def test_sums_that_must_keep_their_addend_are_left_alone(case: str) -> None:
    def fn(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if case == "addend_read_again":
            addend = _fresh_addend(x)
            return aten.addmm(addend, a, b), addend.sum()
        if case == "addend_is_an_input":
            return (aten.addmm(x, a, b),)
        if case == "addend_broadcast":
            return (aten.addmm(_fresh_addend(x[0]), a, b),)
        return (aten.addmm(_fresh_addend(x).t().t(), a, b),)

    args = (torch.randn(8, 16), torch.randn(8, 4), torch.randn(4, 16))
    gm = _traced(fn, *args)
    before = _targets(gm)
    assert accumulate_in_place(gm.graph) == 0
    assert _targets(gm) == before
