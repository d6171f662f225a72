"""Shared test fixtures: where the captured Binance payloads are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing

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


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """pytest-trio's autojump clock, but jumping after 0.1 ms of real idleness instead of 0.

    With a threshold of 0 the run loop spins (epoll with a zero timeout, over and over) while
    a worker thread runs and no deadline is pending, and the spinning main thread fights the
    worker for the GIL: the kit's poll-in-a-thread tests took 2-40 s instead of about one.
    """
    return trio.testing.MockClock(autojump_threshold=1e-4)
