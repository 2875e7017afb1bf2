"""A GPT-2-shaped model trained on 2 ranks under DDP and under FSDP2: eager, Inductor, modelopt.

    python -m bench.distributed [--layers 2 --hidden 256 --seq 128 --batch 4 --steps 3]

Two ranks on 127.0.0.1 (`torch.multiprocessing.spawn`): gloo on CPU; nccl, one GPU a rank,
where `torch.cuda.device_count() >= 2`. Per wrapper and backend, each rank runs
`bench.measure.measure_backend`: a warm-up step that compiles (its wall time is the compile
time), one profiled step (the peak above the level before the step: kineto `[memory]` events
on CPU, CUDA's counters on a GPU) and `--steps` timed steps (the median). Rank 0 gathers both
ranks' figures and writes `bench/results/distributed.md`.
"""

from __future__ import annotations

import argparse
import collections
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from bench.measure import BACKENDS, BackendResult, MeasureSettings, make_step, measure_backend
from bench.ranks import free_port, process_group
from bench.reports import fell_back

WORLD_SIZE = 2
WRAPPERS = ("ddp", "fsdp2")
MIB = 2**20


class CausalLM(nn.Module):
    """A randomly initialised GPT-2-shaped model whose forward returns the loss.

    A class of our own: under DDP Dynamo compiles no frame of a bare library module
    (`tests/backend/test_distributed.py`)."""

    def __init__(self, layers: int, hidden: int, vocab: int, seq: int) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=vocab,
            n_positions=max(seq, 1024),
            n_embd=hidden,
            n_layer=layers,
            n_head=max(hidden // 64, 1),
            bos_token_id=vocab - 1,
            eos_token_id=vocab - 1,
        )
        self.lm = GPT2LMHeadModel(config)
        self.lm.loss_type = "ForCausalLM"  # the default's one-time warning breaks the graph

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, labels=labels).loss


@dataclass(frozen=True)
class RankFigures:
    """One rank's figures for one (wrapper, backend); error is set where measuring failed."""

    wrapper: str
    backend: str
    rank: int
    peak_bytes: int | None = None
    step_ms: float | None = None
    compile_seconds: float | None = None
    planned: int | None = None  # modelopt: graphs planned
    fallen_back: int | None = None  # modelopt: graphs that fell back to Inductor's own order
    settings: str = ""  # modelopt: the chosen settings, with how many graph pairs chose each
    error: str | None = None


def figures_of(wrapper: str, rank: int, result: BackendResult) -> RankFigures:
    planned = fallen = None
    settings = ""
    if result.backend == "modelopt":
        from dynamo_modelopt.step import settings_of

        fallen = sum(fell_back(report) for report in result.reports)
        planned = len(result.reports) - fallen
        chosen = collections.Counter(s.get("chosen", "?") for s in settings_of(result.reports))
        settings = ", ".join(f"{name} x{count}" for name, count in sorted(chosen.items()))
    return RankFigures(
        wrapper,
        result.backend,
        rank,
        result.peak_bytes,
        result.step_ms,
        result.compile_seconds,
        planned,
        fallen,
        settings,
        result.error,
    )


def wrap(model: nn.Module, wrapper: str, device: torch.device, bucket_mb: float) -> nn.Module:
    """`model` under DDP (small buckets: DDPOptimizer splits the graph at them) or FSDP2
    (`fully_shard` on each transformer block, then the root)."""
    if wrapper == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, bucket_cap_mb=bucket_mb)
    if wrapper == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in model.lm.transformer.h:
            fully_shard(block)
        return fully_shard(model)
    raise ValueError(f"unknown wrapper {wrapper!r}; known: {WRAPPERS}")


def measure_rank(rank: int, args: argparse.Namespace, device: torch.device) -> list[RankFigures]:
    """This rank's figures for each wrapper and backend."""
    figures = []
    settings = MeasureSettings(device=device, repeats=args.steps, recompile=False)
    for wrapper in WRAPPERS:
        torch.manual_seed(0)  # the same weights on both ranks
        model = CausalLM(args.layers, args.hidden, args.vocab, args.seq).to(device)
        wrapped = wrap(model, wrapper, device, args.bucket_mb)
        torch.manual_seed(100 + rank)  # each rank its own batch
        ids = torch.randint(0, args.vocab, (args.batch, args.seq), device=device)
        inputs = (ids, ids.clone())
        # one eager step first: DDP rebuilds its buckets after its first step, FSDP2
        # initialises lazily in its first; neither should land in a backend's figures
        make_step(wrapped, inputs, "train", None)()
        for backend in BACKENDS:
            result = measure_backend(backend, wrapped, inputs, "train", settings)
            figures.append(figures_of(wrapper, rank, result))
        del wrapped, model
    return figures


