"""Concrete values of symbolic sizes for cost estimates, read without installing guards.

`int()`, `float()` or a comparison on a SymInt installs a guard that specializes the dynamic
size it holds (Dynamo then recompiles for every new size, or raises a ConstraintViolationError
under `mark_dynamic`); an estimate needs only the value at the sizes being compiled.
"""

from __future__ import annotations

from typing import Any

import torch


def hint(value: Any) -> Any:
    """`value`, or a SymInt's value at the example inputs' sizes, without a guard."""
    from torch.fx.experimental.symbolic_shapes import optimization_hint

    return optimization_hint(value) if isinstance(value, torch.SymInt) else value
