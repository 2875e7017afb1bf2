"""Inductor's fused scheduler nodes and their buffers, as a planning `Problem`.

We read the memory-planning records that `torch/_inductor/memory.py` attaches to every node
and buffer (`mpi_node`, `mpi_buffer`: sizes, successors for liveness and for ordering), so the
problem's lifetimes are the ones the generated wrapper follows: a buffer is allocated before its
producer runs and freed after its last user; inputs that Inductor may free (a backward's saved
activations) are freed after their last user; outputs live to the end.

Corrections over memory.py's estimate, where the generated code allocates differently:
- multi-output kernels: each output is allocated by the kernel itself, so each child buffer
  is live from the parent kernel's step (memory.py charges the sum to the parent instead);
- mutation renames (`buf1` mutating `buf0`) share `buf0`'s memory: size 0, liveness forwarded;
- extern kernels' internal workspace (see `workspace.py`) is a tensor live during their step;
- a buffer written through slices (a concatenation: kernels write into `NonOwningLayout`
  views of it) is allocated before its first writer runs, so it is live from that writer;
  the slices are aliases of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .._torch_compat import (
    BaseSchedulerNode,
    FusedSchedulerNode,
    MultiOutput,
    MultiOutputLayout,
    NoneLayout,
    NonOwningLayout,
    NopKernelSchedulerNode,
    OrderedSet,
    SchedulerBuffer,
    SchedulerNode,
    TracingContext,
    V,
    cpp_scheduling,
    get_dtype_size,
    get_freeable_input_buf,
    is_contiguous_strides_for_shape,
    size_hint_or_throw,
)
from ..planner.graph import fold_aliases
from ..planner.problem import Operation, Problem, Tensor
from .workspace import extern_workspace_bytes

# Inductor's CPU and CUDA allocations are at least this aligned; offsets in our arena follow.
ALLOCATION_ALIGNMENT = 64


class UnplannableGraph(Exception):
    """The graph has something the planner cannot model; the reason says what."""


@dataclass
class CapturedGraph:
    """A problem and the scheduler nodes its operations stand for."""

    problem: Problem
    node_by_name: dict[str, BaseSchedulerNode]

    def nodes_in(self, order: Sequence[str]) -> list[BaseSchedulerNode]:
        return [self.node_by_name[name] for name in order]


def _size_hint(expr: Any) -> int:
    """A concrete size: the value of a symbolic size at the shapes being compiled.

    Order is safe for any shape, so a backed symbolic size is planned at its hint; a size that
    depends on data (an unbacked symbol) has no such value and makes the graph unplannable.
    """
    try:
        return int(size_hint_or_throw(expr))
    except Exception as exc:
        raise UnplannableGraph(f"size {expr} depends on data and has no bound ({exc})") from exc


def _buffer_bytes(buf: SchedulerBuffer) -> int:
    return _node_bytes(buf.node)


def _node_bytes(node: Any) -> int:
    """Bytes of the elements of an IR node (buffer or graph output)."""
    return _size_hint(node.get_numel()) * get_dtype_size(node.get_dtype())


def _multi_output_parent(buf: SchedulerBuffer, scheduler: Any) -> BaseSchedulerNode | None:
    """The fused node of the kernel that really allocated a MultiOutput child buffer."""
    ir_node = buf.node
    if not isinstance(ir_node, MultiOutput) or not ir_node.inputs:
        return None
    parent_name = ir_node.inputs[0].get_name()
    parent_buf = scheduler.name_to_buf.get(parent_name)
    if parent_buf is None or parent_buf.defining_op is None:
        return None
    return scheduler.name_to_fused_node.get(parent_buf.defining_op.get_name())


def _names(nodes: Iterable[BaseSchedulerNode]) -> tuple[str, ...]:
    return tuple(sorted({n.get_name() for n in nodes}))


def input_views_among_outputs(fx_graph: Any) -> set[str]:
    """Names of a graph's outputs that are views of its inputs (no memory of their own).

    A forward saves such views for the backward (a weight's transpose, say); the backward then
    receives them as inputs that memory.py would count, and free, as if they owned memory.
    """
    output = next(n for n in reversed(fx_graph.nodes) if n.op == "output")
    found: set[str] = set()
    for value in output.args[0]:
        node = value
        while getattr(node, "op", None) == "call_function" and _is_view(node):
            node = node.args[0]
        if getattr(node, "op", None) == "placeholder" and value is not node:
            found.add(value.name)
    return found


@dataclass(frozen=True)
class SavedStorage:
    """The memory behind one tensor a forward hands to its backward."""

    storage: str  # the forward's buffer (or input) that owns the memory
    nbytes: int  # that buffer's whole storage
    copied_input: bool  # named like an input (`primals_3`) but a fresh copy
    held_by_caller: bool = False  # also (a view of) an output the forward's caller receives


def caller_output_range() -> range | None:
    """Positions, among a training forward's outputs, of what its caller receives.

    AOTAutograd's forward returns the new values of mutated inputs (copied back, then dropped),
    the user's outputs and the bases of outputs that are views, then what it saves for the
    backward. The caller holds the user's outputs at least until its backward has run (a
    `loss.backward()` while `outputs.logits` is still referenced), so they stay allocated
    during the backward even where the backward is done with them. None when unknown.
    """
    context = TracingContext.try_get()
    meta = getattr(context, "fw_metadata", None)
    if meta is None or getattr(meta, "num_forward_tokens", 0):
        return None
    start = meta.num_mutated_inp_runtime_indices
    return range(start, start + meta.num_outputs + meta.num_intermediate_bases)


def _storage_bytes(buffer: Any) -> int:
    """Bytes of the whole storage behind an IR buffer or graph input."""
    return _size_hint(buffer.get_layout().storage_size()) * get_dtype_size(buffer.get_dtype())


def _readers(nodes: Sequence[BaseSchedulerNode], name: str) -> list[BaseSchedulerNode]:
    """The nodes that read buffer `name`."""
    return [n for n in nodes if any(d.name == name for d in n.read_writes.reads)]


def _storage_of(ir_output: Any) -> tuple[str, int] | None:
    """(owning buffer, bytes of its whole storage) of a graph output; None if it has none."""
    try:
        storage = ir_output.get_name()
        return storage, _storage_bytes(V.graph.get_buffer(storage))
    except Exception:  # constants, None outputs: nothing of their own
        return None


def caller_held_storages(graph_outputs: Sequence[Any], positions: range | None) -> dict[str, int]:
    """Storage -> bytes of the forward outputs at `positions` that own memory of their own."""
    held: dict[str, int] = {}
    for index in positions or ():
        if index >= len(graph_outputs):
            break
        found = _storage_of(graph_outputs[index])
        if found is not None and found[0] not in V.graph.graph_inputs:
            held[found[0]] = found[1]
    return held


def gradient_layout_copy_bytes(graph_outputs: Sequence[Any]) -> int:
    """Bytes of the largest backward output that autograd will copy once more on its way into
    `.grad`: a gradient in another layout than its parameter's (a channels-last weight gradient
    under layout optimization; parameters are contiguous). `AccumulateGrad` then allocates a
    copy in the parameter's layout while every gradient is still held, one parameter at a time
    (where `.grad` was None; an existing `.grad` is added to in place). 0 if none."""
    largest = 0
    for output in graph_outputs:
        try:
            sizes = [_size_hint(n) for n in output.get_size()]
            strides = [_size_hint(n) for n in output.get_stride()]
            nbytes = _node_bytes(output)
        except Exception:  # None gradients, constants: nothing autograd copies
            continue
        if not is_contiguous_strides_for_shape(strides, sizes):
            largest = max(largest, nbytes)
    return largest


def end_of_graph_bytes(problem: Problem) -> int:
    """Bytes still allocated when the graph returns: its outputs and what stays live with them."""
    return sum(t.size for t in fold_aliases(problem).tensors if t.live_to_end)


def saved_storages(
    fx_graph: Any, graph_outputs: Sequence[Any], held: dict[str, int] | None = None
) -> dict[str, SavedStorage]:
    """The storage behind each forward output, by the name the backward receives it under.

    Inductor's own estimate sizes a backward input by the elements the backward reads, but a
    saved view (`permute_2` of a fused q/k/v buffer) keeps its whole buffer alive, and several
    saved views may share one buffer. And where the FX graph saves a parameter or the user's
    input that Inductor re-lays out (channels-last for a convolution), the backward receives a
    fresh copy under the input's name (`primals_3`), which the estimate never counts at all.
    """
    output = next(n for n in reversed(fx_graph.nodes) if n.op == "output")
    values = list(output.args[0])
    if len(values) != len(graph_outputs):
        return {}
    held = held or {}
    found: dict[str, SavedStorage] = {}
    for value, ir_output in zip(values, graph_outputs, strict=True):
        name = getattr(value, "name", None)
        storage_and_bytes = _storage_of(ir_output)
        if storage_and_bytes is None:
            continue
        storage, nbytes = storage_and_bytes
        if name is None or storage in V.graph.graph_inputs:
            continue  # a forward input passed through: the caller's memory
        copied = getattr(value, "op", None) == "placeholder"
        found[name] = SavedStorage(storage, nbytes, copied, storage in held)
    return found


def _is_view(node: Any) -> bool:
    schema = getattr(node.target, "_schema", None)
    if schema is None or not schema.returns or not node.args:
        return False
    alias = schema.returns[0].alias_info
    return alias is not None and not alias.is_write


def problem_from_scheduler(
    nodes: Sequence[BaseSchedulerNode],
    graph_inputs: Iterable[str],
    graph_outputs: Iterable[str],
    name: str = "graph",
    inputs_not_owned: Iterable[str] = (),
    saved: dict[str, SavedStorage] | None = None,
    measure_workspace: bool = True,
    held_by_caller: dict[str, int] | None = None,
) -> CapturedGraph:
    """Build the planning problem of fused `nodes` in their current order.

    `inputs_not_owned` are inputs that are views of memory the graph never frees (a backward's
    saved views of parameters): they are left out. `saved` gives a backward the storage behind
    each saved tensor (see `saved_storages`): inputs are sized by it, views of one storage
    alias each other, and copies Inductor's estimate skips (a parameter re-laid out for a
    convolution, saved under the parameter's name) are freed after their last reader, as the
    wrapper's `del` of the input does (AOTAutograd hands the backward the only reference).

    For a backward (`saved` given), also the gradients of the forward's outputs (`tangents_*`,
    allocated before the backward and freed after their last use), which Inductor's estimate
    leaves out. Whether the caller still holds the forward's outputs during the backward is up
    to the caller: the problem assumes it does not (`loss = model(x).loss`), and
    `meta["held_by_caller"]` says what would stay live if it did (`peak_if_outputs_held`):
    the saved tensors that are outputs too, and the bytes of the other outputs
    (`held_by_caller`: storage -> bytes of each forward output the caller receives).

    Requires memory.py's planning info on the nodes and buffers, i.e. run after
    `prepare_planning_info` (which Inductor's `reorder_for_peak_memory` calls).
    """
    scheduler = V.graph.scheduler
    outputs = set(graph_outputs)
    node_by_name = {n.get_name(): n for n in nodes}
    if len(node_by_name) != len(nodes):
        raise UnplannableGraph("two scheduler nodes share a name")
    mutation_renamed = set(scheduler.mutation_real_name)

    freeable_inputs = get_freeable_input_buf(list(nodes), OrderedSet(graph_inputs))
    not_owned = set(inputs_not_owned)
    saved = saved or {}
    tensors = _input_tensors(freeable_inputs, outputs, not_owned, saved)
    meta: dict[str, Any] = {}
    if saved:
        tensors += _output_gradients(nodes, freeable_inputs)
        meta["held_by_caller"] = _held_by_caller(saved, freeable_inputs, held_by_caller or {})
    tensors += _copied_inputs(nodes, saved, freeable_inputs, not_owned)
    for node in nodes:
        tensors += _node_tensors(node, scheduler, outputs, mutation_renamed, measure_workspace)

    precedences = {
        (pred.get_name(), node.get_name())
        for node in nodes
        for pred in node.mpi_node.pred_nodes
        if pred.get_name() in node_by_name
    }
    tensors = _start_at_first_write(tensors, [n.get_name() for n in nodes], precedences)
    problem = Problem(
        operations=[Operation(n.get_name()) for n in nodes],
        tensors=tensors,
        precedences=sorted(precedences),
        name=name,
        meta=meta,
    )
    return CapturedGraph(problem=problem, node_by_name=node_by_name)


def _input_tensors(
    freeable_inputs: Any, outputs: set[str], not_owned: set[str], saved: dict[str, SavedStorage]
) -> list[Tensor]:
    """The inputs Inductor may free, each sized by the storage behind it where the forward
    saved it; views of one saved storage alias the first of them."""
    tensors: list[Tensor] = []
    first_of_storage: dict[str, str] = {}
    for buf_name, input_buf in freeable_inputs.items():
        if buf_name in not_owned:
            continue
        info = input_buf.mpi_buffer
        size, alias_of = int(info.size_free), None
        if buf_name in saved:
            size = max(size, saved[buf_name].nbytes)
            alias_of = first_of_storage.setdefault(saved[buf_name].storage, buf_name)
        tensors.append(
            Tensor(
                name=buf_name,
                size=size,
                producer=None,
                consumers=_names(info.succ_nodes),
                live_to_end=buf_name in outputs,
                placed=False,
                alignment=ALLOCATION_ALIGNMENT,
                alias_of=alias_of if alias_of != buf_name else None,
            )
        )
    return tensors


def _held_by_caller(
    saved: dict[str, SavedStorage], freeable_inputs: Any, held_by_caller: dict[str, int]
) -> dict[str, Any]:
    """What stays live if the caller holds the forward's outputs through the backward: the
    saved tensors that are outputs too, and the bytes of the other outputs."""
    received = {s.storage for n, s in saved.items() if n in V.graph.graph_inputs}
    return {
        "tensors": sorted(n for n, s in saved.items() if s.held_by_caller and n in freeable_inputs),
        "other_bytes": sum(
            size for storage, size in held_by_caller.items() if storage not in received
        ),
    }


def _copied_inputs(
    nodes: Sequence[BaseSchedulerNode],
    saved: dict[str, SavedStorage],
    freeable_inputs: Any,
    not_owned: set[str],
) -> list[Tensor]:
    """Saved inputs that Inductor re-laid out: a copy the backward receives under the input's
    name, which Inductor's estimate never counts."""
    tensors: list[Tensor] = []
    for buf_name, storage in saved.items():
        if not storage.copied_input or buf_name in freeable_inputs or buf_name in not_owned:
            continue
        if buf_name not in V.graph.graph_inputs:
            continue
        readers = _readers(nodes, buf_name)
        tensors.append(
            Tensor(
                name=buf_name,
                size=storage.nbytes,
                producer=None,
                consumers=_names(readers),
                # Inductor counts `primals_*` as never freed, but this one is a copy that the
                # wrapper's `del` after its last reader frees, unless the caller holds it too
                live_to_end=storage.held_by_caller or not readers,
                placed=False,
                alignment=ALLOCATION_ALIGNMENT,
            )
        )
    return tensors


def _node_tensors(
    node: BaseSchedulerNode,
    scheduler: Any,
    outputs: set[str],
    mutation_renamed: set[str],
    measure_workspace: bool,
) -> list[Tensor]:
    """What one fused node allocates: an extern kernel's workspace, and each output buffer
    with memory of its own (a slice written in place aliases the buffer it is a view of)."""
    tensors: list[Tensor] = []
    workspace = extern_workspace_bytes(
        getattr(node, "node", None), _size_hint, measure=measure_workspace
    )
    if workspace:
        tensors.append(
            Tensor(
                name=f"{node.get_name()}_workspace",
                size=workspace,
                producer=node.get_name(),
                placed=False,
                alignment=ALLOCATION_ALIGNMENT,
            )
        )
    for buf in node.get_outputs():
        buf_name = buf.get_name()
        layout = getattr(buf.node, "layout", None)
        if buf_name in mutation_renamed or isinstance(layout, (NoneLayout, MultiOutputLayout)):
            continue  # no memory of its own
        size = _buffer_bytes(buf)
        if size == 0:
            continue
        producer = _multi_output_parent(buf, scheduler) or node
        tensors.append(
            Tensor(
                name=buf_name,
                size=size,
                producer=producer.get_name(),
                consumers=_names(buf.mpi_buffer.succ_nodes),
                live_to_end=buf_name in outputs,
                alignment=ALLOCATION_ALIGNMENT,
                alias_of=layout.view.data.get_name()
                if isinstance(layout, NonOwningLayout)
                else None,
            )
        )
    return tensors


def _output_gradients(nodes: Sequence[BaseSchedulerNode], freeable_inputs: Any) -> list[Tensor]:
    """A backward's `tangents_*` inputs, which Inductor's estimate counts as never freed."""
    extras: list[Tensor] = []
    for name, value in V.graph.graph_inputs.items():
        if not name.startswith("tangents_") or name in freeable_inputs:
            continue
        try:
            size = _storage_bytes(value)
        except Exception:  # not a tensor (a symbolic size)
            continue
        extras.append(
            Tensor(
                name=name,
                size=size,
                producer=None,
                consumers=_names(_readers(nodes, name)),
                placed=False,
                alignment=ALLOCATION_ALIGNMENT,
            )
        )
    return extras


def _start_at_first_write(
    tensors: list[Tensor], order: list[str], precedences: set[tuple[str, str]]
) -> list[Tensor]:
    """Make a buffer written through aliases live from its first writer, in `order`.

    The earliest writer in the given (topological) order becomes the buffer's producer; its
    own producer and the other writers become uses, and precedences keep the earliest writer
    first, so the lifetime stays exact in every order the planner may choose. (Adding
    `first -> w` cannot close a cycle: `w` comes after `first` in a topological order.)
    An alias whose base is not a planned tensor keeps its own memory.
    """
    by_name = {t.name: t for t in tensors}
    tensors = [
        t if t.alias_of is None or t.alias_of in by_name else dataclasses.replace(t, alias_of=None)
        for t in tensors
    ]
    by_name = {t.name: t for t in tensors}

    def root(name: str) -> str:
        while by_name[name].alias_of is not None:
            name = by_name[name].alias_of  # type: ignore[assignment]
        return name

    position = {name: i for i, name in enumerate(order)}
    writers: dict[str, set[str]] = {}
    for t in tensors:
        if t.alias_of is not None and t.producer is not None:
            writers.setdefault(root(t.name), set()).add(t.producer)
    out = []
    for t in tensors:
        group_writers = writers.get(t.name)
        if group_writers and t.producer is not None:
            everyone = group_writers | {t.producer}
            first = min(everyone, key=position.__getitem__)
            precedences.update((first, w) for w in everyone if w != first)
            uses = set(t.consumers) | (everyone - {first})
            t = dataclasses.replace(t, producer=first, consumers=tuple(sorted(uses)))
        out.append(t)
    return out


def as_emitted(problem: Problem, removed: Iterable[str], inplace_reuses: dict[str, str]) -> Problem:
    """The problem as the generated code really allocates it, once Inductor has emitted it.

    Code generation makes two memory decisions after the order is fixed: buffers used only
    inside one fused kernel are removed (never allocated), and an output may take over the
    memory of an input that dies in the same kernel (`buf3 = buf2; del buf2  # reuse`).
    `removed` and `inplace_reuses` (output -> input, the wrapper's `reuses`) are those decisions.
    """
    removed = set(removed)
    known = {t.name for t in problem.tensors}
    tensors: list[Tensor] = []
    for t in problem.tensors:
        if t.name in removed:
            continue
        base = inplace_reuses.get(t.name)
        if base is not None and base in known and base not in removed and t.alias_of is None:
            t = dataclasses.replace(t, alias_of=base)
        tensors.append(t)
    return Problem(
        operations=list(problem.operations),
        tensors=tensors,
        precedences=list(problem.precedences),
        name=problem.name,
        meta={**problem.meta, "emitted": True},
    )


def kernel_call_steps(order: Sequence[str], nodes: dict[str, Any]) -> list[list[str]]:
    """The steps of the generated code: the fused nodes of `order` grouped by kernel call.

    Inductor's C++ backend collects consecutive fused nodes into one kernel group and writes the
    group's call, and the frees of every buffer its nodes used last, only when the group is
    flushed: before an extern kernel, a template or a device change (`Scheduler.codegen`,
    `CppScheduling.flush`). Each buffer a group writes is allocated before its call and each
    input it reads last is freed after it, so the whole group is one step of the code. Triton
    kernels, extern kernels and templates are each a step of their own.
    """
    scheduler = V.graph.scheduler
    steps: list[list[str]] = []
    open_device: Any = None  # device of the C++ group being collected, None when closed
    for name in order:
        node = nodes[name]
        if isinstance(node, NopKernelSchedulerNode):
            if open_device is not None:
                steps[-1].append(name)
            else:
                steps.append([name])
            continue
        device = node.get_device()
        grouped = (
            device is not None
            and not (node.is_extern() or node.is_template() or node.is_foreach())
            and isinstance(scheduler.get_backend(device), cpp_scheduling())
        )
        if grouped and open_device == device:
            steps[-1].append(name)
        else:
            steps.append([name])
        open_device = device if grouped else None
    return steps


def merge_steps(problem: Problem, steps: Sequence[Sequence[str]]) -> tuple[Problem, list[str]]:
    """`problem` with each step's operations run as one operation; and the order of the steps.

    A step is named by its operations joined with "+" (a step of one keeps its name).
    """
    step_of = {op: "+".join(step) for step in steps for op in step}
    order = ["+".join(step) for step in steps]
    tensors = [
        dataclasses.replace(
            t,
            producer=None if t.producer is None else step_of[t.producer],
            consumers=tuple(dict.fromkeys(step_of[c] for c in t.consumers)),
        )
        for t in problem.tensors
    ]
    merged = Problem(
        operations=[Operation(name) for name in order],
        tensors=tensors,
        name=problem.name,
        meta={**problem.meta, "steps": "kernel calls"},
    )
    return merged, order


def kernel_local_buffers(nodes: Sequence[BaseSchedulerNode]) -> set[str]:
    """Buffers code generation will most likely remove: all their users sit in the kernel that
    writes them (Inductor's `remove_kernel_local_buffers`, which decides per kernel at codegen
    time; predicted here from the fused nodes so that orders can be compared before codegen)."""
    scheduler = V.graph.scheduler
    mutated = set(scheduler.mutation_renames) | set(scheduler.mutation_real_name)
    removed: set[str] = set()
    for node in nodes:
        if not isinstance(node, (SchedulerNode, FusedSchedulerNode)):
            continue  # extern kernels allocate what they return
        inside = {n.get_name() for n in node.get_nodes()}
        for buf in node.get_outputs():
            users = buf.users  # the graph's output is a user named "OUTPUT": never inside
            if buf.get_name() in mutated or not users:
                continue
            if all(user.is_weak or user.get_name() in inside for user in users):
                removed.add(buf.get_name())
    return removed
