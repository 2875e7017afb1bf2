"""Collectives (all-reduce, all-gather, ...) and their waits keep the sequence Inductor gives them.

Every rank must issue a graph's collectives in the same order, or they pair up wrongly or hang;
Inductor's order is the same on every rank, a planned one need not be (a solver stopped by its
time limit, or a plan that depends on timings measured on each rank). A wait moved ahead of
another collective would also serialize communication Inductor overlaps. So the planned order
is used only where it issues these nodes in Inductor's sequence (compute may move around them:
the dependencies keep each result behind its wait).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def communication_nodes(nodes: Sequence[Any]) -> set[str]:
    """Names of the scheduler nodes that start a collective or wait for one."""
    from .._torch_compat import is_collective, is_wait

    return {
        node.get_name()
        for node in nodes
        if is_collective(getattr(node, "node", None)) or is_wait(getattr(node, "node", None))
    }


def moved_communication(
    inductor_order: Sequence[str], planned_order: Sequence[str], communication: set[str]
) -> str | None:
    """Why the planned order may not be used (it issues communication in another sequence), or
    None where it keeps Inductor's."""
    before = [name for name in inductor_order if name in communication]
    after = [name for name in planned_order if name in communication]
    if before == after:
        return None
    first = next(i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b)
    return (
        f"the planned order issues collective {after[first]} where Inductor issues "
        f"{before[first]}: Inductor's order kept (every rank must issue them alike)"
    )
