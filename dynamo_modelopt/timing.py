"""The chosen candidate's compiled graph, run beside the defaults' at compile time: a veto.

The choice between compile settings is made by the run-time model (`decide.py`), which is
deterministic. With `timing_rounds` > 0 (off by default: the defaults must be built too, one
more compile, and run) the measurement can veto its choice. The model misses what a setting
costs outside the kernels it prices (on CPU, EfficientNet-B0 and GoogLeNet, batch 8, were
estimated within the 5% budget and ran 5.7% and 6.3% slower in turns:
`bench/results/step_times_paired_zoo.md` at code 7a11ea7). So where memory allows, the
winner is run beside the defaults on the example inputs, forward and (in training) backward,
in rounds with one run of each per round (each round starting with the other), and read by
its ratio to the defaults in the same round (pairs taken minutes apart drift with the
machine's load). It is dropped only where a one-sided sign test says, at
`VETO_CONFIDENCE`, that its median ratio lies above the run-time budget less
`REAL_STEP_MARGIN` (what a real step costs beyond the graph); a median inside the budget never
drops it. Noise alone therefore rarely decides: under the old rule (the rounds' upper quartile
had to be inside the budget) a Llama-style decoder lost a -27% recomputation that measured a
median of 0.988 because its upper quartile read 1.0455.

Nothing of the caller's state changes: tensors that need no gradient (the batch, and buffers
a graph may update in place, such as batch norm's running statistics) are cloned; those that
need one are detached (same storage, new leaves), and the gradients are returned by
`torch.autograd.grad` instead of accumulated into `.grad`; the random number generators'
states are restored afterwards.

Running the candidates needs their peak memory at compile time, so the veto is skipped (the
model's choice stands) unless the device has `MEMORY_HEADROOM` times the larger predicted peak
free, beside the clones.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree

log = logging.getLogger(__name__)

# the confidence at which a measured ratio must be above the budget to drop the model's choice
VETO_CONFIDENCE = 0.95
# what the measured ratios must leave of the run-time budget: timed here (graph only, on
# copies of the inputs, against modelopt's own defaults) a setting reads below what it costs
# in a real step against plain Inductor. In the paired bench, EfficientNet-B0's choice read
# +4.6% here and +5.7% there, GoogLeNet's +2.4% and +3.7%
# (`bench/results/step_times_paired_effnet_googlenet.md`); `bench.timing_check` read the real
# step 2-4 points above the graph alone on MobileNet-v2 (`bench/results/timing_check.md`).
REAL_STEP_MARGIN = 0.01
# free memory needed, as a multiple of the largest predicted peak (the allocator's caching
# and rounding, and the prediction's own error)
MEMORY_HEADROOM = 1.5


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed callable per round (`rounds[r][i]`, NaN for those that failed),
    and why those failed."""

    rounds: list[list[float]]
    failed: dict[int, str] = field(default_factory=dict)

    def ratios_to_first(self, index: int) -> list[float]:
        """This callable's time over the first's in the same round, per round."""
        return [r[index] / r[0] for r in self.rounds]


def measured_limit(max_recompute_overhead: float) -> float:
    """The highest ratio to the defaults, measured here, that is within the run-time budget."""
    return 1.0 + max_recompute_overhead - REAL_STEP_MARGIN


def sign_test_p_value(ratios: Sequence[float], limit: float) -> float:
    """One-sided sign test of "the median ratio is at most `limit`": the chance, were the
    median exactly `limit`, of at least this many rounds above it (1.0 without rounds)."""
    above = sum(1 for r in ratios if r > limit)
    return sum(math.comb(len(ratios), k) for k in range(above, len(ratios) + 1)) / 2 ** len(ratios)


def quantile_of(values: Sequence[float], quantile: float) -> float:
    """The `quantile` of `values`, linear between the two nearest."""
    ordered = sorted(values)
    position = quantile * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _is_fake(value: Any) -> bool:
    from ._torch_compat import FakeTensor

    return isinstance(value, FakeTensor)


