"""Step time of the issue-6 reference rows under chosen settings, each in a fresh process.

    python -m bench.step_times [--rows gpt2,resnet18,vit] [--rounds 2] [--repeats 9]
    python -m bench.step_times --rows zoo:vit_b_16 --settings auto,default
    python -m bench.step_times --paired --rows vit --settings default,budget_0.5 --device cuda

Rows are the reference rows' keys, or `zoo:<model>` for a model of `bench.run`'s zoo at its
reduced size and batch 1 (training); `zoo:<model>@<batch>` for another batch.

Timings taken one after another in one process drift (the allocator's state, what ran
before): on a 2-core CPU the same ViT-B/16 step measured +4.7% in its own process and +20%
after two other compiled models. So each (row, settings) pair runs in its own process:
compile, two warm-up steps, then `--repeats` timed steps, median; and the pairs run in
rounds, Inductor and the alternatives in turn, so a slow spell of the machine hits all of them
alike. Writes `step_times.md` with each round's medians and the overhead against Inductor in
the same round.

With `--paired`, each row runs in one process instead: Inductor and every setting compiled on
their own copies of the model, then timed in turns (each repetition runs every variant once,
starting from a different one), so a slow spell hits them alike; the overhead is the median of
the per-repetition ratios to Inductor's step. Writes `step_times_paired.md` (zoo rows:
`step_times_paired_zoo.md`).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.reference_rows import ROWS
from dynamo_modelopt.timing import time_steps

#: Settings worth timing per row: what modelopt chooses there and the alternatives it weighed.
SETTINGS = {
    "gpt2": ("auto", "budget_0.5"),
    "resnet18": ("auto", "no_layout_opt"),
    "vit": ("auto", "no_layout_opt+planned_saves"),
}


def _settings_of(row: str, given: str | None = None) -> tuple[str, ...]:
    """What to time against Inductor: `given` (comma-separated) for every row, else the row's
    own list (zoo rows: modelopt's choice only)."""
    return tuple(given.split(",")) if given else SETTINGS.get(row, ("auto",))


def _out(args: argparse.Namespace, name: str) -> Path:
    """`<out>/<name>.md`, or `<name>_zoo.md` for zoo rows (the folder made if missing)."""
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return Path(args.out) / (f"{name}_zoo.md" if "zoo:" in args.rows else f"{name}.md")


def _label(row: str) -> str:
    return row if row.startswith("zoo:") else ROWS[row][0]


def _build(row: str, device: str = "cpu") -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    if not row.startswith("zoo:"):
        model, inputs = ROWS[row][1]()
        return model.to(device), tuple(x.to(device) for x in inputs)
    from bench.models import REDUCED, make_inputs, select_models, wrap_for_mode

    name, _, batch = row.removeprefix("zoo:").partition("@")
    (spec,) = select_models(name)
    model = wrap_for_mode(spec, spec.build(REDUCED), "train").to(device)
    return model, make_inputs(spec, REDUCED, "train", int(batch or 1), torch.device(device))


@dataclass
class CompiledStep:
    """A compiled training step, the settings modelopt chose ("" for Inductor) and its
    reports (none for Inductor)."""

    step: Callable[[], None]
    chosen: str
    reports: list[Any]

    @property
    def estimated_runtime(self) -> float:
        """Sum of the graphs' estimated run times (seconds on CPU; Inductor's unit on GPUs)."""
        return sum(float(r.details.get("estimated_runtime", 0.0)) for r in self.reports)

    @property
    def timed_overhead(self) -> float | None:
        """The chosen settings' run time over the defaults' (minus one) as modelopt measured
        it at compile time, summed over graph pairs; None where nothing was timed."""
        from dynamo_modelopt.step import settings_of

        measured = [s["measured_overhead"] for s in settings_of(self.reports)]
        measured = [m for m in measured if m is not None]
        return sum(measured) if measured else None

    @property
    def modelled_overhead(self) -> float | None:
        """The chosen settings' run time over the defaults' (minus one) by modelopt's run-time
        model, the figure the choice was made on, summed over graph pairs; None where the
        search did not run."""
        from dynamo_modelopt.step import settings_of

        modelled = [s["estimated_overhead"] for s in settings_of(self.reports)]
        modelled = [m for m in modelled if m is not None]
        return sum(modelled) if modelled else None

    @property
    def kernels(self) -> int:
        """Kernel calls of the step: the scheduler nodes of its graphs."""
        return sum(r.num_nodes for r in self.reports)


def _compiled_step(
    row: str, settings: str, options: dict[str, object] | None = None, device: str = "cpu"
) -> CompiledStep:
    """A fresh copy of the row on `device` compiled under `settings` ("inductor": plain
    Inductor; more modelopt `options` if given), warmed up (compiled) by two steps."""
    import dynamo_modelopt

    torch.manual_seed(0)
    model, inputs = _build(row, device)
    model.train()
    dynamo_modelopt.clear_reports()
    if settings == "inductor":
        compiled = torch.compile(model)
    else:
        compiled = torch.compile(
            model, backend="modelopt", options={**(options or {}), "settings": settings}
        )
    cuda = torch.device(device).type == "cuda"

    def step() -> None:
        for p in model.parameters():
            p.grad = None
        compiled(*inputs).backward()
        if cuda:
            torch.cuda.synchronize()

    step()
    step()
    reports = dynamo_modelopt.get_reports() if settings != "inductor" else []
    chosen = reports[0].details.get("settings", {}).get("chosen", "") if reports else ""
    return CompiledStep(step, chosen, list(reports))


def _peak_mib(step: Callable[[], None], device: str) -> float:
    from dynamo_modelopt.measure import step_peak_bytes

    return step_peak_bytes(step, device) / 2**20


def time_one(row: str, settings: str, repeats: int, device: str = "cpu") -> dict[str, object]:
    """Compile the row under `settings` ("inductor" for plain Inductor) and time its steps."""
    compiled = _compiled_step(row, settings, device=device)
    times = timeit.repeat(compiled.step, number=1, repeat=repeats)
    return {
        "median_ms": statistics.median(times) * 1e3,
        "peak_mib": _peak_mib(compiled.step, device),
        "chosen": compiled.chosen,
    }


def time_paired(
    row: str, settings: list[str], repeats: int, device: str = "cpu"
) -> dict[str, dict[str, object]]:
    """Inductor and each setting in this process, timed in turns; see the module docstring.
    Each modelopt variant also gives its estimated run time and kernel count, so that the
    estimate's overhead can be set beside the measured one."""
    compiled = {name: _compiled_step(row, name, device=device) for name in ("inductor", *settings)}
    names = list(compiled)  # Inductor first: the ratios are to it
    # the rotation of turns the backend's own timing of candidates uses
    timing = time_steps([compiled[n].step for n in names], repeats, torch.device(device))
    result = {}
    for index, name in enumerate(names):
        if index in timing.failed:
            raise RuntimeError(f"{name}: {timing.failed[index]}")
        result[name] = {
            "median_ms": statistics.median(r[index] for r in timing.rounds) * 1e3,
            "overhead": statistics.median(timing.ratios_to_first(index)) - 1.0,
            "peak_mib": _peak_mib(compiled[name].step, device),
            "chosen": compiled[name].chosen,
            "estimated_runtime": compiled[name].estimated_runtime,
            "kernels": compiled[name].kernels,
            "timed_overhead": compiled[name].timed_overhead,
            "modelled_overhead": compiled[name].modelled_overhead,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(SETTINGS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--settings", default=None, help="comma-separated settings for every row (default: per row)"
    )
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--paired", action="store_true", help="one process per row, in turns")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--one", nargs=2, metavar=("ROW", "SETTINGS"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--paired-one", nargs=2, metavar=("ROW", "SETTINGS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(time_one(args.one[0], args.one[1], args.repeats, args.device)))
        return
    if args.paired_one:
        row, settings = args.paired_one
        print(json.dumps(time_paired(row, settings.split(","), args.repeats, args.device)))
        return
    if args.paired:
        paired(args)
        return
    lines = _header(
        args,
        "Step time of the reference rows, each setting in its own process (training, CPU)",
        f" --rounds {args.rounds}",
        "median of the timed steps after two warm-up steps; overhead against Inductor in the"
        " same round; peak above the level before the step (kineto)",
        ["model", "settings (chosen)", "round", "ms", "vs Inductor", "peak MiB"],
    )
    for row in args.rows.split(","):
        for round_ in range(1, args.rounds + 1):
            inductor_ms = None
            chosen = _settings_of(row, args.settings)
            for settings in ("inductor", *chosen):
                result, error = _run_json(["--one", row, settings], args.repeats, args.device)
                if result is None:
                    lines.append(f"| {_label(row)} | {settings} | {round_} | error: {error} |||")
                    continue
                ms = result["median_ms"]
                if settings == "inductor":
                    inductor_ms = ms
                label = settings + (f" ({result['chosen']})" if settings == "auto" else "")
                overhead = f"{ms / inductor_ms - 1:+.1%}" if inductor_ms else ""
                lines.append(
                    f"| {_label(row)} | {label} | {round_} | {ms:.1f} | {overhead}"
                    f" | {result['peak_mib']:.1f} |"
                )
                print(lines[-1], flush=True)
    out = _out(args, "step_times")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def _header(
    args: argparse.Namespace, title: str, mode: str, method: str, columns: list[str]
) -> list[str]:
    """Title, reproducing command, date, versions, method and column row of a step-time table."""
    settings = f" --settings {args.settings}" if args.settings else ""
    device = "" if args.device == "cpu" else f" --device {args.device}"
    where = f"{platform.machine()}, {torch.get_num_threads()} threads"
    if args.device == "cuda":
        where += f", {torch.cuda.get_device_name()}"
        method = method.replace("(kineto)", "(max_memory_allocated)")
    return [
        f"# {title.replace('CPU', args.device.upper())}",
        "",
        f"- command: `python -m bench.step_times{mode} --rows {args.rows}"
        f" --repeats {args.repeats}{settings}{device}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- torch {torch.__version__}, {where}",
        f"- {method}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]


def _run_json(arguments: list[str], repeats: int, device: str = "cpu") -> tuple[object, str]:
    """Run `python -m bench.step_times <arguments>` and parse its last line as JSON; on
    failure, None and the last line of its error output."""
    command = [sys.executable, "-m", "bench.step_times", *arguments, "--repeats", str(repeats)]
    command += ["--device", device]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1]), ""
    except (IndexError, json.JSONDecodeError):
        return None, (done.stderr.strip().splitlines()[-1:] or ["no output"])[0]


def paired(args: argparse.Namespace) -> None:
    """`--paired`: one process per row, every variant timed in turns."""
    lines = _header(
        args,
        "Step time of the reference rows, variants timed in turns in one process (training, CPU)",
        " --paired",
        "each repetition runs every variant once, starting from a different one; ms = median"
        " step; vs Inductor = median of the per-repetition ratios; peak above the level before"
        " the step (kineto); estimate vs default = modelopt's estimated run time against the"
        " `default` variant's (where one was timed); modelled = the chosen settings' run time"
        " against the defaults' by the run-time model the choice was made on, and model error"
        " = vs Inductor less modelled, in points (graph pairs summed); timed at compile = the"
        " same ratio as the veto measured it when choosing; kernels = scheduler nodes of the"
        " step",
        ["model", "settings (chosen)", "ms", "vs Inductor", "peak MiB", "estimate vs default",
         "modelled", "model error", "timed at compile", "kernels"],
    )  # fmt: skip
    for row in args.rows.split(","):
        settings = _settings_of(row, args.settings)
        results, error = _run_json(
            ["--paired-one", row, ",".join(settings)], args.repeats, args.device
        )
        if results is None:
            lines.append(f"| {_label(row)} | error: {error} |||||||||")
            continue
        base = results.get("default", {}).get("estimated_runtime")
        for name, result in results.items():
            label = name + (f" ({result['chosen']})" if name == "auto" else "")
            estimate = result.get("estimated_runtime")
            versus = f"{estimate / base - 1:+.1%}" if base and estimate else ""
            timed, modelled = result.get("timed_overhead"), result.get("modelled_overhead")
            error = "" if modelled is None else f"{(result['overhead'] - modelled) * 100:+.1f}"
            lines.append(
                f"| {_label(row)} | {label} | {result['median_ms']:.1f}"
                f" | {result['overhead']:+.1%} | {result['peak_mib']:.1f} | {versus}"
                f" | {'' if modelled is None else f'{modelled:+.1%}'} | {error}"
                f" | {'' if timed is None else f'{timed:+.1%}'}"
                f" | {result.get('kernels') or ''} |"
            )
            print(lines[-1], flush=True)
    out = _out(args, "step_times_paired")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
