"""The period reporter's log lines: at most one progress line a second, long lists cut visibly."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio

from bmac_trio.recorder.book import PeriodReport
from bmac_trio.recorder.period_reporter import PeriodReporter, symbol_list
from bmac_trio.recorder.stats import DispatcherStats

RUN_TIME = 1_767_225_600_000
SYMBOLS = [f"SIM{i:03d}USDT" for i in range(177)]


def _reporter(alerts: list[str]) -> PeriodReporter:
    return PeriodReporter(
        config=SimpleNamespace(timezone=ZoneInfo("UTC")),  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        stats=DispatcherStats(),
        limiter=trio.CapacityLimiter(1),
        spawn=lambda fn, *args: None,  # no manifests written here
        alert=lambda kind, text: alerts.append(text),
        metrics=None,
        status=None,
        on_change=lambda: None,
        last_updated=lambda: None,
    )


def _report(ready: int) -> PeriodReport:
    return PeriodReport(
        run_time_ms=RUN_TIME,
        complete=tuple(SYMBOLS[:ready]),
        missing=tuple(SYMBOLS[ready:]),
        deadline_passed=True,
        last_received=None,
    )


def _progress_lines(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if "symbols ready, missing" in r.getMessage()]


async def test_recovery_logs_at_most_one_progress_line_a_second(
    caplog: pytest.LogCaptureFixture, autojump_clock: Any
) -> None:
    alerts: list[str] = []
    reporter = _reporter(alerts)
    caplog.set_level(logging.INFO, logger="bmac_trio.dispatcher")
    # the deadline report, then one re-report per symbol as its late candle lands (177 in
    # well under a second, as on recovery)
    for ready in range(0, 177):
        reporter.report([_report(ready)])
        await trio.sleep(0.005)
    lines = _progress_lines(caplog)
    assert 1 <= len(lines) <= 2, lines  # 0.9 s: the deadline line and at most one more
    assert "0/177 symbols ready" in lines[0]
    assert "(+147 more)" in lines[0]
    assert len(alerts) == 1
    assert "(+147 more)" in alerts[0]
    # a second later the next change is logged again
    await trio.sleep(1.0)
    reporter.report([_report(176)])
    assert len(_progress_lines(caplog)) == len(lines) + 1


def test_symbol_list_says_how_many_were_cut() -> None:
    assert symbol_list(["A", "B"], limit=30) == "['A', 'B']"
    assert symbol_list(SYMBOLS, limit=30).endswith("… (+147 more)")
    assert symbol_list(SYMBOLS, limit=30).count("USDT") == 30
