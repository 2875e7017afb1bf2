"""The README's main job: one real model compiled by Inductor and by modelopt, side by side.

    python -m bench.main_job [--model gpt2|resnet18] [--time-limit 10]

For a training step (forward + backward of the loss) and an inference call it prints the
measured peak memory of each backend (kineto profiler on CPU, `max_memory_allocated` on CUDA),
then one row per graph modelopt compiled: Inductor's planned peak, ours, the lower bound, the
peak of the code as emitted, solver, status and solve time. Random weights, no downloads.
"""

from __future__ import annotations

import argparse
import copy
import platform
from collections.abc import Callable

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


def run(model_name: str, options: dict, device: str) -> None:
    template, call = build(model_name)
    template = template.to(device)
    print(
        f"model: {model_name}  device: {device}  torch {torch.__version__}  "
        f"python {platform.python_version()}  options: {options}"
    )
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
        ratio = (
            measured["modelopt"] / measured["inductor"] if measured["inductor"] else float("nan")
        )
        print(
            f"\n== {mode}: measured peak ({'kineto' if device == 'cpu' else 'CUDA allocator'})"
            f"  Inductor {measured['inductor'] / MIB:.2f} MiB"
            f"  modelopt {measured['modelopt'] / MIB:.2f} MiB  ratio {ratio:.3f}"
        )
        header = (
            f"{'graph':<12}{'nodes':>6}{'Inductor plan':>15}{'modelopt plan':>15}"
            f"{'lower bound':>13}{'emitted':>10}  {'solver/status':<22}{'solve s':>8}"
        )
        print(header)
        print("-" * len(header))
        for r in reports:
            emitted = "-" if r.emitted_peak_bytes is None else f"{r.emitted_peak_bytes / MIB:.2f}"
            print(
                f"{r.graph_name:<12}{r.num_nodes:>6}{r.inductor_peak_bytes / MIB:>15.2f}"
                f"{r.planned_peak_bytes / MIB:>15.2f}{r.lower_bound_bytes / MIB:>13.2f}"
                f"{emitted:>10}  {r.solver + '/' + r.status:<22}{r.solve_seconds:>8.2f}"
            )
            if r.fallback_reason:
                print(f"    fallback: {r.fallback_reason}")
    print(
        "\nPlanned figures are MiB from modelopt's cost model of each graph; 'emitted' is the "
        "peak of what the generated code allocates in our order."
    )


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
