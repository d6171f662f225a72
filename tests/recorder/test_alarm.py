"""The period alarm: exact boundary and deadline times under MockClock autojump."""

from __future__ import annotations

import itertools

import trio
import trio.testing

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.clock import TrioClock
from bmac_trio.recorder.alarm import iter_alarms, run_alarm
from bmac_trio.recorder.events import PeriodDeadline, PeriodStart

M = 60_000
H = 60 * M
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC, a Thursday


def test_iter_alarms_orders_deadlines_between_boundaries() -> None:
    events = list(itertools.islice(iter_alarms(T0 + 10_000, parse_interval("1m"), 15_000), 4))
    assert events == [
        (T0 + M, "start", T0 + M),
        (T0 + M + 15_000, "deadline", T0 + M),
        (T0 + 2 * M, "start", T0 + 2 * M),
        (T0 + 2 * M + 15_000, "deadline", T0 + 2 * M),
    ]


def test_iter_alarms_deadline_longer_than_a_period() -> None:
    events = list(itertools.islice(iter_alarms(T0, parse_interval("1s"), 2_500), 6))
    assert events == [
        (T0 + 1000, "start", T0 + 1000),
        (T0 + 2000, "start", T0 + 2000),
        (T0 + 3000, "start", T0 + 3000),
        (T0 + 3500, "deadline", T0 + 1000),
        (T0 + 4000, "start", T0 + 4000),
        (T0 + 4500, "deadline", T0 + 2000),
    ]


def test_iter_alarms_6h_and_1d_align_to_utc() -> None:
    six = [e for e in itertools.islice(iter_alarms(T0 + 1, parse_interval("6h"), 0), 6)]
    assert [e[0] for e in six if e[1] == "start"] == [T0 + 6 * H, T0 + 12 * H, T0 + 18 * H]
    [(when, kind, _)] = list(itertools.islice(iter_alarms(T0 + 5 * H, parse_interval("1d"), 0), 1))
    assert (when, kind) == (T0 + 24 * H, "start")
    # weekly candles open on Monday 00:00 UTC: 2026-01-05
    [(week, _, _)] = list(itertools.islice(iter_alarms(T0, parse_interval("1w"), 0), 1))
    assert week == T0 + 4 * 24 * H


async def test_run_alarm_sends_at_exact_exchange_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = TrioClock(start_ms=T0 + 42_000, speed=1.0)
    send, recv = trio.open_memory_channel[object](0)
    seen: list[tuple[object, int]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_alarm(inbox=send, interval=parse_interval("1m"), clock=clock, deadline_s=15)
        )
        async for message in recv:
            seen.append((message, clock.now_ms()))
            if len(seen) == 4:
                nursery.cancel_scope.cancel()
                break
    assert seen == [
        (PeriodStart(run_time_ms=T0 + M), T0 + M),
        (PeriodDeadline(run_time_ms=T0 + M), T0 + M + 15_000),
        (PeriodStart(run_time_ms=T0 + 2 * M), T0 + 2 * M),
        (PeriodDeadline(run_time_ms=T0 + 2 * M), T0 + 2 * M + 15_000),
    ]
