"""BMAC's time helpers, on an injected clock and aligned to UTC like Binance.

BMAC v2 read the wall clock directly and aligned periods to Hong Kong midnight (wrong for 6h,
12h and 1d). Here every helper takes an optional :class:`~bmac_trio.clock.Clock` (default: the
module default, :class:`~bmac_trio.clock.SystemClock` unless :func:`set_default_clock` changed
it), aligns with :mod:`bmac_trio.binance.intervals`, and *presents* times in the data
directory's time zone (Asia/Hong_Kong by default), as BMAC users expect.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import anyio.lowlevel

from bmac_trio.binance.intervals import Interval, parse_interval
from bmac_trio.clock import Clock, SystemClock
from bmac_trio.store.layout import DEFAULT_TIMEZONE

__all__ = [
    "RunTime",
    "convert_interval_to_timedelta",
    "get_default_clock",
    "next_run_time",
    "now_time",
    "set_default_clock",
    "sleep_until_ms",
    "sleep_until_run_time",
    "to_ms",
]

#: A period end as callers give it: an aware datetime (naive = the default zone) or epoch ms.
RunTime = datetime | int

_default_clock: Clock = SystemClock()


def set_default_clock(clock: Clock) -> None:
    """Make ``clock`` the clock of every helper and calculator not given one explicitly.

    Lets a whole BMAC-style script run on a simulated clock (e.g. the simulator's
    ``--clock`` spec through :func:`bmac_trio.clock.parse_clock_spec`).
    """
    global _default_clock
    _default_clock = clock


def get_default_clock() -> Clock:
    """The clock used when none is passed."""
    return _default_clock


def _zone(tz: ZoneInfo | str | None) -> ZoneInfo:
    if tz is None:
        return ZoneInfo(DEFAULT_TIMEZONE)
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def _interval(interval: str | timedelta | Interval) -> Interval:
    if isinstance(interval, Interval):
        return interval
    if isinstance(interval, timedelta):
        ms = int(interval.total_seconds() * 1000)
        if ms <= 0:
            msg = f"interval must be positive, got {interval!r}"
            raise ValueError(msg)
        return Interval(name=f"{ms}ms", ms=ms)
    return parse_interval(interval)


def to_ms(run_time: RunTime, tz: ZoneInfo | str | None = None) -> int:
    """Epoch milliseconds of ``run_time``; a naive datetime is taken to be in ``tz``."""
    if isinstance(run_time, int):
        return run_time
    if run_time.tzinfo is None:
        run_time = run_time.replace(tzinfo=_zone(tz))
    return round(run_time.timestamp() * 1000)


def from_ms(t_ms: int, tz: ZoneInfo | str | None = None) -> datetime:
    """``t_ms`` as an aware datetime in ``tz`` (default Asia/Hong_Kong)."""
    return datetime.fromtimestamp(t_ms / 1000, _zone(tz))


def now_time(tz: ZoneInfo | str | None = None, *, clock: Clock | None = None) -> datetime:
    """The current time, aware, in ``tz`` (BMAC: ``datetime.now(hongkong)``)."""
    return from_ms((clock or _default_clock).now_ms(), tz)


def convert_interval_to_timedelta(interval: str) -> timedelta:
    """``'5m'`` -> ``timedelta(minutes=5)``.

    Raises:
        ValueError: unknown interval, or a month interval (no fixed length).
    """
    parsed = parse_interval(interval)
    if parsed.months:
        msg = f"interval {interval!r} has no fixed length"
        raise ValueError(msg)
    return timedelta(milliseconds=parsed.ms)


def next_run_time(
    interval: str | timedelta,
    tz: ZoneInfo | str | None = None,
    *,
    clock: Clock | None = None,
) -> datetime:
    """The next period end strictly after now, aligned to UTC like Binance, shown in ``tz``.

    BMAC's documented loop works unchanged: ``run_time = next_run_time(iv) - iv`` for the
    period that just closed, then ``run_time = next_run_time(iv)`` and
    ``await sleep_until_run_time(run_time)``.
    """
    iv = _interval(interval)
    now = (clock or _default_clock).now_ms()
    return from_ms(iv.add(iv.floor(now), 1), tz)


async def sleep_until_ms(clock: Clock, t_ms: int) -> None:
    """Sleep until ``clock`` reads ``t_ms``, with AnyIO (so under asyncio or trio).

    Only ``clock.now_ms()`` and ``clock.speed`` are used, never ``clock.sleep_until_ms`` (the
    recorder's clocks sleep with trio). A checkpoint even when ``t_ms`` has passed.
    """
    # a loop, not one sleep: a clock's reading may lag its timer by a rounding millisecond
    while (delay_ms := t_ms - clock.now_ms()) > 0:  # noqa: ASYNC110 - a deadline, not an event
        await anyio.sleep(delay_ms / 1000 / clock.speed)
    await anyio.lowlevel.checkpoint()


async def sleep_until_run_time(run_time: RunTime, *, clock: Clock | None = None) -> None:
    """Sleep until ``run_time`` on the clock (no 1 ms busy loop, unlike BMAC v2).

    Runs under asyncio (``asyncio.run``, as BMAC scripts do) and under trio.
    """
    await sleep_until_ms(clock or _default_clock, to_ms(run_time))
