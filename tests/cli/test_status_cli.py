"""`bmac-trio status DIR` run as a person types it: fresh, healthy, stale, bad directories."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from bmac_trio.clock import ScaledWallClock
from bmac_trio.ops.status import StatusReport, read_status, write_status

from .conftest import run_cli

PERIOD_END = 1_764_000_000_000  # 2025-11-24 16:00:00 UTC, a 5m boundary
INTERVAL_S = 300


def make_base(tmp_path: Path, config: dict[str, object] | None = None) -> Path:
    base = tmp_path / "usdt_perp_5m"
    base.mkdir()
    config = config or {"interval": "5m", "trade_type": "usdt_perp", "save_type": "feather"}
    (base / "config.json").write_bytes(orjson.dumps(config))
    return base


def clock_at(now_ms: int) -> str:
    """A shared clock that reads ``now_ms`` now and (practically) stands still.

    A nanosecond of exchange time per real second: however slow the machine, the subprocess
    sees ``now_ms``, so ages print exactly.
    """
    return ScaledWallClock(now_ms, 1e-9, time.time()).spec()


def report(**changes: object) -> StatusReport:
    fields: dict[str, object] = {
        "trade_type": "usdt_perp",
        "interval": "5m",
        "interval_seconds": INTERVAL_S,
        "market": "um",
        "save_type": "feather",
        "num_candles": 1500,
        "timezone": "Asia/Hong_Kong",
        "pid": os.getpid(),  # alive: this test process
        "started_at_ms": PERIOD_END - 3_600_000,
        "updated_at_ms": PERIOD_END + 300,
        "state": "live",
        "last_period_ms": PERIOD_END,
        "last_period_label": "20251125_000000",
        "last_period_lag_seconds": 0.042,
        "periods_completed": 12,
        "symbols_ready": ("BTCUSDT", "ETHUSDT"),
        "symbols_missing": ("FOOUSDT",),
        "connections_open": 2,
        "rest_weight_used": 37,
        "rest_weight_limit": 2400,
        "rest_weight_spent": 1234,
        "reconnects": 3,
        "last_error": "WsDisconnected: connection 1 went silent",
        "last_error_at_ms": PERIOD_END - 120_000,
    }
    fields.update(changes)
    return StatusReport(**fields)  # type: ignore[arg-type]


def test_fresh_directory_has_no_data(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    out = run_cli("status", str(base))
    assert out.returncode == 2, out.stderr
    assert "usdt_perp 5m (um), 1500 candles, feather" in out.stdout
    assert "NO DATA (no status file: the recorder has not run here yet)" in out.stdout

    out = run_cli("status", str(base), "--json")
    assert out.returncode == 2
    data = orjson.loads(out.stdout)
    assert (data["health"], data["exit_code"], data["status"]) == ("no_data", 2, None)
    assert data["config"]["trade_type"] == "usdt_perp"
    assert data["config"]["data_dir"] == str(base / "usdt_perp_5m")


def test_healthy_directory(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    write_status(base, report())
    out = run_cli("status", str(base), "--clock", clock_at(PERIOD_END + 30_000))
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "last period  2025-11-24 16:00:00 UTC (20251125_000000), lag 0.042 s, ended 30s" in text
    assert "symbols      2 ready, 1 missing: FOOUSDT" in text
    assert "2 connections open, REST weight 37/2400 this minute (1234 spent" in text
    assert "3 reconnects" in text
    assert "WsDisconnected: connection 1 went silent" in text
    assert f"running (pid {os.getpid()}), live" in text
    assert "health       OK" in text

    out = run_cli("status", str(base), "--json", "--clock", clock_at(PERIOD_END + 30_000))
    assert out.returncode == 0
    data = orjson.loads(out.stdout)
    assert data["health"] == "ok"
    assert data["age_seconds"] == 30
    assert data["max_age_seconds"] == 2 * INTERVAL_S + 15
    assert data["status"]["symbols_missing"] == ["FOOUSDT"]
    assert data["status"]["last_period_lag_seconds"] == 0.042
    assert data["running"] is True


def test_stale_directory(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    write_status(base, report())  # this test process plays the running recorder
    late = PERIOD_END + (2 * INTERVAL_S + 15 + 60) * 1000
    out = run_cli("status", str(base), "--clock", clock_at(late))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "STALE (the newest complete period ended 11m15s ago (limit 10m15s))" in (out.stdout)

    out = run_cli("status", str(base), "--json", "--clock", clock_at(late))
    assert out.returncode == 1
    data = orjson.loads(out.stdout)
    assert (data["health"], data["exit_code"], data["running"]) == ("stale", 1, True)

    # --max-age widens the limit: the same data is healthy for a looser monitor
    out = run_cli("status", str(base), "--max-age", "3600", "--clock", clock_at(late))
    assert out.returncode == 0


@pytest.mark.parametrize("state", ["live", "stopped", "crashed"])
def test_a_recorder_that_is_gone_is_unhealthy_however_fresh_its_data(
    tmp_path: Path, state: str
) -> None:
    """Issue 11 item 6: after SIGINT, status said "not running" with health OK and exit 0."""
    base = make_base(tmp_path)
    write_status(base, report(pid=2**22 + 12345, state=state))  # no such process
    out = run_cli("status", str(base), "--clock", clock_at(PERIOD_END + 30_000))
    assert out.returncode == 3, out.stdout + out.stderr
    assert f"not running (last pid {2**22 + 12345}, {state})" in out.stdout
    assert "health       NOT RUNNING (the recorder is not running" in out.stdout
    assert "the newest complete period ended 30s ago" in out.stdout
    data = orjson.loads(run_cli("status", str(base), "--json").stdout)
    assert (data["health"], data["exit_code"], data["running"]) == ("not_running", 3, False)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--max-age", "-5"], ["--max-age", "-5"]),
        (["--max-age", "0"], ["--max-age"]),
        (["--max-age", "nan"], ["--max-age"]),
        (["--clock", "abc"], ["--clock", "abc"]),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, args: list[str], words: list[str]) -> None:
    base = make_base(tmp_path)
    write_status(base, report())
    out = run_cli("status", str(base), *args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    for word in words:
        assert word in out.stderr


def test_recorded_shared_clock_is_used_by_default(tmp_path: Path) -> None:
    # A recorder on an accelerated shared clock (the demo) records it; status follows it.
    base = make_base(tmp_path)
    spec = clock_at(PERIOD_END + 10_000)
    write_status(base, report(clock=spec, clock_speed=1.0))
    out = run_cli("status", str(base), "--json")
    assert out.returncode == 0, out.stdout
    assert orjson.loads(out.stdout)["age_seconds"] == 10


def test_started_but_no_period_yet(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    write_status(base, report(state="history", last_period_ms=None, last_period_label=None))
    out = run_cli("status", str(base), "--clock", clock_at(PERIOD_END))
    assert out.returncode == 2
    assert "no complete period yet (recorder history)" in out.stdout
    assert "last period  none yet" in out.stdout


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"interval": "7m", "trade_type": "usdt_perp"}, "bad 'interval': '7m'"),
        ({"trade_type": "usdt_perp"}, "missing required key 'interval'"),
    ],
)
def test_bad_config(tmp_path: Path, config: dict[str, object], expected: str) -> None:
    base = make_base(tmp_path, config)
    out = run_cli("status", str(base))
    assert out.returncode == 2
    assert expected in out.stdout
    out = run_cli("status", str(base), "--json")
    data = orjson.loads(out.stdout)
    assert (data["health"], data["exit_code"]) == ("bad_config", 2)
    assert expected in data["reason"]


def test_not_a_directory(tmp_path: Path) -> None:
    out = run_cli("status", str(tmp_path / "nowhere"))
    assert out.returncode == 2
    assert "no such directory" in out.stdout


def test_status_file_is_replaced_atomically(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    write_status(base, report(periods_completed=1))
    write_status(base, report(periods_completed=2))
    assert read_status(base) == report(periods_completed=2)
    # no temp files are left behind
    assert sorted(p.name for p in base.iterdir()) == ["bmac_status.json", "config.json"]


def test_recorder_still_downloading_history(tmp_path: Path) -> None:
    # A recorder holds the lock (its pid is in .bmac.lock) but has not written a status yet.
    base = make_base(tmp_path)
    (base / ".bmac.lock").write_text(f"{os.getpid()}\n")
    out = run_cli("status", str(base))
    assert out.returncode == 2
    assert f"recorder  running (pid {os.getpid()}), starting" in out.stdout
    assert f"the recorder (pid {os.getpid()}) is starting: no complete period yet" in out.stdout
    data = orjson.loads(run_cli("status", str(base), "--json").stdout)
    assert (data["running"], data["recorder_pid"], data["exit_code"]) == (True, os.getpid(), 2)


def test_symbols_whose_stream_is_refused_are_shown(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    write_status(base, report(symbols_rest_only=("BTC-USDT",)))
    assert read_status(base).symbols_rest_only == ("BTC-USDT",)  # type: ignore[union-attr]
    out = run_cli("status", str(base), "--clock", clock_at(PERIOD_END + 30_000))
    assert "REST only    stream refused: BTC-USDT" in out.stdout, out.stdout
    out = run_cli("status", str(base), "--json", "--clock", clock_at(PERIOD_END + 30_000))
    assert orjson.loads(out.stdout)["status"]["symbols_rest_only"] == ["BTC-USDT"]
