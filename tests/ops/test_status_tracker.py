"""The recorder's side of the status file: StatusTracker updates, watched sources, saves."""

from __future__ import annotations

from pathlib import Path

import trio

from bmac_trio.clock import TrioClock
from bmac_trio.ops.status import HealthCode, StatusReport, StatusTracker, assess, read_status
from bmac_trio.store.config import load_config

START_MS = 1_764_000_000_000


async def test_tracker_records_periods_errors_and_sources(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"interval": "5m", "trade_type": "coin_perp"}')
    config = load_config(tmp_path)
    clock = TrioClock(START_MS, speed=600)
    report = StatusReport.for_config(
        config, pid=1234, now_ms=clock.now_ms(), clock_speed=clock.speed, clock=None
    )
    tracker = StatusTracker(tmp_path, report, clock)
    reconnects = [0]
    tracker.watch(lambda: {"reconnects": reconnects[0], "connections_open": 2})
    assert read_status(tmp_path) is None

    tracker.update(state="live")
    tracker.period_complete(
        run_time_ms=START_MS + 300_000,
        label="20251124_160500",
        lag_seconds=0.0421234567,
        ready=["ETHUSD_PERP", "BTCUSD_PERP"],
        missing=["XRPUSD_PERP"],
    )
    tracker.error(ValueError("boom"))
    reconnects[0] = 4
    await trio.sleep(0.1)  # a tenth of a real second = one exchange minute at speed 600
    await tracker.save()

    saved = read_status(tmp_path)
    assert saved is not None
    assert (saved.trade_type, saved.interval, saved.market) == ("coin_perp", "5m", "cm")
    assert saved.interval_seconds == 300
    assert saved.state == "live"
    assert saved.last_period_ms == START_MS + 300_000
    assert saved.last_period_lag_seconds == 0.042123
    assert saved.periods_completed == 1
    assert saved.symbols_ready == ("BTCUSD_PERP", "ETHUSD_PERP")
    assert saved.symbols_missing == ("XRPUSD_PERP",)
    assert saved.last_error == "ValueError: boom"
    assert (saved.reconnects, saved.connections_open) == (4, 2)
    assert saved.updated_at_ms - saved.started_at_ms >= 60_000
    assert saved.clock_speed == 600

    assert assess(saved, now_ms=START_MS + 600_000).code == HealthCode.OK
    assert assess(saved, now_ms=START_MS + 300_000 + 616_000).code == HealthCode.STALE
    assert assess(saved, now_ms=START_MS + 10**9, max_age=10**7).code == HealthCode.OK


def test_unknown_keys_from_a_newer_recorder_are_ignored() -> None:
    report = StatusReport(
        trade_type="usdt_spot",
        interval="1h",
        interval_seconds=3600,
        pid=1,
        started_at_ms=0,
        updated_at_ms=0,
    )
    raw = report.to_json()[:-2] + b',\n  "future_field": 1\n}'
    assert StatusReport.from_json(raw) == report


async def test_logged_errors_of_any_kind_reach_the_tracker(tmp_path: Path) -> None:
    import logging

    from bmac_trio.errors import RestUnavailable, StorageError
    from bmac_trio.ops.status import StatusErrorLog

    (tmp_path / "config.json").write_text('{"interval": "5m", "trade_type": "usdt_perp"}')
    config = load_config(tmp_path)
    clock = TrioClock(START_MS, speed=1)
    tracker = StatusTracker(
        tmp_path, StatusReport.for_config(config, pid=1, now_ms=0, clock_speed=1), clock
    )
    logger = logging.getLogger("bmac_trio.test_status_errors")
    logger.propagate = False
    handler = StatusErrorLog(tracker)
    logger.addHandler(handler)
    try:
        logger.warning("%d/%d symbols ready, missing %s", 1, 2, ["X"])  # not an error
        assert tracker.report.last_error is None
        assert not tracker.unsaved_error
        logger.warning("%s: %s; retrying in %.1f s", "klines", RestUnavailable("HTTP 503"), 1.0)
        assert tracker.report.last_error == "RestUnavailable: klines: HTTP 503; retrying in 1.0 s"
        assert tracker.unsaved_error
        logger.error("write of %s failed: %s", "BTCUSDT", StorageError("disk full"))
        assert tracker.report.last_error == "StorageError: write of BTCUSDT failed: disk full"
        logger.error("manifest write failed")
        assert tracker.report.last_error == "manifest write failed"
        assert tracker.report.last_error_at_ms is not None
    finally:
        logger.removeHandler(handler)
