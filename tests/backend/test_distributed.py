"""DistributedDataParallel under `backend="modelopt"`: DDPOptimizer splits the graph at the
gradient buckets and compiles each piece with our backend; every piece is planned and reported,
and the all-reduced gradients are as close to eager as Inductor's. Two CPU ranks, gloo, on
127.0.0.1."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch._dynamo.backends.distributed import DDPOptimizer
from torch.nn.parallel import DistributedDataParallel

import dynamo_modelopt

WORLD_SIZE = 2
STEPS = 2
BACKENDS = ("eager", "inductor", "modelopt")


class ThreeLayers(nn.Module):
    """Three layers of 512 x 512 weights (1 MiB each): DDP buckets of 1 MB split the graph.

    A class of the test's own: Dynamo compiles no frame of a bare `nn.Sequential` under DDP
    (torch.nn's files are skipped as top-level frames), with any backend."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(512, 512), nn.Linear(512, 512), nn.Linear(512, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(backend: str, rank: int) -> dict[str, Any]:
    """Gradients after the last of `STEPS` SGD steps, and the buckets DDPOptimizer made."""
    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    torch.manual_seed(0)
    ddp = DistributedDataParallel(ThreeLayers(), bucket_cap_mb=1)
    buckets: list[int] = []
    split = DDPOptimizer.compile_fn

    def counting(self: DDPOptimizer, *args: Any, **kwargs: Any) -> Any:
        compiled = split(self, *args, **kwargs)
        buckets.append(len(self.buckets))
        return compiled

    DDPOptimizer.compile_fn = counting  # type: ignore[method-assign]
    try:
        fn = ddp if backend == "eager" else torch.compile(ddp, backend=backend)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for step in range(STEPS):
            torch.manual_seed(100 * step + rank)  # each rank its own batch: the all-reduce matters
            optimizer.zero_grad()
            fn(torch.randn(8, 512)).square().mean().backward()
            optimizer.step()
    finally:
        DDPOptimizer.compile_fn = split  # type: ignore[method-assign]
    reports = dynamo_modelopt.get_reports()
    return {
        "grads": {n: p.grad.clone() for n, p in ddp.module.named_parameters()},
        "buckets": buckets,
        "reports": [(r.graph_kind, r.status, r.fallback_reason) for r in reports],
    }


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    torch.set_num_threads(1)  # two ranks on a shared machine
    try:
        results = {backend: _train(backend, rank) for backend in BACKENDS}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _max_error(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    assert got.keys() == want.keys()
    return max(float((got[k].double() - want[k].double()).abs().max()) for k in want)


def test_ddp_pieces_are_planned_and_gradients_match_inductor(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    for results in ranks:
        eager, inductor, modelopt = (results[b] for b in BACKENDS)
        inductor_error = _max_error(inductor["grads"], eager["grads"])
        modelopt_error = _max_error(modelopt["grads"], eager["grads"])
        assert modelopt_error <= max(2 * inductor_error, 1e-5), (inductor_error, modelopt_error)
        # one split of one Dynamo graph, into a piece per bucket: each planned, forward and
        # backward, none fallen back
        assert modelopt["buckets"] == inductor["buckets"] and len(modelopt["buckets"]) == 1
        pieces = modelopt["buckets"][0]
        assert pieces >= 2
        kinds = [kind for kind, _, _ in modelopt["reports"]]
        assert kinds.count("forward") == kinds.count("backward") == pieces, modelopt["reports"]
        assert all(status != "fallback" for _, status, _ in modelopt["reports"])
    # the all-reduce gave both ranks the same gradients
    assert _max_error(ranks[0]["modelopt"]["grads"], ranks[1]["modelopt"]["grads"]) == 0.0
