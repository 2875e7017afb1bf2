"""Graphs compiled for dynamic sizes (`dynamic=True`, `mark_dynamic`, or Dynamo's automatic
dynamic shapes on a recompile).

The settings search compiles candidates, runs them on the example inputs and compares what
they measure; all of that reads concrete sizes, and evaluating a symbolic size there installs a
guard that specializes it (Dynamo then recompiles, with a full search, for every new size, or
raises a ConstraintViolationError under `mark_dynamic`). A choice measured at one size is no
choice for the others either. So a graph with symbolic sizes compiles Inductor's defaults only,
with our order (an order is valid for every size; it is planned at the sizes' hints, which
installs no guard), and no arena (its offsets would hold for one size only: `inductor/arena.py`
skips symbolic sizes and says so in the report).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch


class ModeloptDynamicShapeWarning(UserWarning):
    """A graph with dynamic sizes is compiled with Inductor's defaults, without the search."""


def symbolic_sizes(example_inputs: Sequence[Any]) -> list[str]:
    """Where the inputs hold symbolic sizes: "input 0 size (s0, 8)" or "input 2 (s1)"."""
    found = []
    for index, value in enumerate(example_inputs):
        if isinstance(value, torch.SymInt):
            found.append(f"input {index} ({value})")
        elif isinstance(value, torch.Tensor) and any(
            isinstance(s, torch.SymInt) for s in (*value.size(), *value.stride())
        ):
            found.append(f"input {index} size ({', '.join(str(s) for s in value.size())})")
    return found


def warn_search_skipped(graph_name: str, where: Sequence[str]) -> None:
    """Say once per compiled graph that the settings search was skipped, and why."""
    shown = ", ".join(where[:3]) + (", ..." if len(where) > 3 else "")
    warnings.warn(
        f"modelopt: graph {graph_name} has dynamic sizes ({shown}): compiled with Inductor's "
        "default settings and the planned order, without the settings search or arenas "
        "(their choices would hold for one size only)",
        ModeloptDynamicShapeWarning,
        stacklevel=3,
    )
