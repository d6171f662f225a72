"""Every kind of error reaches ``bmac-trio status`` (issue 11, item 6).

After 168 WebSocket connect failures the status file said ``last error none``: only disk
errors and crashes were passed to the status tracker.
"""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path

import trio

from bmac_trio.ops.status import StatusReport, StatusTracker, read_status
from bmac_trio.recorder.service import run_recorder
from bmac_trio.sim import SimConfig
from bmac_trio.store.config import load_config

from .conftest import FAST_OPTIONS, simulator, write_config


def refused_port() -> int:
    """A port of 127.0.0.1 nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_websocket_connect_failures_show_as_the_last_error(tmp_path: Path) -> None:
    async with simulator(SimConfig(market="um", symbols=4, seed=3), speed=120) as (sim, clock):
        base = tmp_path / "data"
        write_config(
            base,
            interval="1m",
            trade_type="usdt_perp",
            num_candles=30,
            rest_url=sim.rest_url,
            ws_url=f"ws://127.0.0.1:{refused_port()}",
        )
        config = load_config(base)
        report = StatusReport.for_config(config, pid=1, now_ms=clock.now_ms(), clock_speed=120)
        tracker = StatusTracker(base, report, clock)
        async with trio.open_nursery() as nursery:
            run = partial(run_recorder, config, clock=clock, status=tracker, options=FAST_OPTIONS)
            # started: the listeners tried (and failed) to connect once
            handle = await nursery.start(run)
            assert tracker.report.last_error is not None
            assert "connect failed" in tracker.report.last_error
            assert tracker.report.last_error_at_ms is not None
            handle.stop()

    saved = read_status(base)  # a graceful stop saves the report, marked stopped
    assert saved is not None
    assert saved.state == "stopped"
    assert saved.last_error is not None
    assert "connect failed" in saved.last_error
    assert saved.last_error.startswith("WsDisconnected: ")
    assert saved.last_error_at_ms is not None
