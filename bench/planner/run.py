"""Benchmark the planner on every instance in bench/planner/instances/*.json.

    python bench/planner/run.py [--solver auto] [--plan-mode two_stage] [--time-limit 60]
        [--threads 2] [--only SUBSTRING] [--real-only] [--off SWITCH] [--on SWITCH]
        [--out bench/planner/results.md]

Prints a markdown table and writes it, with the command, date and machine, to --out.
Targets (issue): planned within 60 s on 2 cores, median < 5 s, within 1 % of the bound on
>= 90 % of the instances, arena equal to the peak of live placed bytes on >= 95 %.
The "live placed peak" column is that peak for the planned order, with sizes padded to their
alignment as the arena holds them (raw sizes with `--off pad_sizes`): the arena's own bound,
whereas "planned peak" also counts the tensors the arena does not hold (inputs, parameters).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
from pathlib import Path

from dynamo_modelopt.planner import Problem, check_plan, plan
from dynamo_modelopt.planner.__main__ import add_options_arguments, options_from_args
from dynamo_modelopt.planner.heuristics import placed_live_peak

HERE = Path(__file__).resolve().parent


def _mib(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**20:.3f}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}, {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def _summary(what: str, done: list[tuple[bool, float, float, bool]]) -> str:
    if not done:
        return ""
    n = len(done)
    times = [d[1] for d in done]
    return (
        f"{n} {what}: max {max(times):.2f} s, median {statistics.median(times):.2f} s, "
        f"within 60 s: {sum(t <= 60 for t in times)}/{n}, "
        f"within 1% of the bound: {sum(d[2] <= 0.01 for d in done)}/{n}, "
        f"arena = live placed peak: {sum(d[3] for d in done)}/{n}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    add_options_arguments(ap, time_limit=60.0)
    ap.add_argument("--only", default="")
    ap.add_argument("--real-only", action="store_true", help="skip synthetic instances")
    ap.add_argument("--deterministic", type=int, default=1, help="0: CP-SAT parallel portfolio")
    ap.add_argument(
        "--off", action="append", default=[], help="a PlannerOptions switch to turn off (ablation)"
    )
    ap.add_argument(
        "--on", action="append", default=[], help="a PlannerOptions switch to turn on (ablation)"
    )
    ap.add_argument("--instances", type=Path, default=HERE / "instances")
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    args = ap.parse_args(argv)
    options = options_from_args(
        args,
        deterministic=bool(args.deterministic),
        **{name: False for name in args.off},
        **{name: True for name in args.on},
    )
    header = (
        "| instance | nodes | tensors | solver | plan_mode | given peak MiB | planned peak MiB "
        "| bound MiB | gap | arena MiB | live placed peak MiB | arena = live peak | status "
        "| time s |"
    )
    rows = [header, "|" + "---|" * 14]
    done: list[tuple[bool, float, float, bool]] = []  # (real, seconds, gap, arena == live)
    for path in sorted(args.instances.glob("*.json")):
        if args.only and args.only not in path.name:
            continue
        problem = Problem.from_json(path)
        synthetic = bool(problem.meta.get("synthetic"))
        if args.real_only and synthetic:
            continue
        result = plan(problem, options)
        check_plan(problem, result)
        live = placed_live_peak(problem, result.order, options.pad_sizes)
        extra = result.arena_bytes - live
        label = problem.name + (" (synthetic)" if synthetic else "")
        rows.append(
            f"| {label} | {len(problem.operations)} | {len(problem.tensors)} | {result.solver} "
            f"| {args.plan_mode} | {_mib(result.stats.get('given_order_peak'))} "
            f"| {_mib(result.peak_bytes)} | {_mib(result.lower_bound_bytes)} "
            f"| {100 * result.gap:.2f}% | {_mib(result.arena_bytes)} | {_mib(live)} "
            f"| {'yes' if extra == 0 else f'no (+{extra} B)'} | {result.status} "
            f"| {result.solve_seconds:.2f} |"
        )
        print(rows[-1], flush=True)
        done.append((not synthetic, result.solve_seconds, result.gap, extra == 0))
    lines = [_summary("instances", done), _summary("real instances", [d for d in done if d[0]])]
    summary = "\n" + ("\n".join(line for line in lines if line) or "no instances")
    command = "python bench/planner/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(
        [
            "# Planner benchmark",
            "",
            f"- command: `{command.strip()}`",
            f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
            f"- machine: {machine()}",
            f"- options: {options}",
            "",
            *rows,
            summary,
            "",
        ]
    )
    print(summary)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
