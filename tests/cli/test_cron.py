"""Cron deployment as typed: a simulator, two `bmac-trio run` copies started at once, status,
metrics scraped from the running recorder, the log file, and SIGTERM -> exit 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bmac_trio.clock import ScaledWallClock

from .conftest import BMAC_TRIO, run_cli

SPEED = 30.0


def _popen(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BMAC_TRIO, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines_until(stream: object, pattern: str, seen: list[str]) -> re.Match[str]:
    """Read lines (blocking; the test's watchdog kills stuck processes) until one matches."""
    for line in stream:  # type: ignore[attr-defined]
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"stream ended without {pattern!r}:\n{''.join(seen[-30:])}")


@pytest.fixture
def watchdog() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes registered here are killed after 80 s, and always at the end of the test."""
    procs: list[subprocess.Popen[str]] = []

    def kill_all() -> None:
        for p in procs:
            if p.poll() is None:
                p.kill()

    timer = threading.Timer(80, kill_all)
    timer.start()
    try:
        yield procs
    finally:
        timer.cancel()
        kill_all()
        for p in procs:
            p.wait()
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()


@pytest.mark.slow
def test_cron_two_copies_status_metrics_and_sigterm(
    tmp_path: Path, watchdog: list[subprocess.Popen[str]]
) -> None:
    clock = ScaledWallClock(1_764_000_000_000, SPEED, time.time()).spec()
    sim = _popen("sim", "--market", "um", "--symbols", "8", "--seed", "3", "--clock", clock,
                 cwd=tmp_path)  # fmt: skip
    watchdog.append(sim)
    first = sim.stdout.readline()  # type: ignore[union-attr]
    rest_url, ws_url = re.fullmatch(r"REST (\S+) WS (\S+)\n", first).groups()  # type: ignore[union-attr]

    base = tmp_path / "usdt_perp_1m"
    base.mkdir()
    config = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 120,
              "rest_url": rest_url, "ws_url": ws_url}  # fmt: skip
    (base / "config.json").write_bytes(orjson.dumps(config))
    log_file = base / "bmac.log"

    # cron starts a copy every minute: two at once, exactly as the crontab line types them
    args = ("run", str(base), "--log-file", str(log_file), "--clock", clock, "--metrics-port", "0")
    a, b = _popen(*args, cwd=tmp_path), _popen(*args, cwd=tmp_path)
    watchdog.extend([a, b])
    # exactly one exits at once, with status 0 and a clear message
    loser_code = None
    deadline = time.monotonic() + 30
    while loser_code is None and time.monotonic() < deadline:
        for proc in (a, b):
            if proc.poll() is not None:
                loser_code, loser, winner = proc.returncode, proc, (b if proc is a else a)
                break
        else:
            time.sleep(0.05)
    assert loser_code == 0
    assert "is already being recorded by" in loser.stderr.read()  # type: ignore[union-attr]
    assert winner.poll() is None

    # the winner records: metrics port from its log, then a complete period with its lag
    seen: list[str] = []
    port = int(
        _lines_until(winner.stderr, r"metrics on http://127\.0\.0\.1:(\d+)/metrics", seen)[1]
    )
    _lines_until(winner.stderr, r"all symbols ready \(\d+/\d+\), period lag", seen)
    _lines_until(winner.stderr, r"all symbols ready \(\d+/\d+\), period lag", seen)

    status = run_cli("status", str(base), "--json")
    data = orjson.loads(status.stdout)
    assert status.returncode == 0, status.stdout
    assert data["health"] == "ok"
    assert data["running"] is True
    assert data["status"]["pid"] == winner.pid
    assert data["status"]["periods_completed"] >= 1
    assert data["status"]["symbols_missing"] == []
    assert data["status"]["connections_open"] >= 1
    assert data["status"]["rest_weight_spent"] > 0
    assert data["status"]["rest_weight_limit"] == 2400

    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if not s.labels
    }
    assert samples["bmac_messages_received_total"] > 0
    assert samples["bmac_rest_weight_spent_total"] > 0
    assert samples["bmac_period_lag_seconds_count"] >= 1
    assert samples["bmac_symbols_ready"] >= 1

    # logrotate's copytruncate: the file is truncated under the running recorder, which goes on
    # appending at the new end (no hole of NUL bytes where the old content was)
    assert "all symbols ready" in log_file.read_text()
    os.truncate(log_file, 0)
    _lines_until(winner.stderr, r"all symbols ready \(\d+/\d+\), period lag", seen)
    _lines_until(winner.stderr, r"Last updated", seen)  # logged after it: the file has it now
    rotated = log_file.read_bytes()
    assert b"all symbols ready" in rotated
    assert not rotated.startswith(b"\0")

    # logrotate's default (rename, then a new file): the recorder notices the rename and
    # reopens the log file by name, so nothing more goes to the rotated copy
    renamed = log_file.with_name("bmac.log.1")
    log_file.rename(renamed)
    _lines_until(winner.stderr, r"all symbols ready \(\d+/\d+\), period lag", seen)
    _lines_until(winner.stderr, r"Last updated", seen)
    assert "all symbols ready" in log_file.read_text()
    size_after_rename = renamed.stat().st_size
    _lines_until(winner.stderr, r"Last updated", seen)
    assert renamed.stat().st_size == size_after_rename

    # SIGTERM: finish the writes in progress, exit 0; the log went to the file too
    winner.send_signal(signal.SIGTERM)
    assert winner.wait(timeout=30) == 0
    log_text = log_file.read_text()
    assert "all symbols ready" in log_text
    assert "SIGTERM received" in log_text

    # the lock went with the process: the next cron start records again
    c = _popen(*args, cwd=tmp_path)
    watchdog.append(c)
    _lines_until(c.stderr, r"listening on \d+ connections", [])
    c.send_signal(signal.SIGTERM)
    assert c.wait(timeout=30) == 0
    sim.send_signal(signal.SIGTERM)
    assert sim.wait(timeout=30) == 0
