"""A CPU compile prints nothing plain Inductor does not: our kernel measurements start and stop
kineto without its log lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from .processes import run_script

# lines kineto prints around a profiling session (and, without a GPU, at its first one)
KINETO_NOISE = ("profiler_start", "profiler_stop", "gpuGetDeviceCount", "Completed Stage")

SCRIPT = textwrap.dedent(
    """
    import torch
    import dynamo_modelopt

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    options = {"settings": "default", "timing_rounds": 0, "strict": True}
    compiled = torch.compile(model, backend="modelopt", options=options)
    with torch.no_grad():
        compiled(torch.randn(1, 3, 8, 8))
    (report,) = dynamo_modelopt.get_reports()
    print("measured", len(report.internals.measured_kernels))
    """
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU measurements' output")
def test_a_cpu_compile_prints_no_profiler_lines(tmp_path: Path) -> None:
    done = run_script(SCRIPT, tmp_path)
    # the convolution was run under the profiler: the measurements did happen
    assert "measured 1" in done.stdout, done.stdout
    noisy = [line for line in done.stderr.splitlines() if any(n in line for n in KINETO_NOISE)]
    assert noisy == []
