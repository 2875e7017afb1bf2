"""CUDA check of the arena path: numerics and peak memory of the test models, one table.

    python -m bench.gpu_check [--out DIR]

For each small model of the test suite (MLP, CNN with BatchNorm, in-place/views, tiny GPT-2), in
training and inference, on CUDA: the largest difference to eager of Inductor and of modelopt
(arenas forced on, and "auto"), and each one's allocated peak above the level after the step's
leading frees (the last step's gradients; from the allocator's trace, as the predictions count
it) and `max_memory_reserved`, with modelopt's predicted peak. It needs a GPU; on a machine
without one it says so and exits.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch._dynamo

from bench.reports import chosen_settings
from dynamo_modelopt.measure import cuda_peak

CASES = ("mlp", "convbn", "inplace_views", "gpt2")
VARIANTS: dict[str, dict[str, Any] | None] = {
    "eager": None,
    "inductor": None,
    "modelopt arena=off": {"arena": "off", "settings": "default"},
    "modelopt arena=auto": {"arena": "auto", "settings": "default"},
    "modelopt arena=on": {"arena": "on", "settings": "default"},
    # the training decisions of issue 6 (layout, activation budget, planned saves)
    "modelopt settings=auto": {"settings": "auto"},
}


def _loss(out: Any) -> torch.Tensor:
    outs = out if isinstance(out, tuple) else (out,)
    return sum((o.float().sum() for o in outs), torch.zeros((), device=outs[0].device))


def _step(model: torch.nn.Module, fn: Callable, inputs: tuple, mode: str) -> Callable[[], dict]:
    def train() -> dict:
        for p in model.parameters():
            p.grad = None
        loss = _loss(fn(*inputs))
        loss.backward()
        return {"loss": loss.detach(), **{n: p.grad for n, p in model.named_parameters()}}

    def infer() -> dict:
        with torch.no_grad():
            out = fn(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        return {str(i): o for i, o in enumerate(outs)}

    return train if mode == "training" else infer


def _row(case: str, mode: str, variant: str, options: dict | None) -> dict[str, Any]:
    import dynamo_modelopt
    from tests.backend.models import make_case

    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    model, inputs = make_case(case)
    model = copy.deepcopy(model).cuda()
    inputs = tuple(x.cuda() for x in inputs)
    if mode == "inference":
        model.eval()
    if variant == "eager":
        fn: Callable = model
    elif variant == "inductor":
        fn = torch.compile(model, backend="inductor")
    else:
        fn = torch.compile(model, backend="modelopt", options={"strict": True, **(options or {})})
    step = _step(model, fn, inputs, mode)
    result = {k: v.detach().clone() for k, v in step().items() if v is not None}
    peak = cuda_peak(step, after_leading_frees=True)
    reports = dynamo_modelopt.get_reports()
    arenas = [r.details.get("arena", {}) for r in reports]
    chosen, _ = chosen_settings(reports)
    return {
        "case": case,
        "mode": mode,
        "variant": variant,
        "result": result,
        "allocated": peak.peak_above_start_bytes,
        "reserved": peak.max_reserved_bytes,
        "predicted": max((r.emitted_peak_bytes or 0 for r in reports), default=None),
        "arena_used": [a.get("used") for a in arenas],
        "settings": chosen,
    }


def _error(got: dict, want: dict) -> float:
    return max(
        (float((got[k].double() - want[k].double()).abs().max()) for k in want if k in got),
        default=0.0,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="directory for gpu_check.json")
    parser.add_argument("--cases", default=",".join(CASES), help="comma list of test models")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    variants = {v: VARIANTS[v] for v in args.variants.split(",") if v}
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing measured")
        return 0
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, "
        f"device {torch.cuda.get_device_name()}"
    )
    rows: list[dict[str, Any]] = []
    print("| case | mode | variant | max error vs eager | allocated B | reserved B | predicted B "
          "| arena used | settings |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        for mode in ("training", "inference"):
            eager = None
            for variant, options in variants.items():
                try:
                    row = _row(case, mode, variant, options)
                except Exception as exc:  # one failure must not hide the other rows
                    traceback.print_exc()
                    row = {"case": case, "mode": mode, "variant": variant, "error": repr(exc)}
                    rows.append(row)
                    print(f"| {case} | {mode} | {variant} | error: {exc!r:.200} |")
                    continue
                if variant == "eager":
                    eager = row["result"]
                row["max_error"] = _error(row["result"], eager) if eager is not None else None
                del row["result"]
                rows.append(row)
                print(
                    f"| {case} | {mode} | {variant} | {row['max_error']:.2e} | {row['allocated']} "
                    f"| {row['reserved']} | {row['predicted']} | {row['arena_used']} "
                    f"| {row['settings']} |",
                    flush=True,
                )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
