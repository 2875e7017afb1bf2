"""The `modelopt` torch.compile backend: Inductor, with our planned order for every graph.

`torch.compile(model, backend="modelopt", options={...})` reaches `modelopt_backend` through
the `torch_dynamo_backends` entry point. We go through Inductor's own `compile_fx` (its
decompositions, AOTAutograd partitioner, caches and code generation stay as they are) and
change only what decides memory, through `config_patches`, which Inductor re-applies when it
compiles the backward lazily inside `loss.backward()`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .config import ModeloptConfig
from .inductor.order_pass import PlanOrderPass


def inductor_config_patches(config: ModeloptConfig) -> dict[str, Any]:
    """Inductor settings under which our scheduler pass decides the order of every graph."""
    return {
        # Inductor's own reordering would replace ours; our pass runs it to learn its choice.
        "reorder_for_peak_memory": False,
        "_post_fusion_custom_pass": PlanOrderPass(config),
        # A cache hit would skip the scheduler, so the plan and its report would be missing.
        "fx_graph_cache": False,
    }


def modelopt_backend(
    gm: torch.fx.GraphModule,
    example_inputs: Sequence[Any],
    options: dict[str, Any] | None = None,
    mode: str | None = None,
) -> Callable[..., Any]:
    """Compile `gm` with Inductor under modelopt's memory plan.

    Options (see `ModeloptConfig`): solver, mode, time_limit, relative_gap, threads, seed,
    reorder, strict, save_problems. `mode` (torch.compile's) is passed on to Inductor's
    defaults unchanged: modelopt has no modes of its own.
    """
    from torch._inductor.compile_fx import compile_fx

    config = ModeloptConfig.from_options(options)
    # AOTAutograd's cache would also skip our pass on a hit.
    with torch._functorch.config.patch(enable_autograd_cache=False):
        return compile_fx(gm, example_inputs, config_patches=inductor_config_patches(config))
