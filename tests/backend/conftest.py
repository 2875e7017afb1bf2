"""Every backend test starts from a fresh Dynamo cache and an empty report list."""

from __future__ import annotations

import pytest
import torch._dynamo

import dynamo_modelopt


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> None:
    torch._dynamo.reset()
    dynamo_modelopt.clear_reports()
