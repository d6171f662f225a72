"""Shared test fixtures: where the captured Binance payloads are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ``../shared`` beside the repository (CI clones it there); BMAC_SHARED overrides.
SHARED_DIR = Path(os.environ.get("BMAC_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURES_DIR = SHARED_DIR / "fixtures" / "binance"


@pytest.fixture
def binance_fixtures() -> Path:
    """The folder of real captured Binance payloads; skipped (not failed) outside CI without it."""
    if not FIXTURES_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared fixtures at {FIXTURES_DIR}")
        pytest.skip(f"no captured Binance fixtures at {FIXTURES_DIR}")
    return FIXTURES_DIR
