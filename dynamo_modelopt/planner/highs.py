"""HiGHS adapter (highspy) for the MILP models of `milp`: offsets and order stages."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from . import _milp_adapter as drv
from .milp import Milp
from .options import PlannerOptions

# Beyond this many rows HiGHS rarely finds anything in the time we give it (measured).
MAX_ROWS = 20000


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """HiGHS prints its banner from C++ when created, before any option can stop it: send the
    process's stdout (file descriptor 1) to /dev/null meanwhile, so users' output stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _backend(
    m: Milp, options: PlannerOptions, time_limit: float
) -> tuple[str, list[float] | None, float]:
    import highspy
    import numpy as np

    with _stdout_silenced():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", max(0.05, float(time_limit)))
    h.setOptionValue("mip_rel_gap", float(options.relative_gap))
    h.setOptionValue("random_seed", int(options.seed))
    inf = highspy.kHighsInf
    n = m.n_vars
    lb = np.array([max(-inf, v) for v in m.lb], dtype=np.float64)
    ub = np.array([min(inf, v) for v in m.ub], dtype=np.float64)
    h.addVars(n, lb, ub)
    h.changeColsCost(n, np.arange(n, dtype=np.int32), np.array(m.obj, dtype=np.float64))
    ints = np.array([j for j in range(n) if m.integer[j]], dtype=np.int32)
    if len(ints):
        h.changeColsIntegrality(
            len(ints), ints, np.array([highspy.HighsVarType.kInteger] * len(ints))
        )
    lo = np.array([max(-inf, r[1]) for r in m.rows], dtype=np.float64)
    hi = np.array([min(inf, r[2]) for r in m.rows], dtype=np.float64)
    starts, idx, vals = [], [], []
    for coefs, _, _ in m.rows:
        starts.append(len(idx))
        idx.extend(coefs.keys())
        vals.extend(coefs.values())
    h.addRows(
        len(m.rows),
        lo,
        hi,
        len(idx),
        np.array(starts, dtype=np.int32),
        np.array(idx, dtype=np.int32),
        np.array(vals, dtype=np.float64),
    )
    if any(s is not None for s in m.start):
        sol = highspy.HighsSolution()
        sol.col_value = [0.0 if s is None else float(s) for s in m.start]
        sol.value_valid = True
        try:
            h.setSolution(sol)
        except Exception:
            pass
    h.run()
    ms = h.getModelStatus()
    info = h.getInfo()
    has = info.primal_solution_status == 2
    if ms == highspy.HighsModelStatus.kOptimal:
        status = "optimal"
    elif ms == highspy.HighsModelStatus.kInfeasible:
        status = "infeasible"
    else:
        status = "feasible" if has else "unknown"
    values = list(h.getSolution().col_value) if has else None
    bound = float(info.mip_dual_bound) if status != "infeasible" else 0.0
    if bound != bound or abs(bound) == inf:
        bound = 0.0
    return status, values, bound


class HighsSolver(drv.MilpSolver):
    name = "highs"
    backend = staticmethod(_backend)

    def available(self) -> tuple[bool, str]:
        try:
            import highspy  # noqa: F401
            import numpy  # noqa: F401
        except Exception as exc:
            return False, f"highspy not importable: {exc}"
        return True, ""

    def fits(self, task: Any, options: PlannerOptions) -> str:
        size = drv.model_size(task, options, MAX_ROWS)
        if isinstance(size, str):
            return size
        _, nr = size
        return "" if nr <= MAX_ROWS else f"model too large for HiGHS ({nr} rows)"
