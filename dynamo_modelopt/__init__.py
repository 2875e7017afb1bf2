"""dynamo_modelopt: a torch.compile backend that plans the order and memory of every graph.

Use it by name after installing, no import needed::

    compiled = torch.compile(model, backend="modelopt", options={"time_limit": 10})

`get_reports()` tells what was planned for each compiled graph.
"""

from .backend import modelopt_backend
from .config import ModeloptConfig
from .report import (
    GraphReport,
    ModeloptFallbackWarning,
    clear_reports,
    format_reports,
    get_reports,
)

__all__ = [
    "GraphReport",
    "ModeloptConfig",
    "ModeloptFallbackWarning",
    "clear_reports",
    "format_reports",
    "get_reports",
    "modelopt_backend",
]
__version__ = "0.1.0"