def _worker(rank: int, port: int, args: argparse.Namespace) -> None:
    cuda = torch.cuda.device_count() >= WORLD_SIZE
    if cuda:
        torch.cuda.set_device(rank)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    torch.set_num_threads(args.threads)
    with process_group(rank, WORLD_SIZE, port, "nccl" if cuda else "gloo", timeout_minutes=20):
        figures = measure_rank(rank, args, device)
        gathered: list[Any] = [None] * WORLD_SIZE if rank == 0 else []
        dist.gather_object(figures, gathered if rank == 0 else None, dst=0)
    if rank == 0:
        rows = sorted(
            (row for rank_rows in gathered for row in rank_rows),
            key=lambda r: (WRAPPERS.index(r.wrapper), BACKENDS.index(r.backend), r.rank),
        )
        text = render(rows, header(args, device))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(text)


def header(args: argparse.Namespace, device: torch.device) -> list[str]:
    gpus = torch.cuda.device_count()
    where = (
        f"{WORLD_SIZE} CUDA ranks, nccl, one GPU each"
        if device.type == "cuda"
        else f"{WORLD_SIZE} CPU ranks, gloo, {args.threads} thread(s) each; the nccl path"
        f" (`torch.cuda.device_count() >= {WORLD_SIZE}`) was not run: {gpus} GPU(s) here"
    )
    return [
        "# A GPT-2-shaped model on 2 ranks, DDP and FSDP2, one training step",
        "",
        f"- command: `python -m bench.distributed --layers {args.layers} --hidden {args.hidden}"
        f" --vocab {args.vocab} --seq {args.seq} --batch {args.batch} --steps {args.steps}"
        f" --bucket-mb {args.bucket_mb} --threads {args.threads}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- torch {torch.__version__}, {platform.machine()}, device {device.type}: {where}",
        "- model: transformers' GPT2LMHeadModel, random init, forward returning the loss,"
        " in a module of ours; each rank its own batch; no optimizer step",
        "- method (`bench.measure.measure_backend`, per rank): one eager step on the wrapped"
        " model first (DDP's bucket rebuild, FSDP2's lazy init); then per backend a warm-up"
        " step that compiles (compile s: its wall time, Inductor's and AOTAutograd's caches"
        " off), one profiled step (peak: bytes allocated above the level before the step,"
        " kineto `[memory]` events on CPU, gradients cleared outside the profiled window),"
        f" and {args.steps} timed steps (step ms: their median)",
        f"- DDP: `bucket_cap_mb={args.bucket_mb}`, so DDPOptimizer splits the Dynamo graph at"
        " the buckets and compiles each piece; the all-reduces run in DDP's hooks between them",
        "- FSDP2: `fully_shard` on each transformer block and the root. Its hooks break"
        " Dynamo's graph, so the all-gathers and reduce-scatters run eagerly between the"
        " compiled pieces (as in `tests/backend/test_distributed.py`); each piece is planned"
        " on its own",
        "- graphs planned: modelopt's graphs planned / fallen back to Inductor's order, per"
        " rank (`dynamo_modelopt.get_reports()`); settings: the chosen settings with the"
        " number of graph pairs that chose them (`report.details['settings']`)",
        "",
    ]


def render(rows: Sequence[RankFigures], head: Sequence[str] = ()) -> str:
    """The markdown: `head`, the table of `rows`, then the errors, if any."""
    inductor = {(r.wrapper, r.rank): r.peak_bytes for r in rows if r.backend == "inductor"}
    lines = [
        *head,
        "| wrapper | backend | rank | peak MiB | vs Inductor | step ms | compile s"
        " | graphs planned | settings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    errors = []
    for row in rows:
        base = inductor.get((row.wrapper, row.rank))
        versus = f"{row.peak_bytes / base:.3f}" if row.peak_bytes is not None and base else ""
        graphs = "" if row.planned is None else f"{row.planned} / {row.fallen_back}"
        lines.append(
            f"| {row.wrapper} | {row.backend} | {row.rank} | {_number(row.peak_bytes, MIB)}"
            f" | {versus} | {_number(row.step_ms)} | {_number(row.compile_seconds)}"
            f" | {graphs} | {row.settings} |"
        )
        if row.error:
            errors.append(f"- {row.wrapper} / {row.backend} / rank {row.rank}: {row.error}")
    if errors:
        lines += ["", "Errors:", "", *errors]
    return "\n".join(lines) + "\n"


def _number(value: float | None, unit: float = 1) -> str:
    return "" if value is None else f"{value / unit:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--bucket-mb", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--out", default="bench/results/distributed.md")
    args = parser.parse_args()
    mp.spawn(_worker, args=(free_port(), args), nprocs=WORLD_SIZE)


if __name__ == "__main__":
    main()
