"""The pure core imports neither trio nor httpx (h11/wsproto-style sans-IO)."""

import subprocess
import sys

import pytest

PURE_MODULES = [
    "bmac_trio._errors",
    "bmac_trio._intervals",
    "bmac_trio._markets",
    "bmac_trio._symbols",
    "bmac_trio._layout",
    "bmac_trio._config",
    "bmac_trio._candles",
    "bmac_trio._protocol",
    "bmac_trio._exchange_info",
    "bmac_trio._planner",
    "bmac_trio._weights",
    "bmac_trio._events",
    "bmac_trio._book",
]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_core_module_imports_no_io_library(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "bad = sorted(m for m in ('trio', 'httpx', 'trio_websocket') if m in sys.modules); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
