"""A Llama-style decoder the zoo does not hold, trained one step: eager, Inductor, modelopt.

    python -m bench.decoder [--layers 4] [--hidden 512] [--batch 4] [--seq 256] [--rounds 9]

The shape of issue 21's report (transformers' `LlamaConfig`, 4 layers, hidden 512, an untied
8192-token vocabulary, batch 4x256, a step that returns the loss). Per backend: the peak of one
step (kineto on CPU, `max_memory_allocated` on CUDA), the first compile's seconds, the chosen
settings with the modelled and compile-time-measured overhead; then Inductor's and modelopt's
steps in turns in this process (`timing.time_steps`, each round starting with the other), the
median of the per-round ratios with the rounds' range. Writes `bench/results/decoder.md`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from bench.measure import BackendResult, MeasureSettings, make_step, measure_backend


class CausalLM(nn.Module):
    """A randomly initialised Llama-style model whose forward returns the loss."""

    def __init__(self, layers: int, hidden: int, vocab: int) -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=hidden * 8 // 3,
            num_hidden_layers=layers,
            num_attention_heads=max(hidden // 64, 1),
            num_key_value_heads=max(hidden // 64, 1),
            tie_word_embeddings=False,
        )
        self.lm = LlamaForCausalLM(config)
        self.lm.loss_type = "ForCausalLM"  # the default's one-time warning breaks the graph

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, labels=labels).loss


def _settings(result: BackendResult) -> dict[str, object]:
    from dynamo_modelopt.step import settings_of

    found = settings_of(result.reports)
    return found[0] if found else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="bench/results/decoder.md")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = CausalLM(args.layers, args.hidden, args.vocab).to(device)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)
    inputs = (ids, ids.clone())
    settings = MeasureSettings(device=device, modelopt_options={})
    results = {b: measure_backend(b, model, inputs, "train", settings) for b in BACKENDS}
    steps = []
    for backend in ("inductor", "modelopt"):  # compiled again, side by side
        torch._dynamo.reset()
        compiled = torch.compile(model, backend=backend)
        steps.append(make_step(compiled, inputs, "train", None))
        steps[-1]()
    from dynamo_modelopt.timing import time_steps

    timing = time_steps(steps, args.rounds, device)
    ratios = timing.ratios_to_first(1)
    mib = 2**20
    lines = [
        "# A Llama-style decoder, one training step",
        "",
        f"- command: `python -m bench.decoder --layers {args.layers} --hidden {args.hidden}"
        f" --vocab {args.vocab} --batch {args.batch} --seq {args.seq} --rounds {args.rounds}"
        f" --device {args.device}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads,"
        f" device {device}",
        "- peak: bytes allocated above the level before the step; compile s: first step,"
        " compile included, Inductor's and AOTAutograd's caches off; modelled / at compile:"
        " the chosen settings' run time over the defaults' by the run-time model and by the"
        " compile-time veto's rounds",
        "",
        "| backend | peak MiB | vs Inductor | compile s | step ms | settings | modelled"
        " | at compile | error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    inductor_peak = results["inductor"].peak_bytes
    for name, result in results.items():
        chosen = _settings(result)
        peak = result.peak_bytes
        versus = f"{peak / inductor_peak:.3f}" if peak and inductor_peak else ""

        def percent(key: str, found: dict[str, object] = chosen) -> str:
            value = found.get(key)
            return "" if value is None else f"{value:+.1%}"

        lines.append(
            f"| {name} | {'' if peak is None else f'{peak / mib:.1f}'} | {versus}"
            f" | {result.compile_seconds or 0:.1f} | {result.step_ms or 0:.1f}"
            f" | {chosen.get('chosen', '')} | {percent('estimated_overhead')}"
            f" | {percent('measured_overhead')} | {result.error or ''} |"
        )
    lines += [
        "",
        f"Paired steps, modelopt over Inductor, {args.rounds} rounds: median"
        f" {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}).",
    ]
    why = _settings(results["modelopt"]).get("why")
    if why:
        lines += ["", f"modelopt's choice: {why}."]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


BACKENDS = ("eager", "inductor", "modelopt")

if __name__ == "__main__":
    main()
