"""Disk failures against the real dispatcher: no space, no permission.

The storage's atomic write is made to fail where a full or read-only disk fails it (the temp
file's write raises ``OSError``) for a while. What must hold: the failure is logged naming the
file and the cause and alerted; the previous file is intact; the candles stay in memory; and
when the disk is back the pending write lands by itself (no new candle needed).
"""

from __future__ import annotations

import errno
import logging
import re
from pathlib import Path

import pytest
import trio
import trio.testing

from bmac_trio.recorder.events import Fetch, FetchDone, PeriodStart
from bmac_trio.store import atomic as _atomic

from .test_dispatcher_properties import (
    T0,
    Harness,
    M,
    dispatching,
    opens_of,
    rest_body,
    values_ok,
    ws_frame,
)

SYMBOL = "AAAUSDT"


class Disk:
    """Makes every atomic write fail with ``errno`` while ``broken``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
        self.broken = False
        self.failures = 0
        real = _atomic._atomic

        def atomic(path: Path, write: object, durable: bool, *args: object) -> None:
            def failing(tmp: Path, fd: int) -> None:
                if self.broken:
                    self.failures += 1
                    raise OSError(code, errno.errorcode[code] + ": " + _MESSAGES[code])
                write(tmp, fd)  # type: ignore[operator]

            real(path, failing, durable, *args)

        monkeypatch.setattr(_atomic, "_atomic", atomic)


_MESSAGES = {errno.ENOSPC: "No space left on device", errno.EACCES: "Permission denied"}


class Alerts:
    """Stands in for ``alerter.notify``: records alerts, ``disk`` wakes a waiter."""

    def __init__(self, h: object) -> None:
        self.sent: list[tuple[str, str]] = []
        self.disk = trio.Event()
        h.dispatcher.alert = self  # type: ignore[attr-defined]

    def __call__(self, kind: str, text: str) -> None:
        self.sent.append((kind, text))
        if kind == "disk":
            self.disk.set()


async def _history(h: object, opens: list[int]) -> None:
    [fetch] = [f for f in h.drain_fetches() if f.symbol == SYMBOL]  # type: ignore[attr-defined]
    assert isinstance(fetch, Fetch)
    assert await h.feed_rest(SYMBOL, rest_body(SYMBOL, opens))  # type: ignore[attr-defined]
    await h.settle()  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
async def test_failed_write_is_reported_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    disk = Disk(monkeypatch, code)
    history = [T0 + i * M for i in range(-40, 10)]
    with trio.fail_after(20):
        async with dispatching(tmp_path / "data") as h:
            alerts = Alerts(h)
            await h.symbols({SYMBOL})
            await _history(h, history)
            path = h.dispatcher.store.path(SYMBOL)
            before = path.read_bytes()
            disk.broken = True
            caplog.clear()
            h.clock.now = T0 + 11 * M + 1_000
            assert await h.feed_ws(ws_frame(SYMBOL, T0 + 10 * M))
            await alerts.disk.wait()  # the write failed and was reported
            # nothing crashed, the candle is held in memory, the old file is untouched
            assert opens_of(h.dispatcher.frames[SYMBOL])[-1] == T0 + 10 * M
            assert path.read_bytes() == before
            assert opens_of(h.read(SYMBOL)) == history
            # the log names the file and the cause
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert any(str(path) in e and _MESSAGES[code] in e for e in errors), errors
            assert h.dispatcher.stats.write_errors >= 1
            assert any(SYMBOL in text and _MESSAGES[code] in text for _, text in alerts.sent)
            disk.broken = False
            await h.settle()
            assert opens_of(h.read(SYMBOL))[-1] == T0 + 10 * M


async def _break_the_disk_under_a_write(h: Harness, disk: Disk, alerts: Alerts) -> None:
    """Break the disk, then deliver the candle opening at T0+10M: its write fails, alerted."""
    disk.broken = True
    h.clock.now = T0 + 11 * M + 1_000
    assert await h.feed_ws(ws_frame(SYMBOL, T0 + 10 * M))
    await alerts.disk.wait()


async def test_pending_write_lands_when_the_disk_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk(monkeypatch, errno.ENOSPC)
    history = [T0 + i * M for i in range(-40, 10)]
    with trio.fail_after(30):
        async with dispatching(tmp_path / "data") as h:
            alerts = Alerts(h)
            await h.symbols({SYMBOL})
            await _history(h, history)
            await _break_the_disk_under_a_write(h, disk, alerts)
            assert any(SYMBOL in text for _, text in alerts.sent), alerts.sent
            disk.broken = False
            await h.settle()  # the writer retries on its own (a backoff), no new candle needed
            frame = h.read(SYMBOL)
            assert opens_of(frame) == [*history[1:], T0 + 10 * M]
            assert frame is not None
            assert values_ok(SYMBOL, frame)
            assert h.dispatcher.store.ready_run_times(SYMBOL) == [T0 + 11 * M]


async def test_candles_arriving_while_the_disk_is_full_all_land(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # candles keep arriving while writes fail: once the disk is back, all of them are on disk
    disk = Disk(monkeypatch, errno.ENOSPC)
    history = [T0 + i * M for i in range(-40, 10)]
    with trio.fail_after(20):
        async with dispatching(tmp_path / "data") as h:
            alerts = Alerts(h)
            await h.symbols({SYMBOL})
            await _history(h, history)
            await _break_the_disk_under_a_write(h, disk, alerts)
            h.clock.now = T0 + 12 * M + 1_000
            assert await h.feed_ws(ws_frame(SYMBOL, T0 + 11 * M))
            await trio.testing.wait_all_tasks_blocked()
            assert opens_of(h.read(SYMBOL)) == history
            disk.broken = False
            await h.settle()
            frame = h.read(SYMBOL)
            assert opens_of(frame) == [*history[2:], T0 + 10 * M, T0 + 11 * M]
            assert frame is not None
            assert values_ok(SYMBOL, frame)


# --- a full disk under many symbols: a summary per period, no false claims, a quick stop -------

MANY = [f"S{i:02d}USDT" for i in range(20)]


class FailureCount:
    """Counts failed write attempts as the dispatcher hears of them; wakes at ``target``."""

    def __init__(self, h: Harness, target: int) -> None:
        self.n = 0
        self.target = target
        self.reached = trio.Event()
        writer = h.dispatcher.writer
        inner = writer._on_failed

        def counted(*args: object) -> None:
            inner(*args)  # type: ignore[arg-type]
            self.n += 1
            if self.n >= self.target:
                self.reached.set()

        writer._on_failed = counted


async def _histories(h: Harness, opens: list[int], *, done: bool) -> None:
    """Answer every history fetch (and report it done, as a fetcher would)."""
    for fetch in h.drain_fetches():
        assert await h.feed_rest(fetch.symbol, rest_body(fetch.symbol, opens))
        if done:
            await h.inbox.send(FetchDone(fetch=fetch, through_open_ms=opens[-1]))


async def test_a_full_disk_logs_one_line_per_period_not_one_per_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    disk = Disk(monkeypatch, errno.ENOSPC)
    history = [T0 + i * M for i in range(-40, 10)]
    with trio.fail_after(20):
        async with dispatching(tmp_path / "data") as h:
            alerts = Alerts(h)
            await h.symbols(set(MANY))
            await _histories(h, history, done=False)
            await h.settle()
            disk.broken = True
            caplog.clear()
            failed = FailureCount(h, len(MANY))
            h.clock.now = T0 + 11 * M + 1_000
            for symbol in MANY:
                assert await h.feed_ws(ws_frame(symbol, T0 + 10 * M))
            await failed.reached.wait()
            await h.inbox.send(PeriodStart(run_time_ms=T0 + 11 * M))
            await trio.testing.wait_all_tasks_blocked()
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            # the first failure, named, then one summary at the period boundary
            assert len(errors) == 2, errors
            assert _MESSAGES[errno.ENOSPC] in errors[0]
            summed = re.search(r"(\d+) writes failed", errors[1])
            assert summed is not None, errors[1]
            assert int(summed[1]) >= len(MANY)
            assert _MESSAGES[errno.ENOSPC] in errors[1]
            assert [kind for kind, _ in alerts.sent].count("disk") == 1
            disk.broken = False
            await h.settle()
            assert all(opens_of(h.read(s))[-1] == T0 + 10 * M for s in MANY)
            messages = [r.getMessage() for r in caplog.records]
            recovered = [m for m in messages if "writes succeed" in m]
            assert len(recovered) == 1, recovered


async def test_stop_on_a_full_disk_is_quick_and_claims_no_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # SIGTERM while the history cannot be written: the log must not say it is ready, and the
    # stop must not wait for a disk that keeps refusing (it took 11 s)
    disk = Disk(monkeypatch, errno.ENOSPC)
    disk.broken = True
    history = [T0 + i * M for i in range(-40, 10)]
    caplog.set_level(logging.INFO)
    with trio.fail_after(20):
        async with dispatching(tmp_path / "data") as h:
            failed = FailureCount(h, len(MANY))
            await h.symbols(set(MANY))
            await _histories(h, history, done=True)
            await failed.reached.wait()
            await trio.testing.wait_all_tasks_blocked()
            stopping = trio.current_time()
        stopped = trio.current_time() - stopping
    assert stopped < 2.0
    assert h.dispatcher.stats.history_finished is None
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "History initialized" in m] == []
    assert not any(f"{len(MANY)}/{len(MANY)} symbols ready" in m for m in messages)
