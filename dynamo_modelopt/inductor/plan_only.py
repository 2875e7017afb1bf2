"""Compile a candidate as far as its plan, and no further.

Choosing between compile settings needs each candidate's planned and emitted peaks and its
modelled run time, all of which exist once Inductor has generated the wrapper's allocation
lines (`emitted.account_emitted_code`). What follows (writing the module, compiling every
kernel with the C++ compiler or Triton, loading it) is only needed for the settings that win.
Under `planning_only()`, the emitted-code accounting of each planned graph ends its compile by
raising `PlannedOnly`; `stopping_after_plan` wraps Inductor's `compile_fx_inner` to catch it,
hands AOTAutograd the forward's output strides as a built forward would (the backward is lowered
against them: layout optimization makes saved activations channels-last) and returns a stand-in
that refuses to run. A graph our pass could not plan is compiled in full, as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

_state = threading.local()


class PlannedOnly(Exception):
    """Raised inside Inductor's code generation once a graph's plan is accounted."""

    def __init__(self, output_strides: list[tuple[str, ...] | None]) -> None:
        super().__init__("modelopt: planned only, not built")
        self.output_strides = output_strides


@contextlib.contextmanager
def planning_only() -> Iterator[None]:
    """Within this block, graphs our pass plans are not built (this thread only)."""
    previous = getattr(_state, "active", False)
    _state.active = True
    try:
        yield
    finally:
        _state.active = previous


def active() -> bool:
    return getattr(_state, "active", False)


def stop_if_planning_only() -> None:
    """Called once the graph's emitted code is accounted: end its compile under
    `planning_only()`, carrying the output strides Inductor would report."""
    if active():
        raise PlannedOnly(_output_strides())


def _output_strides() -> list[tuple[str, ...] | None]:
    """The strides of the graph's outputs as Inductor records them after lowering
    (`compile_fx.fx_codegen_and_compile`): printed expressions, None where unknown."""
    from torch.fx.experimental.symbolic_shapes import SymExprPrinter, free_unbacked_symbols

    from .._torch_compat import IRNode, V

    printer = SymExprPrinter()
    strides: list[tuple[str, ...] | None] = []
    for out in V.graph.graph_outputs or ():
        if (
            isinstance(out, IRNode)
            and out.has_tensor_output()
            and not free_unbacked_symbols(out.get_stride())
        ):
            strides.append(tuple(printer.doprint(s) for s in out.get_layout().stride))
        else:
            strides.append(None)
    return strides


def _not_built(*args: Any) -> Any:
    raise RuntimeError("modelopt: this candidate was planned only; its kernels were not built")


_not_built._boxed_call = True  # type: ignore[attr-defined]


class _Strides:
    """What `set_tracing_context_output_strides` reads of a compiled graph."""

    def __init__(self, output_strides: list[tuple[str, ...] | None]) -> None:
        self.output_strides = output_strides


def stopping_after_plan(inner_compile: Callable[..., Any]) -> Callable[..., Any]:
    """`inner_compile` for `compile_fx` that returns a stand-in for graphs planned only."""
    from .._torch_compat import set_tracing_context_output_strides

    def compile_inner(gm: Any, example_inputs: Sequence[Any], **kwargs: Any) -> Any:
        try:
            return inner_compile(gm, example_inputs, **kwargs)
        except Exception as exc:
            stop = _planned_only_in(exc)
            if stop is None:
                raise
            set_tracing_context_output_strides(example_inputs, _Strides(stop.output_strides))
            return _not_built

    return compile_inner


def _planned_only_in(exc: BaseException | None) -> PlannedOnly | None:
    """The `PlannedOnly` behind `exc`, through the wrappers Inductor may raise instead."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, PlannedOnly):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
