"""The private parts of torch that modelopt reads, in one place.

Inductor's scheduler nodes, its IR layouts, its virtualized graph `V` and its memory and wrapper
passes are not public API and change between releases; the capture and the order pass import
them from here, so a torch upgrade starts with reading this one file. (Importing them costs
nothing extra: `inductor/arena.py` needs Inductor's memory planner, which loads them all.) The
C++ backend is loaded only where it is asked for, as Inductor itself does.

Still importing torch privately on their own: `inductor/arena.py` (it subclasses Inductor's
memory planner), `capture/workspace.py` and the FX-level passes (`accumulate.py`,
`saved_set.py`, `plan_only.py`, `backward_layout.py`, `collectives.py`, `report_cache.py`).
"""

from __future__ import annotations

from typing import Any

import torch._guards
from torch._inductor.codegen.wrapper import ReuseLine, can_match_buffer_size
from torch._inductor.ir import (
    MultiOutput,
    MultiOutputLayout,
    NoneLayout,
    NonOwningLayout,
    is_contiguous_strides_for_shape,
)
from torch._inductor.memory import get_freeable_input_buf, reorder_for_peak_memory
from torch._inductor.scheduler import (
    BaseSchedulerNode,
    ExternKernelSchedulerNode,
    FusedSchedulerNode,
    NopKernelSchedulerNode,
    SchedulerBuffer,
    SchedulerNode,
)
from torch._inductor.utils import OrderedSet, get_dtype_size
from torch._inductor.virtualized import V

try:
    from torch._inductor.custom_graph_pass import CustomSchedulerPass
except ImportError:  # torch 2.11: no such class; `_post_fusion_custom_pass` takes any callable
    CustomSchedulerPass = object  # type: ignore[misc,assignment]

TracingContext = torch._guards.TracingContext


def cpp_scheduling() -> type:
    """Inductor's C++ backend class (its module is loaded on first use)."""
    from torch._inductor.codegen.cpp import CppScheduling

    return CppScheduling


def size_hint_or_throw(expr: Any) -> Any:
    """The value of a symbolic size at the shapes being compiled; raises for an unbacked one."""
    sizevars = V.graph.sizevars
    # newer torch names it guarding_hint_or_throw; torch 2.11 has size_hint_or_throw.
    hint = getattr(sizevars, "guarding_hint_or_throw", None) or sizevars.size_hint_or_throw
    return hint(expr)


__all__ = [
    "BaseSchedulerNode",
    "CustomSchedulerPass",
    "ExternKernelSchedulerNode",
    "FusedSchedulerNode",
    "MultiOutput",
    "MultiOutputLayout",
    "NonOwningLayout",
    "NoneLayout",
    "NopKernelSchedulerNode",
    "OrderedSet",
    "ReuseLine",
    "SchedulerBuffer",
    "SchedulerNode",
    "TracingContext",
    "V",
    "can_match_buffer_size",
    "cpp_scheduling",
    "get_dtype_size",
    "get_freeable_input_buf",
    "is_contiguous_strides_for_shape",
    "reorder_for_peak_memory",
    "size_hint_or_throw",
]
