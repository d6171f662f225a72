"""Injected time: the only place bmac-trio reads a wall clock.

Exchange time (candle boundaries, deadlines, the 24 h cut) is epoch milliseconds from a
:class:`Clock`. The recorder, the simulator and the tests all take one, so they can share it and
run at any speed:

* :class:`SystemClock` — real UTC time, for production.
* :class:`TrioClock` — ``start_ms`` plus trio's clock times ``speed``. Under
  ``trio.testing.MockClock(autojump_threshold=0)`` a day of candles passes in milliseconds; with
  the real trio clock and ``speed=60`` an hour of 1m candles takes a minute, over real sockets.
* :class:`ScaledWallClock` — like :class:`TrioClock` but anchored to the Unix time at which
  exchange time was ``start_ms``, so separate processes (the simulator, a recorder that is killed
  and restarted) agree on the time without talking to each other.

Durations that are about the network (HTTP timeouts, backoff) stay in real seconds; durations
that are about the market (a candle's deadline, a connection's lifetime) are exchange time and
go through :meth:`Clock.to_real`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import trio

__all__ = [
    "Clock",
    "ScaledWallClock",
    "SystemClock",
    "TrioClock",
    "parse_clock_spec",
    "unix_us",
]


@runtime_checkable
class Clock(Protocol):
    """Exchange time, and sleeping until a moment of it."""

    #: How many exchange seconds pass per real second.
    speed: float

    def now_ms(self) -> int:
        """The current exchange time in epoch milliseconds."""
        ...

    async def sleep_until_ms(self, t_ms: int) -> None:
        """Sleep until exchange time ``t_ms`` (a checkpoint even when it has passed)."""
        ...

    def to_real(self, exchange_seconds: float) -> float:
        """Real seconds that ``exchange_seconds`` of exchange time take."""
        ...


class _ScaledMixin:
    speed: float

    def now_ms(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_real(self, exchange_seconds: float) -> float:
        return exchange_seconds / self.speed

    async def sleep_until_ms(self, t_ms: int) -> None:
        delay_ms = t_ms - self.now_ms()
        await trio.sleep(max(0.0, delay_ms / 1000 / self.speed))

    async def sleep_ms(self, duration_ms: float) -> None:
        """Sleep for ``duration_ms`` of exchange time."""
        await trio.sleep(max(0.0, duration_ms / 1000 / self.speed))


@dataclass(slots=True)
class SystemClock(_ScaledMixin):
    """Real UTC time."""

    speed: float = 1.0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass(slots=True)
class TrioClock(_ScaledMixin):
    """Exchange time driven by trio's clock; create it inside ``trio.run``."""

    start_ms: int
    speed: float = 1.0
    _origin: float = field(default_factory=trio.current_time)

    def now_ms(self) -> int:
        return self.start_ms + int((trio.current_time() - self._origin) * 1000 * self.speed)

    async def sleep_until_ms(self, t_ms: int) -> None:
        await trio.sleep_until(self._origin + (t_ms - self.start_ms) / 1000 / self.speed)


@dataclass(slots=True)
class ScaledWallClock(_ScaledMixin):
    """Exchange time that was ``start_ms`` at Unix time ``anchor_unix`` and runs ``speed``×."""

    start_ms: int
    speed: float
    anchor_unix: float

    def now_ms(self) -> int:
        return self.start_ms + int((time.time() - self.anchor_unix) * 1000 * self.speed)

    def spec(self) -> str:
        """The ``--clock`` string that makes another process share this clock."""
        return f"{self.start_ms}:{self.speed}:{self.anchor_unix!r}"


def parse_clock_spec(spec: str | None) -> Clock:
    """Build a clock from ``START_MS:SPEED:ANCHOR_UNIX`` (see :meth:`ScaledWallClock.spec`).

    ``None`` or an empty string is the real clock.

    Raises:
        ValueError: the spec is malformed.
    """
    if not spec:
        return SystemClock()
    try:
        start, speed, anchor = spec.split(":")
        clock = ScaledWallClock(int(start), float(speed), float(anchor))
    except ValueError as exc:
        msg = f"bad clock spec {spec!r}; expected START_MS:SPEED:ANCHOR_UNIX"
        raise ValueError(msg) from exc
    if clock.speed <= 0:
        msg = f"bad clock spec {spec!r}: speed must be positive"
        raise ValueError(msg)
    return clock


def unix_us() -> int:
    """Real Unix time in microseconds: the live bus's send and receive stamps, for latency.

    Not exchange time (which a test may run at any speed): a stamp another process compares
    with its own real clock.
    """
    return time.time_ns() // 1000
