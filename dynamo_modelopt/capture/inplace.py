"""Which kernels will write an output over a dying input, for a given order.

When a kernel is the last user of an input buffer of the same size and dtype, Inductor's code
generation lets one of its outputs take over that memory (`buf3 = buf2; del buf2  # reuse`,
`BaseSchedulerNode.decide_inplace_update`). That decision depends on the order: an input can
only be taken over by its last user. We collect, once, the pairs (input, output) each fused
node could reuse by Inductor's structural rules, and apply them to any order to predict what
the generated code will allocate. This lets us compare our order with Inductor's on what the
code really allocates, not only on the model the solver optimises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .._torch_compat import (
    MultiOutputLayout,
    NoneLayout,
    NopKernelSchedulerNode,
    SchedulerNode,
    V,
    can_match_buffer_size,
)
from ..planner import Problem, peak_live_bytes

# fused node name -> [(input buffer, output buffer)] it may reuse, in Inductor's try order
InplaceCandidates = dict[str, list[tuple[str, str]]]


def inplace_candidates(nodes: Sequence[Any]) -> InplaceCandidates:
    """Reuse pairs allowed by the structure of the fused graph (not yet by an order)."""
    scheduler = V.graph.scheduler
    found: InplaceCandidates = {}
    for fused in nodes:
        pairs: list[tuple[str, str]] = []
        for node in fused.get_nodes():
            if not isinstance(node, SchedulerNode):
                continue
            for buf in node.get_outputs():
                out = buf.node
                if (
                    not out.should_allocate()
                    or out.get_inputs_that_alias_output()
                    or out.get_mutation_names()
                ):
                    continue
                for read in node.read_writes.reads:
                    source = scheduler.name_to_buf.get(read.name)
                    if (
                        source is None
                        or source.node is None
                        or source.defining_op is None
                        or isinstance(source.defining_op, NopKernelSchedulerNode)
                        or isinstance(
                            source.node.get_output_spec(), (NoneLayout, MultiOutputLayout)
                        )
                        or not any(u.can_inplace and u.node is node for u in source.users)
                        or not can_match_buffer_size(source.node, out)
                    ):
                        continue
                    pairs.append((read.name, buf.get_name()))
                    break  # one input per output, as Inductor takes the first that fits
        if pairs:
            found[fused.get_name()] = pairs
    return found


def with_inplace_reuse(problem: Problem, order: Sequence[str], pairs: InplaceCandidates) -> Problem:
    """`problem` with each output aliased to the input it will reuse when run in `order`."""
    by_name = {t.name: t for t in problem.tensors}
    position = {name: i for i, name in enumerate(order)}
    # A buffer used only inside the kernel that made it dies in that kernel's step.
    last_use = {
        t.name: max(
            (position[c] for c in t.consumers),
            default=-1 if t.producer is None else position[t.producer],
        )
        for t in problem.tensors
    }
    reused: dict[str, str] = {}
    taken: set[str] = set()
    for node in order:
        for source, output in pairs.get(node, ()):
            if (
                source in by_name
                and output in by_name
                and source not in taken
                and output not in reused
                and not by_name[source].live_to_end
                and by_name[output].alias_of is None
                and last_use[source] == position[node]
            ):
                reused[output] = source
                taken.add(source)
    tensors = [
        dataclasses.replace(t, alias_of=reused[t.name]) if t.name in reused else t
        for t in problem.tensors
    ]
    return dataclasses.replace(problem, tensors=tensors)


def peak_with_inplace_reuse(
    problem: Problem, order: Sequence[str], pairs: InplaceCandidates
) -> int:
    """Predicted peak of the generated code for `order`, in-place reuse included."""
    return peak_live_bytes(with_inplace_reuse(problem, order, pairs), list(order))
