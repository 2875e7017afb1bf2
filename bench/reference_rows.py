"""The training reference points of issue 6, at the sizes the issue measured them.

    python -m bench.reference_rows [--rows gpt2,resnet18,vit] [--out bench/results] [--device cuda]

GPT-2 with 4 layers of width 256 on 8 x 128 tokens, ResNet-18 on 16 images of 128 x 128 and
ViT-B/16 on 4 images of 224 x 224: one forward and backward step returning only the loss (the
optimizer step is outside the compiled region and left out), measured like `bench.run`
(eager, Inductor and modelopt on the same model and inputs, kineto on CPU). Writes
`reference_rows.md` with the figures and the settings modelopt chose.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from bench.measure import MeasureSettings, measure_backend
from bench.models import NUM_CLASSES, TextTrainStep, VisionTrainStep
from bench.reports import chosen_settings
from bench.run import device_label, resolve_device

MIB = 1 << 20
BACKENDS = ("eager", "inductor", "modelopt")


def _gpt2() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=4, n_embd=256, n_head=4)
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # keeps one graph under dynamo
    ids = torch.randint(0, config.vocab_size, (8, 128))
    return TextTrainStep(model), (ids, ids.clone())


def _resnet18() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    import torchvision

    model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
    images = torch.randn(16, 3, 128, 128)
    return VisionTrainStep(model), (images, torch.randint(0, NUM_CLASSES, (16,)))


def _vit() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    import torchvision

    model = torchvision.models.vit_b_16(num_classes=NUM_CLASSES)
    images = torch.randn(4, 3, 224, 224)
    return VisionTrainStep(model), (images, torch.randint(0, NUM_CLASSES, (4,)))


ROWS: dict[str, tuple[str, Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]]] = {
    "gpt2": ("GPT-2 4L/256, batch 8x128", _gpt2),
    "resnet18": ("ResNet-18, batch 16, 128²", _resnet18),
    "vit": ("ViT-B/16, batch 4, 224²", _vit),
}


def _cell(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _ratio(peaks: dict[str, int | None], against: str) -> str:
    ours, theirs = peaks["modelopt"], peaks[against]
    return f"{ours / theirs:.3f}" if ours and theirs else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    settings = MeasureSettings(device, repeats=args.repeats)
    how = "max_memory_allocated" if device.type == "cuda" else "kineto"
    lines = [
        f"# Issue 6 reference points (training, {device_label(device)})",
        "",
        f"- command: `python -m bench.reference_rows --rows {args.rows} --device {args.device}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads",
        "- one forward + backward returning only the loss, after a warm-up step that compiles;"
        f" peak above the level before the step ({how}); step ms = median of the timed steps",
        "",
        "| model | eager MiB | Inductor MiB | modelopt MiB | modelopt/Inductor | modelopt/eager"
        " | settings | overhead predicted | eager ms | Inductor ms | modelopt ms"
        " | Inductor compile s | modelopt compile s | modelopt recompile s | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in args.rows.split(","):
        label, build = ROWS[key]
        torch.manual_seed(0)
        module, inputs = build()
        module = module.to(device).train()
        inputs = tuple(x.to(device) for x in inputs)
        results = {b: measure_backend(b, module, inputs, "train", settings) for b in BACKENDS}
        peaks = {b: r.peak_bytes for b, r in results.items()}
        chosen, overhead = chosen_settings(results["modelopt"].reports)
        errors = "; ".join(f"{b}: {r.error}" for b, r in results.items() if r.error)
        lines.append(
            f"| {label} | "
            + " | ".join(_cell(None if p is None else p / MIB) for p in peaks.values())
            + f" | {_ratio(peaks, 'inductor')} | {_ratio(peaks, 'eager')} | {chosen} | "
            + ("" if overhead is None else f"{overhead:+.1%}")
            + " | "
            + " | ".join(_cell(results[b].step_ms) for b in BACKENDS)
            + f" | {_cell(results['inductor'].compile_seconds)}"
            + f" | {_cell(results['modelopt'].compile_seconds)}"
            + f" | {_cell(results['modelopt'].recompile_seconds)}"
            + f" | {errors} |"
        )
        print(lines[-1], flush=True)
    out = Path(args.out) / "reference_rows.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
