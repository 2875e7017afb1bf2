"""A joint forward+backward FX graph as a `RematProblem`: what the backward holds, step by step.

Steps are the backward's nodes in the joint graph's order (autograd's order, which the
partitioner's backward keeps). At each step, the base holds what no recomputation decision
changes: the tensors the partitioner saves anyway (from the boundary to their last backward
read, directly or through forward nodes it recomputes from them) and the backward's own
tensors (from where they are made to their last read, or to the end for the gradients it
returns; a pointwise tensor read only by a pointwise operation is fused away, so not counted;
one whose last reader is a pointwise operation of its size is overwritten by it in place).
Each storage is counted once, so a view and its base are one tensor. The options are
tensors the partitioner saves that could be recomputed from other saved tensors and the
inputs: saved, one lives from the boundary; recomputed, from its first backward read, for the
run time of the forward operations between it and what is saved.
Parameters and inputs are the caller's and live throughout, so they are left out: they raise
every step alike and move no decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import fx

from ..planner.intervals import LiveRange
from ..planner.lifetimes import live_ranges
from ..planner.problem import Problem
from ..planner.remat import Hold, RecomputeOption, RematProblem
from .hints import hint


def _storage(node: fx.Node) -> int | None:
    from .._torch_compat import get_node_storage

    return get_node_storage(node)


def _storage_bytes(node: fx.Node, size_of: Callable[[fx.Node], int]) -> int:
    """Bytes of the storage behind a node: an `expand` of a small tensor is small, though its
    element count (what `size_of` sees) is large."""
    val = node.meta.get("val")
    try:
        return int(hint(val.untyped_storage().nbytes()))
    except Exception:  # no storage to ask (symbolic, opaque): the element count's bytes
        return size_of(node)


def _backward_reach(
    node: fx.Node,
    step_of: dict[fx.Node, int],
    saved: set[fx.Node] | frozenset[fx.Node] = frozenset(),
) -> list[int]:
    """Backward steps reading `node`, directly or through forward nodes recomputed from it
    (not through `saved` ones: the backward receives those)."""
    found: list[int] = []
    seen: set[fx.Node] = set(saved)
    stack = list(node.users)
    while stack:
        user = stack.pop()
        if user in seen:
            continue
        seen.add(user)
        if user in step_of:
            found.append(step_of[user])
        elif user.op != "output":
            stack.extend(user.users)
    return found


def _read_by(rerun: Iterable[fx.Node]) -> set[fx.Node]:
    """What recomputing `rerun` reads from outside it: the tensors it keeps live until then."""
    ops = set(rerun)
    return {arg for op in ops for arg in op.all_input_nodes if arg not in ops}


def remat_problem(
    joint_graph: fx.Graph,
    is_backward: Callable[[fx.Node], bool],
    inputs: Iterable[fx.Node],
    saved: Iterable[fx.Node],
    candidates: Mapping[fx.Node, Sequence[fx.Node]],
    size_of: Callable[[fx.Node], int],
    runtime_of: Callable[[fx.Node], float],
    max_overhead: float,
) -> RematProblem:
    """The recomputation problem of a joint graph.

    `is_backward`: whether a node belongs to the backward; `inputs`: the primals (the caller's);
    `saved`: the forward nodes the partitioner saves when nothing more is recomputed;
    `candidates`: saved nodes that may be recomputed instead, each with the forward nodes that
    recomputing it runs again (its cost); `size_of`, `runtime_of`: bytes and estimated run time
    of a node; the budget is `max_overhead` times the estimated run time of the joint graph.
    """
    nodes = list(joint_graph.nodes)
    backward = [n for n in nodes if is_backward(n) and n.op != "output"]
    step_of = {n: i for i, n in enumerate(backward)}
    steps = len(backward)
    returned = _returned(joint_graph)
    caller_storages = {_storage(n) for n in inputs} - {None}

    # Saved storages: live range over the backward's steps and bytes. Forward nodes the
    # partitioner recomputes from them are read where the backward needs those, hence the reach.
    saved = set(saved)
    saved_live: dict[int, tuple[LiveRange, int]] = {}
    for node in saved:
        storage, reach = _storage(node), _backward_reach(node, step_of, saved - {node})
        if storage is None or storage in caller_storages or not reach:
            continue
        live, size = saved_live.get(storage, (LiveRange(0, 1), 0))
        saved_live[storage] = (live.hull(reach), max(size, _storage_bytes(node, size_of)))

    options, reads = [], {}
    optional: dict[int, str] = {}  # storage -> option name
    for node, rerun in candidates.items():
        storage = _storage(node)
        if storage not in saved_live or storage in optional:
            continue
        optional[storage] = node.name
        reads[node.name] = {_storage(arg) for arg in _read_by(rerun)} - {storage, None}
    for node, rerun in candidates.items():
        storage = _storage(node)
        if optional.get(storage) != node.name:
            continue
        live, size = saved_live[storage]
        reach = _backward_reach(node, step_of, saved - {node})
        options.append(
            RecomputeOption(
                name=node.name,
                size=size,
                cost=sum(float(runtime_of(n)) for n in rerun),
                saved_live=live,
                recomputed_live=LiveRange(min(reach, default=0), live.end),
                reads=tuple(
                    sorted(
                        optional.get(s, f"storage_{s}") for s in reads[node.name] if s in saved_live
                    )
                ),
            )
        )
    read = {s for r in reads.values() for s in r if s in saved_live and s not in optional}
    holds = tuple(
        Hold(f"storage_{s}", saved_live[s][1], saved_live[s][0].end)
        for s in sorted(read)  # type: ignore[type-var]
    )

    base = [0] * steps
    for storage, (live, size) in saved_live.items():
        if storage not in optional:
            _add(base, live, size)
    made: dict[int, tuple[LiveRange, int]] = {}  # the backward's own storages
    for node in backward:
        storage = _storage(node)
        if storage is None or storage in caller_storages or storage in saved_live:
            continue
        if not likely_materialized(node):
            continue
        size = _storage_bytes(node, size_of)
        first = step_of[node]
        end = steps if node in returned else _live_end(node, step_of, size, size_of)
        live = LiveRange(first, max(end, first + 1))
        old, old_size = made.get(storage, (live, 0))
        made[storage] = (
            LiveRange(min(old.start, live.start), max(old.end, live.end)),
            max(old_size, size),
        )
    for live, size in made.values():
        _add(base, live, size)

    total = joint_runtime(joint_graph, runtime_of)
    return RematProblem(
        options=tuple(options), base=tuple(base), max_cost=max_overhead * total, holds=holds
    )


def _live_end(
    node: fx.Node, step_of: dict[fx.Node, int], size: int, size_of: Callable[[fx.Node], int]
) -> int:
    """The end of the node's live range: one past its last backward read, or the read's own
    step where that read is pointwise and as large, as Inductor then writes its result over
    the dying input (in-place reuse)."""
    readers = [u for u in node.users if u in step_of]
    if not readers:
        return step_of[node] + 1
    last = max(readers, key=step_of.__getitem__)
    if _is_pointwise(last) and _storage_bytes(last, size_of) == size:
        return step_of[last]
    return step_of[last] + 1


def _is_pointwise(node: fx.Node) -> bool:
    return node.op == "call_function" and torch.Tag.pointwise in getattr(node.target, "tags", ())


def likely_materialized(node: fx.Node) -> bool:
    """Whether Inductor will write the node to memory: not when it is pointwise and its one
    reader is pointwise too, as the two fuse into one kernel (the joint graph is before fusion,
    so without this each step of, say, a cross-entropy's backward would count as a buffer)."""
    users = list(node.users)
    return not (_is_pointwise(node) and len(users) == 1 and _is_pointwise(users[0]))


def _add(profile: list[int], live: LiveRange, size: int) -> None:
    for step in range(*live.clipped(len(profile))):
        profile[step] += size


def _returned(graph: fx.Graph) -> set[fx.Node]:
    output = next(n for n in reversed(graph.nodes) if n.op == "output")
    return set(output.all_input_nodes)


@dataclass
class BoundaryStorage:
    """One storage a compiled backward receives from its forward (see `backward_boundary`).

    `names`: the names it is received under (a view joins its base); `nbytes`: its bytes;
    `first_read`: the first step reading it (None: never read); `end`: the end of its live
    range `[0, end)` over the backward's steps (a buffer reusing it in place extends that)."""

    names: list[str]
    nbytes: int
    first_read: int | None = None
    end: int = 1


@dataclass
class BackwardBoundary:
    """What a compiled backward allocates, step by step (`profile`: bytes live at each kernel
    call), and the storages it receives from the forward, by alias root (`saved`)."""

    profile: list[int]
    saved: dict[str, BoundaryStorage]


def backward_boundary(emitted: Problem, order: list[str], profile: list[int]) -> BackwardBoundary:
    """What a compiled backward allocates, step by step, and when it reads each saved tensor.

    `emitted`, `order`, `profile`: the backward as its generated code allocates it, its kernel
    calls in order, and the bytes live at each. For every storage the backward receives from
    the forward (an input other than an output gradient): the names it is received under, its
    bytes, the first step reading it and the end of its live range. `problem_from_boundary`
    builds the recomputation problem from this.
    """
    ranges = live_ranges(emitted, order)
    position = {op: i for i, op in enumerate(order)}
    saved: dict[str, BoundaryStorage] = {}
    for tensor in emitted.tensors:
        if tensor.producer is not None or tensor.name.startswith("tangents_"):
            continue
        root = emitted.alias_root(tensor.name)
        entry = saved.setdefault(root, BoundaryStorage([], emitted.tensor(root).size))
        entry.names.append(tensor.name)
        reads = [position[c] for c in tensor.consumers if c in position]
        if reads:
            first = entry.first_read
            entry.first_read = min(reads) if first is None else min(first, *reads)
        entry.end = ranges.get(root, LiveRange(0, 1)).end
    return BackwardBoundary(list(profile), saved)


def problem_from_boundary(
    boundary: BackwardBoundary,
    candidates: Mapping[fx.Node, Sequence[fx.Node]],
    runtime_of: Callable[[fx.Node], float],
    max_cost: float,
) -> RematProblem:
    """The recomputation problem on a compiled backward's own steps and bytes, within
    `max_cost` (in `runtime_of`'s unit).

    A saved storage is an option when every name it is received under is a candidate: saved,
    it is live from the first step; recomputed, from its first read (where our order puts the
    recomputation). The base is the backward's profile less the options' saved storages. Other
    saved storages a recomputation reads are holds: they stay live until it runs.
    """
    by_name = {node.name: (node, rerun) for node, rerun in candidates.items()}
    saved = boundary.saved
    root_of = {name: root for root, entry in saved.items() for name in entry.names}
    profile = list(boundary.profile)
    options, sources = [], {}
    for root, entry in saved.items():
        names = entry.names
        if not names or entry.first_read is None or not all(n in by_name for n in names):
            continue
        rerun = {op for n in names for op in by_name[n][1]}
        # Saved storages the recomputation reads: kept live until it runs.
        sources[root] = {
            root_of[arg.name] for arg in _read_by(rerun) if root_of.get(arg.name, root) != root
        }
        options.append(
            RecomputeOption(
                name=root,
                size=entry.nbytes,
                cost=sum(float(runtime_of(op)) for op in rerun),
                saved_live=LiveRange(0, entry.end),
                recomputed_live=LiveRange(entry.first_read, entry.end),
                reads=tuple(sorted(sources[root])),
            )
        )
    optional = {o.name for o in options}
    read = set().union(*sources.values())
    holds = tuple(
        Hold(root, saved[root].nbytes, saved[root].end) for root in sorted(read - optional)
    )
    for option in options:
        _add(profile, option.saved_live, -option.size)
    return RematProblem(
        options=tuple(options),
        base=tuple(profile),
        max_cost=max_cost,
        holds=holds,
    )


def joint_runtime(joint_graph: fx.Graph, runtime_of: Callable[[fx.Node], float]) -> float:
    """Estimated run time of a whole joint graph: the unit of the recomputation budget."""
    return sum(
        float(runtime_of(n))
        for n in joint_graph.nodes
        if n.op == "call_function" and isinstance(n.meta.get("val"), torch.Tensor)
    )
