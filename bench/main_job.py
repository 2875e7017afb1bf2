"""The README's main job: one real model compiled by Inductor and by modelopt, side by side.

    python -m bench.main_job [--model gpt2|resnet18] [--time-limit 10]

For a training step (forward + backward of the loss) and an inference call it prints one table:
per mode, the measured peak memory of each backend (kineto profiler on CPU,
`max_memory_allocated` on CUDA), then one row per graph modelopt compiled (Inductor's planned
peak, ours, the lower bound, the peak of the code as emitted, solver, status, solve time and
chosen settings); what the columns mean comes after the table, under 40 lines in all.
Random weights, no downloads.
"""

from __future__ import annotations

import argparse
import copy
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch._dynamo

import dynamo_modelopt
from dynamo_modelopt.measure import kineto_peak_bytes

MIB = 1 << 20


def build(model_name: str) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    torch.manual_seed(0)
    if model_name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(n_layer=4, n_embd=256, n_head=4, n_positions=128)
        model = GPT2LMHeadModel(config)
        model.loss_type = "ForCausalLM"  # avoids a graph break in the loss lookup
        ids = torch.randint(0, config.vocab_size, (4, 128))

        class LossOnly(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, ids: torch.Tensor) -> torch.Tensor:
                return self.model(input_ids=ids, labels=ids).loss

        return LossOnly(), lambda m: m(ids)
    if model_name == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=100)
        images, labels = torch.randn(16, 3, 128, 128), torch.randint(0, 100, (16,))
        loss = torch.nn.functional.cross_entropy

        class WithLoss(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                return loss(self.model(x), y)

        return WithLoss(), lambda m: m(images, labels)
    raise SystemExit(f"unknown model {model_name!r}")


def measure(step: Callable[[], object], device: str) -> int:
    """Peak bytes allocated by one call of `step` (after a warm-up call that compiles)."""
    step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return kineto_peak_bytes(step)


@dataclass
class ModeResult:
    """One mode's measured peaks (bytes) and the reports of the graphs modelopt compiled."""

    mode: str
    inductor_bytes: int
    modelopt_bytes: int
    reports: Sequence[Any] = field(default_factory=list)


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MIB:.2f}"


def format_output(
    results: Sequence[ModeResult], context: str, device: str, max_lines: int = 39
) -> list[str]:
    """The lines `main_job` prints: the table first, then what its columns mean, at most
    `max_lines` in all (graph rows beyond that are counted in one row per mode; every graph is
    in `dynamo_modelopt.get_reports()`).

    Pure (no torch calls), so it is tested on made-up results."""
    columns = (
        ("mode", "<10"), ("row", "<14"), ("nodes", ">6"), ("Inductor", ">10"),
        ("modelopt", ">10"), ("ratio", ">7"), ("bound", ">9"), ("emitted", ">9"),
        ("solver/status", "<22"), ("solve s", ">8"), ("settings", "<0"),
    )  # fmt: skip

    def line(cells: Sequence[str]) -> str:
        text = "  ".join(f"{c:{fmt}}" for c, (_, fmt) in zip(cells, columns, strict=True))
        return text.rstrip()

    blocks: list[tuple[str, str, list[str]]] = []  # per mode: mode, measured row, graph rows
    fallbacks: list[str] = []
    for res in results:
        ratio = res.modelopt_bytes / res.inductor_bytes if res.inductor_bytes else float("nan")
        measured = line(
            [res.mode, "step measured", "-", _mib(res.inductor_bytes), _mib(res.modelopt_bytes),
             f"{ratio:.3f}", "-", "-", "", "", ""]
        )  # fmt: skip
        graphs = []
        for r in res.reports:
            settings = (r.details or {}).get("settings", {}).get("chosen", "")
            graphs.append(
                line([res.mode, r.graph_name, str(r.num_nodes), _mib(r.inductor_peak_bytes),
                      _mib(r.planned_peak_bytes), "", _mib(r.lower_bound_bytes),
                      _mib(r.emitted_peak_bytes), f"{r.solver}/{r.status}",
                      f"{r.solve_seconds:.2f}", settings])
            )  # fmt: skip
            if r.fallback_reason:
                fallbacks.append(f"{res.mode} {r.graph_name}: {r.fallback_reason}")
        blocks.append((res.mode, measured, graphs))
    meter = "kineto profiler" if device == "cpu" else "CUDA allocator"
    explanations = [
        context,
        f"MiB. 'step measured': peak of one call above the level before it ({meter}),",
        "  train = forward + backward of the loss, inference = one call under no_grad;",
        "  ratio = modelopt / Inductor (below 1: modelopt used less memory).",
        "Graph rows: modelopt's cost model of each graph it compiled. Inductor = Inductor's",
        "  own order, modelopt = the planned order, bound = lower bound over all orders,",
        "  emitted = peak of what the generated code allocates in our order,",
        '  settings = the compile settings chosen for the graph (settings="auto").',
    ]
    if len(fallbacks) == 1:
        explanations.append(f"fallback to plain Inductor in {fallbacks[0]}")
    elif fallbacks:
        explanations.append(
            f"{len(fallbacks)} graphs fell back to plain Inductor; first: {fallbacks[0]}"
        )
    # header, rule, blank line, explanations and one measured row per mode are always printed
    room = max_lines - 3 - len(explanations) - len(blocks)
    if sum(len(graphs) for _, _, graphs in blocks) > room:
        keep = max(0, room // max(1, len(blocks)) - 1)  # and one row counting the rest
        blocks = [
            (mode, measured, graphs if len(graphs) <= keep + 1 else
             [*graphs[:keep], f"{mode:<10}  (+{len(graphs) - keep} more graphs)"])
            for mode, measured, graphs in blocks
        ]  # fmt: skip
    header = line([name for name, _ in columns])
    lines = [header, "-" * len(header)]
    for _, measured, graphs in blocks:
        lines += [measured, *graphs]
    return [*lines, "", *explanations]


def run(model_name: str, options: dict, device: str) -> None:
    template, call = build(model_name)
    template = template.to(device)
    results: list[ModeResult] = []
    for mode in ("train", "inference"):
        measured: dict[str, int] = {}
        reports: list[dynamo_modelopt.GraphReport] = []
        for backend in ("inductor", "modelopt"):
            torch._dynamo.reset()
            dynamo_modelopt.clear_reports()
            model = copy.deepcopy(template)
            compiled = torch.compile(
                model, backend=backend, options=options if backend == "modelopt" else None
            )
            if mode == "train":
                model.train()

                def step(compiled=compiled, model=model) -> None:
                    for p in model.parameters():
                        p.grad = None
                    call(compiled).backward()
            else:
                model.eval()

                def step(compiled=compiled) -> None:
                    with torch.no_grad():
                        call(compiled)

            measured[backend] = measure(step, device)
            if backend == "modelopt":
                reports = dynamo_modelopt.get_reports()
        results.append(ModeResult(mode, measured["inductor"], measured["modelopt"], reports))
    context = (
        f"model: {model_name}  device: {device}  torch {torch.__version__}  "
        f"python {platform.python_version()}  options: {options}"
    )
    print("\n".join(format_output(results, context, device)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2", choices=["gpt2", "resnet18"])
    parser.add_argument("--solver", default="auto")
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    run(args.model, {"solver": args.solver, "time_limit": args.time_limit}, device)


if __name__ == "__main__":
    main()
