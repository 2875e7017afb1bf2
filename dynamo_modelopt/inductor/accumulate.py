"""Accumulate a matrix product into an addend that dies there, instead of into a new buffer.

A weight used twice gets two gradient contributions that the backward sums. With tied input and
output embeddings (GPT-2, BERT, ...) that sum is `embedding_dense_backward(...) + mm(...)`, which
Inductor's pattern pass fuses into `addmm(addend, a, b)`: BLAS computes `C = a @ b + C` natively,
but `addmm` first copies the addend into a fresh output, so both full-size buffers (147 MiB each
for GPT-2's vocabulary) are live at once, at the step's peak. When the addend is a fresh tensor
that nothing else reads, `addend.addmm_(a, b)` computes the same values in the addend's own
memory (the same BLAS call with beta=1, so the same arithmetic).

The sum becomes `modelopt::addmm_into(addend, a, b)`, a custom operator that mutates its addend
and is tagged `flexible_layout`: Inductor would lower a bare `aten.addmm_` as an implicit
fallback, which in a backward makes every input contiguous first, a transposed copy of the
product's operand (on GPT-2 with 8 x 128 tokens, a 196 MiB copy of the logits' gradient to
save a 49 MiB addend); the flexible layout passes the operands as they are, as `addmm` does.

This is a post-grad FX pass (Inductor's `post_grad_custom_post_pass`), run on every forward,
backward and inference graph after Inductor's own patterns. It also rewrites the unfused form
`add(mm(a, b), addend)` that Inductor keeps where it prefers the add fused with pointwise users,
only when the addend is full size (no broadcast), since then the add has no pointwise work left
to fuse.

Conditions (conservative: each rewrite must be invisible except for memory):
- the addend is the output of an ATen operator that returns a fresh tensor (no alias in its
  schema), not a graph input, constant or view, and its only user is the sum;
- addend and result have the same shape, strides, dtype and device, and the dtype is floating.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .._torch_compat import CustomGraphPass, OpOverload

aten = torch.ops.aten

# GraphModule.meta key under which the pass leaves its `Accumulated` record
REWRITTEN_KEY = "modelopt_accumulated_in_place"


@dataclass(frozen=True)
class Accumulated:
    """What `AccumulatePass` did to a graph, left in its module's meta for the graph's report."""

    rewritten: int  # matrix-product sums now accumulated into their addend


def accumulated_in_place(module: Any) -> int:
    """How many sums `AccumulatePass` rewrote in the graph of `module` (0 where it did not run)."""
    record = getattr(module, "meta", {}).get(REWRITTEN_KEY)
    return record.rewritten if isinstance(record, Accumulated) else 0


def _tensor(node: Any) -> torch.Tensor | None:
    value = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return value if isinstance(value, torch.Tensor) else None


def _returns_fresh_tensor(node: torch.fx.Node) -> bool:
    """The node's ATen operator returns new memory (its schema marks no output as an alias)."""
    target = node.target
    if node.op != "call_function" or not isinstance(target, OpOverload):
        return False
    if target.is_view or torch.Tag.inplace_view in target.tags:
        return False
    returns = target._schema.returns
    return len(returns) == 1 and returns[0].alias_info is None


def can_accumulate_into(addend: Any, result: torch.fx.Node) -> bool:
    """`addend` may be overwritten with `result` (see the module docstring for why)."""
    if not isinstance(addend, torch.fx.Node) or not _returns_fresh_tensor(addend):
        return False
    if len(addend.users) != 1 or result not in addend.users:
        return False
    a, r = _tensor(addend), _tensor(result)
    if a is None or r is None or not a.dtype.is_floating_point:
        return False
    try:
        return (
            a.shape == r.shape
            and a.stride() == r.stride()
            and a.dtype == r.dtype
            and a.device == r.device
            and a.is_contiguous()
        )
    except Exception:  # symbolic sizes that can't be compared: leave the node alone
        return False


