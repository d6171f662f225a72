"""An alert from the real recorder, as deployed: `bmac-trio run` with a webhook in config.json
sees the simulator delist a symbol and the local webhook server receives the alert."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

import orjson
import pytest
import trio

from bmac_trio.clock import ScaledWallClock

from ..cli.conftest import BMAC_TRIO
from .conftest import WebhookServer

SPEED = 30.0
START_MS = 1_764_000_000_000


class PeriodLines:
    """Counts the recorder's "all symbols ready" log lines as they come (its stderr)."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = trio.Event()

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            new = sum(1 for line in lines if b"all symbols ready" in line)
            if new:
                self.count += new
                self._changed.set()
                self._changed = trio.Event()

    async def wait_for(self, n: int) -> None:
        while self.count < n:
            await self._changed.wait()


@pytest.mark.slow
@pytest.mark.parametrize("webhook", ["hang"])
async def test_recorder_alerts_a_delisting_through_the_webhook(
    tmp_path: Path, webhook_server: WebhookServer, webhook: str
) -> None:
    # The webhook accepts the request and never answers: the alert was sent, recording goes on
    # and a stop is prompt. (Answered webhooks are covered in test_alerts.py.)
    webhook_server.mode = webhook
    clock = ScaledWallClock(START_MS, SPEED, time.time()).spec()
    delist_at = START_MS + 3 * 60_000  # three 1m periods in: six real seconds
    scenario = tmp_path / "scenario.json"
    scenario.write_bytes(orjson.dumps({"delistings": [["SIM002USDT", delist_at]]}))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            sim = await nursery.start(
                partial(
                    trio.run_process,
                    [BMAC_TRIO, "sim", "--symbols", "9", "--seed", "3", "--clock", clock,
                     "--scenario", str(scenario)],
                    stdout=subprocess.PIPE,
                    check=False,
                )
            )  # fmt: skip
            first = b""
            while not first.endswith(b"\n"):
                first += await sim.stdout.receive_some(1)
            rest_url, ws_url = re.fullmatch(r"REST (\S+) WS (\S+)\n", first.decode()).groups()  # type: ignore[union-attr]
            base = tmp_path / "usdt_perp_1m"
            base.mkdir()
            config = {
                "interval": "1m",
                "trade_type": "usdt_perp",
                "num_candles": 60,
                "rest_url": rest_url,
                "ws_url": ws_url,
                "msg_sender": {"type": "webhook", "error": {"url": f"{webhook_server.url}/hook"}},
            }
            (base / "config.json").write_bytes(orjson.dumps(config))
            run = await nursery.start(
                partial(
                    trio.run_process,
                    [BMAC_TRIO, "run", str(base), "--clock", clock],
                    stderr=subprocess.PIPE,
                    check=False,
                )
            )
            periods = PeriodLines()
            nursery.start_soon(periods.read, run.stderr)
            delistings: list = []
            while not delistings:  # other alerts may come first; wait for this one
                received = await webhook_server.wait_for(len(webhook_server.received) + 1)
                delistings = [r for r in received if r.body["kind"] == "delisting"]
            got = delistings[0]
            # two more periods complete while the alert is (or is not) being answered
            await periods.wait_for(periods.count + 2)
            stop_started = trio.current_time()
            run.send_signal(signal.SIGTERM)
            assert await run.wait() == 0
            # a hung webhook delays a stop by at most the alert flush limit (10 s)
            assert trio.current_time() - stop_started < 15
            sim.send_signal(signal.SIGTERM)
            assert await sim.wait() == 0
    assert got.path == "/hook"
    assert got.body["kind"] == "delisting"
    assert "SIM002USDT" in got.body["text"]
    assert got.body["time_ms"] >= delist_at  # stamped on the recorder's (shared) clock
