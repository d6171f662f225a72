"""``bmac-trio sim``: first line, real serving, clean exit on SIGTERM/SIGINT, help and errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import trio

from bmac_trio.clock import ScaledWallClock

_CMD = [sys.executable, "-c", "from bmac_trio.cli import main; main()", "sim"]


async def _first_line(proc: trio.Process) -> str:
    assert proc.stdout is not None
    buf = b""
    while b"\n" not in buf:
        chunk = await proc.stdout.receive_some(4096)
        assert chunk, "simulator exited before printing its URLs"
        buf += chunk
    return buf.split(b"\n", 1)[0].decode()


@pytest.mark.parametrize(
    ("market", "path", "sig"),
    [("cm", "/dapi/v1/time", signal.SIGTERM), ("spot", "/api/v3/time", signal.SIGINT)],
)
async def test_cli_serves_and_exits_zero(market: str, path: str, sig: signal.Signals) -> None:
    start = 1767225600000
    clock = ScaledWallClock(start, 60.0, time.time())
    args = [*_CMD, "--market", market, "--port", "0", "--symbols", "5", "--clock", clock.spec()]
    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE)
        try:
            line = await _first_line(proc)
            parts = line.split()
            assert parts[0] == "REST"
            assert parts[2] == "WS"
            assert parts[1].startswith("http://127.0.0.1:")
            assert parts[3] == "ws://127.0.0.1:" + parts[1].rsplit(":", 1)[1]
            async with httpx.AsyncClient() as client:
                r = await client.get(parts[1] + path)
            server_time = orjson.loads(r.content)["serverTime"]
            assert abs(server_time - clock.now_ms()) < 60 * 2000  # same shared clock
            proc.send_signal(sig)
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            assert proc.stdout is not None
            await proc.stdout.aclose()


def test_cli_help_explains_every_option() -> None:
    out = subprocess.run([*_CMD, "--help"], capture_output=True, text=True, check=True, timeout=30)
    for option in (
        "--market", "--port", "--symbols", "--seed", "--exchange-info", "--scenario", "--speed",
        "--start", "--clock", "--interval-hint", "--history-candles", "--weight-limit",
        "--ws-lifetime", "--host",
    ):  # fmt: skip
        assert option in out.stdout


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--market", "futures"], "futures"),
        (["--port", "70000"], "--port"),
        (["--symbols", "0"], "--symbols"),
        (["--speed", "-1"], "--speed"),
        (["--clock", "nonsense"], "clock spec"),
        (["--exchange-info", "/nonexistent.json"], "does not exist"),
        (["--interval-hint", "7m"], "interval"),
        (["--scenario", "BAD_SCENARIO"], "unknown scenario key"),
    ],
)
def test_cli_bad_options_fail_clearly(args: list[str], text: str, tmp_path: Path) -> None:
    bad = tmp_path / "scenario.json"
    bad.write_text('{"listing": []}')
    args = [str(bad) if a == "BAD_SCENARIO" else a for a in args]
    out = subprocess.run([*_CMD, *args], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert text in out.stdout + out.stderr
    assert "REST http" not in out.stdout
