"""dynamo_modelopt: a torch.compile backend that plans the order and memory of every graph.

Use it by name after installing, no import needed::

    compiled = torch.compile(model, backend="modelopt", options={"time_limit": 10})

`get_reports()` tells what was planned for each compiled graph; `measure_step(step)` sets one
step's measured peak and time against the predictions. `clear_caches()` forgets the kernel
and operator times measured so far in the process.
"""

from .backend import modelopt_backend
from .caches import clear_caches
from .config import ModeloptConfig
from .dynamic import ModeloptDynamicShapeWarning
from .report import (
    GraphReport,
    ModeloptFallbackWarning,
    ModeloptSettingWarning,
    clear_reports,
    format_reports,
    get_reports,
)
from .step import StepReport, measure_step

__all__ = [
    "GraphReport",
    "ModeloptConfig",
    "ModeloptDynamicShapeWarning",
    "ModeloptFallbackWarning",
    "ModeloptSettingWarning",
    "StepReport",
    "clear_caches",
    "clear_reports",
    "format_reports",
    "get_reports",
    "measure_step",
    "modelopt_backend",
]
__version__ = "0.1.0"
