"""The planning problem predicts what the compiled code really allocates (kineto, CPU).

For Inductor's own order and allocation (`reorder=False`, `arena="off"`), the peak of the
problem as emitted must match the peak the profiler measures for the same compiled graph:
extern kernels' workspace is measured at compile time, a backward's saved tensors are sized by
the storage they keep alive. (With arenas, `test_arena.py` asks for the exact figure.)
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo

import dynamo_modelopt
from dynamo_modelopt.measure import kineto_peak_bytes

from .models import make_case, step_for

# measured / predicted must lie in this range (the step's loss and frees of dynamically
# allocated buffers between kernels move the measured figure by a few hundred bytes)
LOWEST_RATIO, HIGHEST_RATIO = 0.99, 1.02


@pytest.mark.parametrize("case", ["mlp", "convbn", "inplace_views", "gpt2"])
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_predicted_peak_matches_kineto(case: str, mode: str) -> None:
    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
    model, inputs = make_case(case)
    model = copy.deepcopy(model)
    compiled = torch.compile(
        model, backend="modelopt", options={"strict": True, "reorder": False, "arena": "off"}
    )
    step = step_for(model, compiled, inputs, mode)
    step()  # compile outside the profiled window
    for p in model.parameters():
        p.grad = None
    measured = kineto_peak_bytes(step)
    reports = dynamo_modelopt.get_reports()
    assert {r.graph_kind for r in reports} == (
        {"inference"} if mode == "inference" else {"forward", "backward"}
    )
    # One graph per direction: the step's peak is the larger of the graphs' peaks (the backward
    # graph's problem holds the saved activations from its first step).
    predicted = max(r.emitted_peak_bytes for r in reports)
    assert LOWEST_RATIO <= measured / predicted <= HIGHEST_RATIO, (measured, predicted)
