"""CLI test helpers: run ``bmac-trio`` exactly as a person types it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The console script beside the interpreter running the tests (the venv's ``bmac-trio``).
BMAC_TRIO = str(Path(sys.executable).with_name("bmac-trio"))


def run_cli(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``bmac-trio ARGS`` exactly as a person types it; capture text output.

    ``env`` adds variables to (or overrides those of) this process's environment.
    """
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1", **kwargs.pop("env", {})}
    return subprocess.run(
        [BMAC_TRIO, *args], capture_output=True, text=True, timeout=timeout, env=env, **kwargs
    )
