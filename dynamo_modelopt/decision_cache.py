"""Remember which settings won for a graph, so the next compile of it builds only those.

Choosing settings plans every candidate (up to eight for a CNN in training) before the winner
is built: on the training zoo (CPU, batch 8, a loaded machine) the first compile took 2-10x
plain Inductor's (`bench/results/train_b8_plan_only/results.md`). The choice depends
only on the graph, its inputs' shapes and layouts, the options, the software and the machine,
so it is kept on disk under a key made of all of those; a later compile of the same graph
(the next run of a training script) compiles the chosen candidate alone. A "planned_saves"
choice keeps its plan (the tensors recomputed), and the partitioner replays it instead of
solving again (`PlannedPartitioner.replay`).

A decision is never trusted blindly: if the chosen candidate no longer compiles as recorded
(a recorded tensor is missing from the graph, the compile falls back), the backend forgets it
and searches again. Off with `options={"decision_cache": False}`; the directory is
`decisions` under `$MODELOPT_CACHE_DIR`, else under `modelopt` in Inductor's cache directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .caches import cache_root

log = logging.getLogger(__name__)

# bump when what a decision means changes, so old entries are not read
FORMAT = 1


@dataclass(frozen=True)
class Decision:
    """What a search chose for one graph."""

    chosen: str
    # the plan of a "planned_saves" choice (`PlannedPartitioner.plans`: its "recompute" names
    # the saved tensors recomputed); None for other settings
    recompute_plan: dict[str, Any] | None = None
    # the search's summary (`decide.summarize`): why, alternatives, measured overheads
    settings: dict[str, Any] = field(default_factory=dict)


def cache_dir() -> Path:
    return cache_root() / "decisions"


def _machine(example_inputs: Sequence[Any]) -> str:
    """What run times depend on: the CPU, and the GPU where the inputs live on one."""
    devices = {x.device for x in example_inputs if isinstance(x, torch.Tensor)}
    text = f"{platform.machine()} {platform.processor()} cpus={os.cpu_count()}"
    text += f" threads={torch.get_num_threads()}"
    for device in sorted(devices, key=str):
        if device.type == "cuda":
            text += f" {torch.cuda.get_device_name(device)}"
    return text


def _input_spec(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return [
            list(value.shape),
            list(value.stride()),
            str(value.dtype),
            value.device.type,
            value.requires_grad,
        ]
    if isinstance(value, (int, float, bool, str)) or value is None:
        return value
    return type(value).__name__


def _plain_config(module: Any) -> dict[str, Any]:
    """A config module's settings that are plain values (callables and objects have no stable
    text; the options that matter to us are all plain)."""
    plain = (bool, int, float, str, type(None))
    return {
        name: value
        for name, value in sorted(module.get_config_copy().items())
        if isinstance(value, plain)
        or (isinstance(value, (list, tuple)) and all(isinstance(v, plain) for v in value))
    }


def decision_key(
    gm: torch.fx.GraphModule, example_inputs: Sequence[Any], config_key: str, grad: bool
) -> str:
    """A hash of everything the choice depends on."""
    from . import __version__
    from ._torch_compat import functorch_config, inductor_config

    parts = {
        "format": FORMAT,
        "modelopt": __version__,
        "torch": torch.__version__,
        "graph": gm.code,
        "inputs": [_input_spec(x) for x in example_inputs],
        "grad_enabled": grad,
        "options": config_key,
        "inductor": _plain_config(inductor_config),
        "functorch": _plain_config(functorch_config),
        "machine": _machine(example_inputs),
    }
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def load(key: str) -> Decision | None:
    """The decision stored under `key`, or None (none, or unreadable: searched again)."""
    path = cache_dir() / f"{key}.json"
    try:
        return _decision(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.info("modelopt: ignoring the unreadable decision %s: %s", path, exc)
        return None


def _decision(data: Any) -> Decision:
    """The decision a stored entry holds; a ValueError where it is valid JSON of another shape
    (another version's, or a damaged file), which the backend must not trip over."""
    if not isinstance(data, dict) or not isinstance(data.get("chosen"), str):
        raise ValueError("not a decision: no chosen settings' name")
    plan = data.get("recompute_plan")
    if plan is not None and not (
        isinstance(plan, dict)
        and isinstance(plan.get("recompute", []), list)
        and all(isinstance(name, str) for name in plan.get("recompute", []))
    ):
        raise ValueError("recompute_plan is not a plan")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError("settings is not a summary")
    return Decision(data["chosen"], plan, settings)


def store(key: str, decision: Decision) -> None:
    """Write the decision; a failure only costs the next compile a search."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(decision), default=repr))
        tmp.replace(folder / f"{key}.json")  # atomic: a reader never sees half a file
    except OSError as exc:
        log.info("modelopt: could not store the decision: %s", exc)


def forget(key: str) -> None:
    try:
        (cache_dir() / f"{key}.json").unlink()
    except OSError:
        pass
