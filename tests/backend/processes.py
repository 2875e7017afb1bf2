"""Run a script in a fresh Python process, importing this checkout, with its own caches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_script(script: str, caches: Path) -> subprocess.CompletedProcess[str]:
    """`script` run by this interpreter; Inductor's and our caches under `caches`; it must
    succeed."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        "MODELOPT_CACHE_DIR": str(caches / "decisions"),
        "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return done