def device_of(example_inputs: Sequence[Any]) -> torch.device:
    """The accelerator the inputs live on, else the CPU."""
    for value in example_inputs:
        if isinstance(value, torch.Tensor) and value.device.type != "cpu":
            return value.device
    return torch.device("cpu")


def free_bytes(device: torch.device) -> int | None:
    """Memory the device can still give: CUDA's free memory plus what its caching allocator
    holds unused; on CPU, Linux's MemAvailable. None where unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _clone_bytes(example_inputs: Sequence[Any]) -> int:
    return sum(
        x.untyped_storage().nbytes()
        for x in example_inputs
        if isinstance(x, torch.Tensor) and not x.requires_grad
    )


def why_not_timed(
    example_inputs: Sequence[Any], largest_peak_bytes: int, rounds: int
) -> str | None:
    """Why the candidates cannot be run here, or None where they can."""
    if rounds <= 0:
        return "timing turned off (timing_rounds=0)"
    if any(_is_fake(x) for x in example_inputs):
        return "the example inputs are fake tensors"
    from ._torch_compat import inductor_config

    if inductor_config.triton.cudagraphs:
        return "CUDA graphs would be recorded by a run at compile time"
    device = device_of(example_inputs)
    free = free_bytes(device)
    if free is None:
        return f"free memory on {device} unknown"
    needed = MEMORY_HEADROOM * largest_peak_bytes + _clone_bytes(example_inputs)
    if free < needed:
        return (
            f"{free / 2**20:.0f} MiB free on {device}, {needed / 2**20:.0f} MiB needed to run"
            " the candidates"
        )
    return None


def step_of(compiled: Callable[..., Any], example_inputs: Sequence[Any]) -> Callable[[], None]:
    """One forward and, where a gradient can flow, backward of `compiled`, on private inputs.

    Every output that needs a gradient gets a gradient of ones (the backward's run time does
    not depend on the values)."""
    args: list[Any] = []
    leaves: list[torch.Tensor] = []
    for value in example_inputs:
        if isinstance(value, torch.Tensor):
            if value.requires_grad:
                value = value.detach().requires_grad_(True)
                leaves.append(value)
            else:
                value = value.clone()
        args.append(value)
    backward = bool(leaves) and torch.is_grad_enabled()

    def step() -> None:
        outputs = compiled(*args)  # as Dynamo's bytecode calls it
        if not backward:
            return
        flowing = [
            o
            for o in pytree.tree_leaves(outputs)
            if isinstance(o, torch.Tensor) and o.requires_grad
        ]
        if flowing:
            torch.autograd.grad(
                flowing,
                leaves,
                grad_outputs=[torch.ones_like(o) for o in flowing],
                allow_unused=True,
            )

    return step


def call_seconds(call: Callable[[], Any], device: torch.device | str = "cpu") -> float:
    """Wall seconds of one call; on CUDA from a synchronized start to a synchronized end, so
    the kernels it queued are counted."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def time_steps(steps: Sequence[Callable[[], None]], rounds: int, device: torch.device) -> Timing:
    """Run each step once to warm up, then `rounds` rounds of one timed run of each, each
    round starting one step later. A step that raises in its warm-up is left out (NaN) with
    the error in `failed`."""
    failed: dict[int, str] = {}
    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices, device_type=device.type):
        for index, step in enumerate(steps):
            try:
                step()
            except Exception as exc:  # a candidate that cannot run must not be chosen
                failed[index] = f"{type(exc).__name__}: {exc}"
        table = []
        for round_index in range(rounds):
            seconds = [math.nan] * len(steps)
            # each round starts with another step: a step's place in the round must not
            # count (the paired bench rotates the same way)
            for i in _rotated(range(len(steps)), round_index):
                if i not in failed:
                    seconds[i] = call_seconds(steps[i], device)
            table.append(seconds)
        return Timing(table, failed)


def _rotated(indices: range, start: int) -> list[int]:
    shift = start % max(len(indices), 1)
    return list(indices[shift:]) + list(indices[:shift])
