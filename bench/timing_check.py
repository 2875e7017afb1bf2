"""Does timing at compile time read what the real training step reads?

    python -m bench.timing_check --row zoo:mobilenet_v2@8 --settings default,budget_0.5

modelopt times its candidates at compile time on the graph alone (`dynamo_modelopt/timing.py`):
a forward and `torch.autograd.grad` on the leaves, no `.grad` accumulation, no optimizer. The
bench times the real step (`.grad` set to None, `loss.backward()`). This compiles the row under
each of `--settings` (modelopt's, the first is the baseline) in one process and times both
kinds of step for each, all in turns (each repetition starting from another), and writes each
kind's median ratio to the baseline, with its quartiles, to `timing_check.md`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.step_times import _build
from dynamo_modelopt.timing import quantile_of, time_steps


def _steps(row: str, settings: str) -> dict[str, Callable[[], None]]:
    """The real step and the compile-time kind of step of the row compiled under `settings`."""
    torch.manual_seed(0)
    model, inputs = _build(row)
    model.train()
    compiled = torch.compile(model, backend="modelopt", options={"settings": settings})
    params = [p for p in model.parameters() if p.requires_grad]

    def real() -> None:
        for p in params:
            p.grad = None
        compiled(*inputs).backward()

    def graph_only() -> None:
        torch.autograd.grad([compiled(*inputs)], params, allow_unused=True)

    for step in (real, real, graph_only):  # compile, then warm up
        step()
    return {"real step": real, "graph only": graph_only}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", default="zoo:mobilenet_v2@8")
    parser.add_argument("--settings", default="default,no_layout_opt+budget_0.5")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    settings = args.settings.split(",")
    steps = {(s, kind): step for s in settings for kind, step in _steps(args.row, s).items()}
    keys = list(steps)
    # in turns, each round starting from another step (as modelopt times its candidates)
    timing = time_steps(list(steps.values()), args.repeats, torch.device("cpu"))
    if timing.failed:
        raise RuntimeError(f"steps failed: {timing.failed}")
    seconds = {key: [r[i] for r in timing.rounds] for i, key in enumerate(keys)}
    lines = [
        "# Compile-time timing against the real step (training, CPU)",
        "",
        f"- command: `python -m bench.timing_check --row {args.row} --settings {args.settings}"
        f" --repeats {args.repeats}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads",
        "- each repetition runs every (settings, kind) once, starting from another; ratio = "
        f"median of the per-repetition ratios to `{settings[0]}` of the same kind; q25/q75 their"
        " quartiles",
        "",
        "| kind | settings | ms | ratio | q25 | q75 |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("real step", "graph only"):
        base = seconds[(settings[0], kind)]
        for name in settings:
            own = seconds[(name, kind)]
            ratios = [t / b for t, b in zip(own, base, strict=True)]
            lines.append(
                f"| {kind} | {name} | {statistics.median(own) * 1e3:.1f} |"
                f" {quantile_of(ratios, 0.5):.3f} | {quantile_of(ratios, 0.25):.3f} |"
                f" {quantile_of(ratios, 0.75):.3f} |"
            )
    out = Path(args.out) / "timing_check.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
