"""DistributedDataParallel under `backend="modelopt"`: DDPOptimizer splits the graph at the
gradient buckets and compiles each piece with our backend; every piece is planned and reported,
and the all-reduced gradients are as close to eager as Inductor's. Two CPU ranks, gloo, on
127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch._dynamo.backends.distributed import DDPOptimizer
from torch.nn.parallel import DistributedDataParallel

import dynamo_modelopt
from bench.ranks import free_port, process_group

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


def _train_ddp(backend: str, rank: int) -> dict[str, Any]:
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
    return {
        "grads": {n: p.grad.clone() for n, p in ddp.module.named_parameters()},
        "buckets": buckets,
        "reports": _reports(),
    }


def _reports() -> list[tuple[str, str, str | None]]:
    """(kind, status, chosen settings) of each graph planned since the last reset."""
    return [
        (r.graph_kind, r.status, r.details.get("settings", {}).get("chosen"))
        for r in dynamo_modelopt.get_reports()
    ]


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(64, 128), nn.Linear(128, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(x)))


class Blocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def _train_fsdp(backend: str, rank: int) -> dict[str, Any]:
    """FSDP2 (`fully_shard` on each block and the root): the full gradients after `STEPS`
    steps. FSDP2's hooks break Dynamo's graph here: the all-gathers and reduce-scatters run
    eagerly between the compiled blocks."""
    from torch.distributed.fsdp import fully_shard

    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    torch.manual_seed(0)
    model = Blocks()
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    fn = model if backend == "eager" else torch.compile(model, backend=backend)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(STEPS):
        torch.manual_seed(100 * step + rank)
        optimizer.zero_grad()
        fn(torch.randn(8, 64)).square().mean().backward()
        optimizer.step()
    grads = {n: p.grad.full_tensor() for n, p in model.named_parameters()}
    return {"grads": grads, "reports": _reports()}


def _two_all_reduces(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    import torch.distributed._functional_collectives as funcol

    y = torch.relu(x @ w)
    a = funcol.all_reduce(y, "sum", dist.group.WORLD)
    b = funcol.all_reduce(y * 3, "sum", dist.group.WORLD)
    return (a * 2 + b).sum(0) + y.sum(0)


def _collectives(backend: str, rank: int) -> dict[str, Any]:
    """A graph holding two all-reduces and their waits (functional collectives): its output,
    and the communication nodes the order pass kept in Inductor's sequence."""
    from dynamo_modelopt.inductor import order_pass

    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    torch.manual_seed(rank)
    x, w = torch.randn(8, 16), torch.randn(16, 16)
    if backend == "eager":
        return {"out": _two_all_reduces(x, w)}
    found: list[set[str]] = []
    detect = order_pass.communication_nodes

    def recording(nodes: Any) -> set[str]:
        found.append(detect(nodes))
        return found[-1]

    order_pass.communication_nodes = recording
    try:
        out = torch.compile(_two_all_reduces, backend=backend)(x, w)
    finally:
        order_pass.communication_nodes = detect
    return {"out": out, "communication": found, "reports": _reports()}


SCENARIOS = {"ddp": _train_ddp, "fsdp": _train_fsdp, "collectives": _collectives}


def _worker(rank: int, port: int, out: str, scenario: str, backends: tuple[str, ...]) -> None:
    torch.set_num_threads(1)  # two ranks on a shared machine
    # as the suite's conftest does in-process: a graph an earlier run left in Inductor's FX
    # graph cache would skip our pass, and with it what these tests look at
    torch._inductor.config.fx_graph_cache = False
    with process_group(rank, WORLD_SIZE, port):
        results = {backend: SCENARIOS[scenario](backend, rank) for backend in backends}
        torch.save(results, Path(out) / f"rank{rank}.pt")


def _run(scenario: str, tmp_path: Path, backends: tuple[str, ...] = BACKENDS) -> list[dict]:
    """Each rank's results of `scenario` under each backend."""
    args = (free_port(), str(tmp_path), scenario, backends)
    mp.spawn(_worker, args=args, nprocs=WORLD_SIZE)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]


def _max_error(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    assert got.keys() == want.keys()
    return max(float((got[k].double() - want[k].double()).abs().max()) for k in want)


def _assert_as_close_as_inductor(results: dict[str, dict], key: str) -> None:
    eager, inductor, modelopt = (results[b][key] for b in BACKENDS)
    if isinstance(eager, torch.Tensor):
        eager, inductor, modelopt = ({"": t} for t in (eager, inductor, modelopt))
    inductor_error = _max_error(inductor, eager)
    modelopt_error = _max_error(modelopt, eager)
    assert modelopt_error <= max(2 * inductor_error, 1e-5), (inductor_error, modelopt_error)


def test_ddp_pieces_are_planned_and_gradients_match_inductor(tmp_path: Path) -> None:
    ranks = _run("ddp", tmp_path)
    for results in ranks:
        _assert_as_close_as_inductor(results, "grads")
        inductor, modelopt = results["inductor"], results["modelopt"]
        # one split of one Dynamo graph, into a piece per bucket: each planned, forward and
        # backward, none fallen back
        assert modelopt["buckets"] == inductor["buckets"] and len(modelopt["buckets"]) == 1
        pieces = modelopt["buckets"][0]
        assert pieces >= 2
        kinds = [kind for kind, _, _ in modelopt["reports"]]
        assert kinds.count("forward") == kinds.count("backward") == pieces, modelopt["reports"]
        # each piece chose its settings (its inputs are fake: chosen on predictions alone)
        assert all(s != "fallback" and chosen for _, s, chosen in modelopt["reports"])
    # the all-reduce gave both ranks the same gradients
    assert _max_error(ranks[0]["modelopt"]["grads"], ranks[1]["modelopt"]["grads"]) == 0.0


def test_fsdp2_blocks_are_planned_and_gradients_match_inductor(tmp_path: Path) -> None:
    for results in _run("fsdp", tmp_path):
        _assert_as_close_as_inductor(results, "grads")
        reports = results["modelopt"]["reports"]
        kinds = [kind for kind, _, _ in reports]
        # the two blocks' graphs (Dynamo compiles the block's code once for both)
        assert kinds.count("forward") == kinds.count("backward") >= 1, reports
        assert all(s != "fallback" and chosen for _, s, chosen in reports), reports


def test_collectives_in_a_graph_keep_inductors_sequence(tmp_path: Path) -> None:
    for results in _run("collectives", tmp_path):
        _assert_as_close_as_inductor(results, "out")
        modelopt = results["modelopt"]
        # two all-reduces and their two waits, found among Inductor's scheduler nodes
        assert [len(names) for names in modelopt["communication"]] == [4]
        assert [s for _, s, _ in modelopt["reports"]] != ["fallback"]