@torch.library.custom_op(
    "modelopt::addmm_into",
    mutates_args=("addend",),
    tags=(torch.Tag.flexible_layout,),
)
def addmm_into(
    addend: torch.Tensor, mat1: torch.Tensor, mat2: torch.Tensor, beta: float, alpha: float
) -> None:
    """`addend = beta * addend + alpha * mat1 @ mat2`, in the addend's memory (one BLAS call)."""
    addend.addmm_(mat1, mat2, beta=beta, alpha=alpha)


@addmm_into.register_fake
def _addmm_into_fake(
    addend: torch.Tensor, mat1: torch.Tensor, mat2: torch.Tensor, beta: float, alpha: float
) -> None:
    return None


def _accumulate(
    graph: torch.fx.Graph, node: torch.fx.Node, addend: Any, mat1: Any, mat2: Any
) -> None:
    """Replace `node` (the sum) by `addmm_into` on `addend`; its users read the addend."""
    is_addmm = node.target is aten.addmm.default
    beta = float(node.kwargs.get("beta", 1)) if is_addmm else 1.0
    alpha = float(node.kwargs.get("alpha", 1)) if is_addmm else 1.0
    with graph.inserting_before(node):
        into = graph.call_function(
            torch.ops.modelopt.addmm_into.default, (addend, mat1, mat2, beta, alpha)
        )
    into.meta["val"] = None
    for key in ("stack_trace", "nn_module_stack", "source_fn_stack", "original_aten"):
        if key in node.meta:
            into.meta[key] = node.meta[key]
    node.replace_all_uses_with(addend)
    graph.erase_node(node)


def _mm_operands(node: Any) -> tuple[Any, Any] | None:
    if isinstance(node, torch.fx.Node) and node.target is aten.mm.default and len(node.users) == 1:
        return node.args[0], node.args[1]
    return None


def accumulate_in_place(graph: torch.fx.Graph) -> int:
    """Rewrite every eligible matrix-product sum in `graph`; return how many were rewritten."""
    rewritten = 0
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is aten.addmm.default and len(node.args) == 3:
            if can_accumulate_into(node.args[0], node):
                _accumulate(graph, node, *node.args)
                rewritten += 1
        elif node.target is aten.add.Tensor and len(node.args) == 2 and not node.kwargs:
            for mm_side, addend in ((0, 1), (1, 0)):
                operands = _mm_operands(node.args[mm_side])
                if operands is None or not can_accumulate_into(node.args[addend], node):
                    continue
                mm = node.args[mm_side]
                _accumulate(graph, node, node.args[addend], *operands)
                graph.erase_node(mm)
                rewritten += 1
                break
    if rewritten:
        graph.lint()
    return rewritten


class AccumulatePass(CustomGraphPass):
    """`post_grad_custom_post_pass` that runs `accumulate_in_place`, then any pass it replaced.

    Inductor takes one custom post pass; a user's own (set in Inductor's config before compiling)
    still runs, after ours.
    """

    def __init__(self, previous: Callable[[torch.fx.Graph], Any] | None = None) -> None:
        self.previous = previous

    def __call__(self, graph: torch.fx.Graph) -> None:
        from .._torch_compat import inductor_config

        # The C++ wrapper would call our Python operator through its proxy: leave those alone.
        rewritten = 0 if inductor_config.cpp_wrapper else accumulate_in_place(graph)
        if graph.owning_module is not None:  # read back by the graph's report
            graph.owning_module.meta[REWRITTEN_KEY] = Accumulated(rewritten)
        if self.previous is not None:
            self.previous(graph)

    def uuid(self) -> Any:
        """Inductor's FX graph cache key for custom passes; None (no caching) where the pass
        it replaced has no key of its own."""
        from .report_cache import source_hash

        previous = None
        if self.previous is not None:
            previous = getattr(self.previous, "uuid", lambda: None)()
            if previous is None:
                return None
        return ("modelopt-accumulate", source_hash(), previous)
