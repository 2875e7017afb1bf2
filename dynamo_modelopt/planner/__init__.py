"""Torch-free memory planner: operation order and arena offsets that minimise peak memory.

After MODeL (Steiner et al., ICML 2023): order the operations to minimise the peak of live
bytes, and place every buffer at an address so the arena is as small as the order allows.
"""

from .graph import fold_aliases
from .lifetimes import is_topological, live_bytes_profile, live_ranges, peak_live_bytes
from .options import PlannerOptions
from .problem import Operation, Plan, Problem, Tensor, make_problem
from .solve import plan
from .validate import ErrorKind, InvalidPlanError, PlanError, check_plan, validate

__all__ = [
    "ErrorKind",
    "InvalidPlanError",
    "Operation",
    "Plan",
    "PlanError",
    "PlannerOptions",
    "Problem",
    "Tensor",
    "check_plan",
    "fold_aliases",
    "is_topological",
    "live_bytes_profile",
    "live_ranges",
    "make_problem",
    "peak_live_bytes",
    "plan",
    "validate",
]
