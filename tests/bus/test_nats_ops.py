"""NATS in operations: ``bmac-trio check`` reaches the server; an outage shows in status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import trio

from bmac_trio.bus.nats_publisher import NatsPublisher
from bmac_trio.bus.nats_server import NatsServer, free_port
from bmac_trio.clock import TrioClock
from bmac_trio.ops.status import StatusReport, StatusTracker, write_status
from bmac_trio.store.config import load_config

CLI = [sys.executable, "-c", "from bmac_trio.cli import main; main()"]
KEYS = {"interval": "1m", "trade_type": "usdt_perp", "publish": False}


def check(base: Path, nats: object) -> subprocess.CompletedProcess[str]:
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.json").write_bytes(orjson.dumps({**KEYS, "nats": nats}))
    return subprocess.run([*CLI, "check", str(base)], capture_output=True, text=True, timeout=60)


def test_check_reaches_the_server_and_names_an_unreachable_one(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    ok = check(tmp_path / "ok", {"servers": [nats_server.url]})
    assert ok.returncode == 0, ok.stderr
    assert f"NATS stream BMAC_usdt_perp_1m on {nats_server.url} reachable" in ok.stdout
    dead = f"nats://127.0.0.1:{free_port()}"
    down = check(tmp_path / "down", {"servers": [dead]})
    assert down.returncode == 2
    assert "NATS" in down.stderr
    assert dead in down.stderr
    bad = check(tmp_path / "bad", {"servers": ["http://127.0.0.1:1"]})
    assert bad.returncode == 2
    assert "'nats'" in bad.stderr


async def test_an_unreachable_server_is_alerted_and_shown_in_status(tmp_path: Path) -> None:
    base = tmp_path / "data"
    base.mkdir()
    dead = f"nats://127.0.0.1:{free_port()}"
    (base / "config.json").write_bytes(orjson.dumps({**KEYS, "nats": {"servers": [dead]}}))
    config = load_config(base)
    clock = TrioClock(start_ms=1_767_225_600_000)
    report = StatusReport.for_config(config, pid=1, now_ms=clock.now_ms(), clock_speed=1.0)
    status = StatusTracker(base, report, clock)
    alerts: list[tuple[str, str]] = []
    publisher = NatsPublisher(
        config, alert=lambda k, t: alerts.append((k, t)), status=status, now_ms=clock.now_ms
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(publisher.run)
            await publisher.wait_until(lambda p: p.state == "down")
            nursery.cancel_scope.cancel()
    snapshot = status.snapshot()
    assert snapshot.nats_state == "down"
    assert snapshot.nats_backlog >= 1  # the meta message waits
    assert snapshot.last_error is not None
    assert "NATS unreachable" in snapshot.last_error
    assert [kind for kind, _ in alerts] == ["nats"]
    write_status(base, snapshot)
    shown = await trio.run_process([*CLI, "status", str(base)], capture_stdout=True, check=False)
    stdout = shown.stdout.decode()
    assert "nats" in stdout
    assert "down, " in stdout


def test_a_period_is_published_at_its_deadline_and_when_complete_not_per_late_symbol(
    tmp_path: Path,
) -> None:
    # 450 symbols completed one by one over REST after the deadline made the recorder report
    # the period 450 times: the bench's stream held 2851 period messages (6 KB headers each)
    base = tmp_path / "data"
    base.mkdir()
    (base / "config.json").write_bytes(
        orjson.dumps({**KEYS, "nats": {"servers": ["nats://127.0.0.1:4222"]}})
    )
    publisher = NatsPublisher(load_config(base))
    symbols = [f"S{i:03d}USDT" for i in range(10)]
    run_time = 1_767_225_660_000
    for late in range(10, 0, -1):  # the deadline, then each late symbol's write
        publisher.period(
            run_time_ms=run_time,
            ready=symbols[: 10 - late],
            missing=symbols[10 - late :],
            complete=False,
            lag_s=None,
            last_received=None,
        )
    publisher.period(
        run_time_ms=run_time,
        ready=symbols,
        missing=[],
        complete=True,
        lag_s=0.01,
        last_received=None,
    )
    periods = [m for m in publisher.queue if m.kind == "period"]
    assert [m.msg_id.count(".missing.") for m in periods] == [1, 0]
