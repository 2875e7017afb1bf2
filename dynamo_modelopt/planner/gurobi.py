"""Gurobi adapter for the MILP models of `milp` (MODeL's time-indexed formulation).

The pip wheel's bundled license refuses models above 2000 variables or 2000 constraints
(GurobiError 10010, raised at optimize()). `license_limit` probes that once per process with
an empty 2001-variable model in a quiet environment, and `fits` declines larger models with a
reason instead of failing mid-solve.
"""

from __future__ import annotations

import functools
from typing import Any

from . import _milp_adapter as drv
from .milp import Milp
from .options import PlannerOptions

SIZE_LIMITED = 10010


@functools.cache
def license_limit() -> tuple[bool, int | None, str]:
    """(usable, size limit or None when unlimited, reason)."""
    try:
        import gurobipy as gp
    except Exception as exc:
        return False, None, f"gurobipy not importable: {exc}"
    try:
        env = gp.Env(empty=True)
        env.setParam("OutputFlag", 0)
        env.start()
    except Exception as exc:
        return False, None, f"no Gurobi license: {exc}"
    try:
        model = gp.Model(env=env)
        model.addVars(2001)
        model.optimize()
        model.dispose()
        return True, None, ""
    except gp.GurobiError as exc:
        if exc.errno == SIZE_LIMITED:
            return True, 2000, "size-limited license (2000 variables/constraints)"
        return False, None, f"Gurobi probe failed: {exc}"
    finally:
        env.dispose()


def _backend(
    m: Milp, options: PlannerOptions, time_limit: float
) -> tuple[str, list[float] | None, float]:
    import gurobipy as gp

    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 0)
    env.start()
    try:
        model = gp.Model(env=env)
        model.Params.TimeLimit = max(0.05, time_limit)
        model.Params.Threads = options.threads
        model.Params.Seed = options.seed
        model.Params.MIPGap = options.relative_gap
        model.Params.MIPGapAbs = 0.0 if options.relative_gap == 0 else 1e-10
        vtypes = [gp.GRB.INTEGER if i else gp.GRB.CONTINUOUS for i in m.integer]
        xs = [
            model.addVar(lb=lo, ub=hi, vtype=vt, obj=c)
            for lo, hi, vt, c in zip(m.lb, m.ub, vtypes, m.obj, strict=True)
        ]
        for j, st in enumerate(m.start):
            if st is not None:
                xs[j].Start = st
        for coefs, lo, hi in m.rows:
            expr = gp.LinExpr([c for c in coefs.values()], [xs[j] for j in coefs])
            if lo == hi:
                model.addLConstr(expr, gp.GRB.EQUAL, lo)
            else:
                if lo > -float("inf"):
                    model.addLConstr(expr, gp.GRB.GREATER_EQUAL, lo)
                if hi < float("inf"):
                    model.addLConstr(expr, gp.GRB.LESS_EQUAL, hi)
        model.optimize()
        code = model.Status
        has = model.SolCount > 0
        status = "optimal" if code == gp.GRB.OPTIMAL else ("feasible" if has else "unknown")
        if code == gp.GRB.INFEASIBLE:
            status = "infeasible"
        values = [v.X for v in xs] if has else None
        bound = float(model.ObjBound) if model.IsMIP and code != gp.GRB.INFEASIBLE else 0.0
        model.dispose()
        return status, values, bound
    finally:
        env.dispose()


class GurobiSolver(drv.MilpSolver):
    name = "gurobi"
    backend = staticmethod(_backend)

    def available(self) -> tuple[bool, str]:
        ok, _, reason = license_limit()
        return ok, reason

    def fits(self, task: Any, options: PlannerOptions) -> str:
        ok, limit, reason = license_limit()
        if not ok:
            return reason
        if limit is None:
            return ""
        size = drv.model_size(task, options, limit)
        if isinstance(size, str):
            return size
        nv, nr = size
        # ranged rows become two constraints in Gurobi
        if nv > limit or nr > limit:
            return f"model too large for the license ({nv} vars, {nr} rows > {limit})"
        return ""
