"""Ranks on one machine: a free port on 127.0.0.1 and a process group around a rank's work.

Shared by `bench/distributed.py` and `tests/backend/test_distributed.py`."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Iterator

import torch.distributed as dist


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process_group(
    rank: int, world_size: int, port: int, backend: str = "gloo", timeout_minutes: float = 30
) -> Iterator[None]:
    """This process as `rank` of `world_size` ranks meeting on 127.0.0.1:`port`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(
        backend,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(minutes=timeout_minutes),
    )
    try:
        yield
    finally:
        dist.destroy_process_group()
