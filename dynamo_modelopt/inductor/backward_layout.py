"""Compile a backward graph without layout optimization: recomputation must not turn it on.

Inductor decides layout optimization (channels-last activations and weight copies around
convolutions) per graph, from the convolutions the graph holds: on the CPU with oneDNN, any
`aten.convolution` turns it on for the whole graph (`GraphLowering.decide_layout_opt`). A
backward holds `convolution_backward`, not `convolution`, so with Inductor's defaults its
layouts stay as they are, while the forward is optimized. A backward that recomputes a
convolution of the forward (the partitioner's activation budget, or our planned saved set)
holds one, and then the whole backward goes channels-last: on EfficientNet-B0 (batch 8, CPU)
oneDNN's depthwise convolution backward then took 28.2 MiB of scratch for one (8, 1152, 2, 2)
input where it took 1.0 MiB before, and the planner's recomputation raised the step's peak from
44.5 to 59.2 MiB instead of lowering it. With the backward compiled without layout optimization
the same recomputation reached 33.7 MiB at +0.9% step time against Inductor's (a script outside
bench/, in turns). Not always better: a small depthwise network under the activation budget 0.1
peaked 25% lower with its backward channels-last (`tests/backend/test_backward_layout.py`).
So this is one more candidate of the choice by the numbers (`decide.candidates`:
"bw_no_layout_opt+..."), not a rule; a user who forces layout optimization
(`force_layout_optimization`) keeps it everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def without_backward_layout_opt(inner_compile: Callable[..., Any]) -> Callable[..., Any]:
    """`inner_compile` (Inductor's `compile_fx_inner`, or a wrapper of it), compiling backward
    graphs (`is_backward=True`, as `compile_fx_backward` calls it) without layout
    optimization."""
    from .._torch_compat import inductor_config

    def compile_inner(gm: Any, example_inputs: Sequence[Any], **kwargs: Any) -> Any:
        if kwargs.get("is_backward") and not inductor_config.force_layout_optimization:
            with inductor_config.patch(layout_optimization=False):
                return inner_compile(gm, example_inputs, **kwargs)
        return inner_compile(gm, example_inputs, **kwargs)

    return compile_inner
