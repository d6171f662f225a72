"""Candle buckets in another time zone: spot's ``timeZone`` parameter and ``@+08:00`` streams.

Binance moves only the bucket boundaries; ``startTime``/``endTime`` and every returned time stay
UTC epochs. A :class:`ZonedInterval` is an :class:`Interval` whose boundaries are shifted by a
fixed offset (a 1d candle at UTC+8 opens at 16:00 UTC), so the market model, the exchange and
the publisher work on it unchanged. Each candle is still a pure function of its open time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bmac_trio.binance.intervals import HOUR_MS, MINUTE_MS, Interval, parse_interval

__all__ = ["ZonedInterval", "parse_time_zone", "zoned"]

#: ``-1:00``, ``05:45``, ``+08:00``, ``8``: hours with optional two-digit minutes.
_ZONE = re.compile(r"^([+-]?)([0-9]{1,2})(?::([0-9]{2}))?$")
_MIN_OFFSET_MS = -12 * HOUR_MS
_MAX_OFFSET_MS = 14 * HOUR_MS


@dataclass(frozen=True, slots=True)
class ZonedInterval(Interval):
    """An interval whose candles open at local boundaries ``offset_ms`` east of UTC."""

    offset_ms: int = 0

    def floor(self, t_ms: int) -> int:
        """Open time (UTC epoch) of the local candle that contains ``t_ms``."""
        return Interval.floor(self, t_ms + self.offset_ms) - self.offset_ms

    def add(self, open_ms: int, n: int = 1) -> int:
        """Open time ``n`` local candles after ``open_ms``."""
        return Interval.add(self, open_ms + self.offset_ms, n) - self.offset_ms

    def count(self, first_open_ms: int, last_open_ms: int) -> int:
        """How many local candles from ``first_open_ms`` to ``last_open_ms``, both included."""
        off = self.offset_ms
        return Interval.count(self, first_open_ms + off, last_open_ms + off)


def zoned(name: str, offset_ms: int) -> Interval:
    """The interval ``name`` bucketed ``offset_ms`` east of UTC (a plain one for UTC)."""
    iv = parse_interval(name)
    if offset_ms == 0:
        return iv
    return ZonedInterval(name=iv.name, ms=iv.ms, months=iv.months, offset_ms=offset_ms)


def parse_time_zone(text: str) -> int | None:
    """Offset in ms of a ``timeZone`` value (-12:00 to +14:00), or None if malformed."""
    m = _ZONE.match(text)
    if m is None:
        return None
    hours, minutes = int(m.group(2)), int(m.group(3) or 0)
    if minutes >= 60:
        return None
    offset = hours * HOUR_MS + minutes * MINUTE_MS
    if m.group(1) == "-":
        offset = -offset
    if not _MIN_OFFSET_MS <= offset <= _MAX_OFFSET_MS:
        return None
    return offset
