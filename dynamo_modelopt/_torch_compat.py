"""The private parts of torch that modelopt reads, in one place.

Inductor's scheduler nodes, its IR, its virtualized graph `V`, its memory, wrapper and pool
planning passes, the min-cut partitioner's helpers, Inductor's and functorch's config modules,
Dynamo's counters and the tracing contexts are not public API and change between releases; the
rest of the package imports them from here, so a torch upgrade starts with reading this one
file. (Importing them costs nothing extra: `import dynamo_modelopt` loaded all of these modules
before they were gathered here.) What loads more is loaded only where it is asked for, through
the functions below (`compile_fx_functions`, `cpp_scheduling`), as Inductor itself does.

Left outside on purpose, plain attribute reads where an accessor would only hide the call:
`torch._C._autograd._profiler_enabled()` and `torch._C._cuda_isHistoryEnabled` (measure.py,
capture/runtime.py, capture/workspace.py), the `torch._ops.OpOverload` checks of
capture/runtime.py and capture/workspace.py, and `torch._functorch.config.patch` in decide.py.
"""

from __future__ import annotations

from typing import Any

import torch._guards
from torch._dynamo.utils import counters
from torch._functorch import config as functorch_config
from torch._functorch.partitioners import (
    _size_of,
    classify_nodes,
    is_rng_op,
    min_cut_rematerialization_partition,
)
from torch._inductor import config as inductor_config
from torch._inductor import list_mode_options
from torch._inductor.codegen.memory_planning import (
    Allocation,
    AllocationPool,
    AllocationTreeNode,
    AllocFromPoolLine,
    BufferGroup,
    DeallocFromPoolLine,
    LiveRanges,
    MemoryPlanner,
)
from torch._inductor.codegen.wrapper import (
    AllocateLine,
    EnterSubgraphLine,
    FreeIfNotReusedLine,
    ReuseLine,
    can_match_buffer_size,
)
from torch._inductor.custom_graph_pass import CustomGraphPass
from torch._inductor.fx_utils import get_node_storage
from torch._inductor.ir import (
    ExternKernelAlloc,
    ExternKernelOut,
    FallbackKernel,
    IRNode,
    MultiOutput,
    MultiOutputLayout,
    NoneLayout,
    NonOwningLayout,
    is_contiguous_strides_for_shape,
)
from torch._inductor.memory import get_freeable_input_buf, reorder_for_peak_memory
from torch._inductor.runtime.cache_dir_utils import cache_dir
from torch._inductor.scheduler import (
    BaseSchedulerNode,
    ExternKernelSchedulerNode,
    FusedSchedulerNode,
    NopKernelSchedulerNode,
    SchedulerBuffer,
    SchedulerNode,
)
from torch._inductor.utils import (
    OrderedSet,
    get_dtype_size,
    is_collective,
    is_wait,
    set_tracing_context_output_strides,
)
from torch._inductor.virtualized import V
from torch._ops import OpOverload
from torch._subclasses.fake_tensor import FakeTensor

try:
    from torch._inductor.custom_graph_pass import CustomSchedulerPass
except ImportError:  # torch 2.11: no such class; `_post_fusion_custom_pass` takes any callable
    CustomSchedulerPass = object  # type: ignore[misc,assignment]

try:  # torch >= 2.10
    from torch._inductor.custom_graph_pass import CustomPartitionerFn
except ImportError:  # pragma: no cover - older torch: the planned saved set is not offered
    CustomPartitionerFn = None  # type: ignore[assignment,misc]

TracingContext = torch._guards.TracingContext
CompileContext = torch._guards.CompileContext


def compile_fx_functions() -> tuple[Any, Any]:
    """Inductor's `compile_fx` and `compile_fx_inner` (their module is loaded on first use)."""
    from torch._inductor.compile_fx import compile_fx, compile_fx_inner

    return compile_fx, compile_fx_inner


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
    "AllocFromPoolLine",
    "AllocateLine",
    "Allocation",
    "AllocationPool",
    "AllocationTreeNode",
    "BaseSchedulerNode",
    "BufferGroup",
    "CompileContext",
    "CustomGraphPass",
    "CustomPartitionerFn",
    "CustomSchedulerPass",
    "DeallocFromPoolLine",
    "EnterSubgraphLine",
    "ExternKernelAlloc",
    "ExternKernelOut",
    "ExternKernelSchedulerNode",
    "FakeTensor",
    "FallbackKernel",
    "FreeIfNotReusedLine",
    "FusedSchedulerNode",
    "IRNode",
    "LiveRanges",
    "MemoryPlanner",
    "MultiOutput",
    "MultiOutputLayout",
    "NonOwningLayout",
    "NoneLayout",
    "NopKernelSchedulerNode",
    "OpOverload",
    "OrderedSet",
    "ReuseLine",
    "SchedulerBuffer",
    "SchedulerNode",
    "TracingContext",
    "V",
    "_size_of",
    "cache_dir",
    "can_match_buffer_size",
    "classify_nodes",
    "compile_fx_functions",
    "counters",
    "cpp_scheduling",
    "functorch_config",
    "get_dtype_size",
    "get_freeable_input_buf",
    "get_node_storage",
    "inductor_config",
    "is_collective",
    "is_contiguous_strides_for_shape",
    "is_rng_op",
    "is_wait",
    "list_mode_options",
    "min_cut_rematerialization_partition",
    "reorder_for_peak_memory",
    "set_tracing_context_output_strides",
    "size_hint_or_throw",
]
