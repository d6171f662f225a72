"""Binance kline intervals and how their candles align to UTC.

Pure arithmetic on epoch milliseconds. Binance aligns every fixed interval up to ``1d`` to
multiples of its length since the Unix epoch (so 6h candles open at 00, 06, 12, 18 UTC), weeks
to Monday 00:00 UTC and months to the first of the month; ``3d`` is taken as epoch-aligned.
BMAC v2 aligned to Hong Kong midnight and got 6h/12h/1d wrong; this module is the fix.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["ALL_INTERVALS", "Interval", "parse_interval"]

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
#: 1970-01-05 00:00 UTC, the first Monday after the epoch: where weekly candles are anchored.
_WEEK_ANCHOR_MS = 4 * DAY_MS

_UNIT_MS = {"s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}

#: Every interval Binance serves, in ascending length; which market serves which is in _markets.
ALL_INTERVALS: tuple[str, ...] = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
    "1M",
)  # fmt: skip

_PATTERN = re.compile(r"^(\d+)([smhdwM])$")


@dataclass(frozen=True, slots=True)
class Interval:
    """A kline interval: ``name`` as Binance spells it, ``ms`` its length (0 for months)."""

    name: str
    ms: int
    months: int = 0

    @property
    def seconds(self) -> float:
        """Length in seconds; a month counts as 30 days (only used for rough budgeting)."""
        return (self.ms or 30 * DAY_MS * self.months) / 1000

    def floor(self, t_ms: int) -> int:
        """Open time of the candle that contains ``t_ms``."""
        if self.months:
            dt = datetime.fromtimestamp(t_ms // 1000, UTC)
            index = (dt.year * 12 + dt.month - 1) // self.months * self.months
            return _month_start_ms(index)
        anchor = _WEEK_ANCHOR_MS if self.ms == WEEK_MS else 0
        return (t_ms - anchor) // self.ms * self.ms + anchor

    def add(self, open_ms: int, n: int = 1) -> int:
        """Open time ``n`` candles after (or before, for negative ``n``) ``open_ms``."""
        if self.months:
            dt = datetime.fromtimestamp(open_ms // 1000, UTC)
            return _month_start_ms(dt.year * 12 + dt.month - 1 + n * self.months)
        return open_ms + n * self.ms

    def end(self, open_ms: int) -> int:
        """``candle_end_time`` as BMAC names it: the next candle's open time."""
        return self.add(open_ms, 1)

    def close_time(self, open_ms: int) -> int:
        """Binance's close time ``T``: the next open time minus one millisecond."""
        return self.add(open_ms, 1) - 1

    def count(self, first_open_ms: int, last_open_ms: int) -> int:
        """How many candles from ``first_open_ms`` to ``last_open_ms``, both included."""
        if last_open_ms < first_open_ms:
            return 0
        if self.months:
            a = datetime.fromtimestamp(first_open_ms // 1000, UTC)
            b = datetime.fromtimestamp(last_open_ms // 1000, UTC)
            return ((b.year - a.year) * 12 + b.month - a.month) // self.months + 1
        return (last_open_ms - first_open_ms) // self.ms + 1

    def last_closed_open(self, now_ms: int) -> int:
        """Open time of the newest candle that has closed at ``now_ms``."""
        return self.add(self.floor(now_ms), -1)

    def is_aligned(self, t_ms: int) -> bool:
        """Whether ``t_ms`` is a candle open time (a period boundary)."""
        return self.floor(t_ms) == t_ms

    def __str__(self) -> str:
        return self.name


def _month_start_ms(month_index: int) -> int:
    year, month0 = divmod(month_index, 12)
    return calendar.timegm((year, month0 + 1, 1, 0, 0, 0)) * 1000


def parse_interval(name: str) -> Interval:
    """Parse a Binance interval name (case-sensitive: ``1m`` is a minute, ``1M`` a month).

    Raises:
        ValueError: the name is not one of :data:`ALL_INTERVALS`.
    """
    match = _PATTERN.match(name) if isinstance(name, str) else None
    if match is None or name not in ALL_INTERVALS:
        msg = f"unknown interval {name!r}; Binance intervals are {', '.join(ALL_INTERVALS)}"
        raise ValueError(msg)
    count, unit = int(match.group(1)), match.group(2)
    if unit == "M":
        return Interval(name=name, ms=0, months=count)
    return Interval(name=name, ms=count * _UNIT_MS[unit])
