"""CLI: plan one saved instance and print a summary.

python -m dynamo_modelopt.planner INSTANCE.json [--solver S] [--plan-mode M]
    [--time-limit SEC] [--threads N] [--seed N] [--out plan.json] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import PLAN_MODES, SOLVERS, PlannerOptions
from .problem import Problem
from .solve import plan
from .validate import check_plan


def _mib(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**20:.3f} MiB ({x} B)"


def add_options_arguments(ap: argparse.ArgumentParser, time_limit: float = 10.0) -> None:
    """The `PlannerOptions` flags shared by this CLI and the planner bench."""
    ap.add_argument("--solver", choices=SOLVERS, default="auto")
    # --mode: its name before torch.compile's `mode` made it ambiguous
    ap.add_argument("--plan-mode", "--mode", choices=PLAN_MODES, default="two_stage")
    ap.add_argument("--time-limit", type=float, default=time_limit)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)


def options_from_args(args: argparse.Namespace, **extra: object) -> PlannerOptions:
    return PlannerOptions(
        solver=args.solver,
        plan_mode=args.plan_mode,
        time_limit=args.time_limit,
        threads=args.threads,
        seed=args.seed,
        **extra,  # type: ignore[arg-type]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynamo_modelopt.planner", description=__doc__)
    ap.add_argument("instance", type=Path)
    add_options_arguments(ap)
    ap.add_argument("--out", type=Path, default=None, help="write the plan as JSON here")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)
    problem = Problem.from_json(args.instance)
    options = options_from_args(args)
    result = plan(problem, options)
    check_plan(problem, result)
    if args.out is not None:
        args.out.write_text(result.to_json())
    summary = {
        "instance": problem.name,
        "operations": len(problem.operations),
        "tensors": len(problem.tensors),
        "given_peak": result.stats.get("given_order_peak"),
        "planned_peak": result.peak_bytes,
        "arena": result.arena_bytes,
        "lower_bound": result.lower_bound_bytes,
        "gap": result.gap,
        "status": result.status,
        "solver": result.solver,
        "seconds": round(result.solve_seconds, 3),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"instance     {summary['instance']} ({summary['operations']} operations, "
        f"{summary['tensors']} tensors)"
    )
    print(f"given peak   {_mib(summary['given_peak'])}")
    print(f"planned peak {_mib(result.peak_bytes)}")
    print(f"arena        {_mib(result.arena_bytes)}")
    print(f"lower bound  {_mib(result.lower_bound_bytes)}")
    print(f"gap          {100 * result.gap:.2f}%")
    print(f"status       {result.status} ({result.solver})")
    print(f"time         {result.solve_seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
