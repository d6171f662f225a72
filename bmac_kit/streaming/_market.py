"""What the streaming calculator consumes: a market with a window and a stream of periods.

The live bus (``bmac_kit.subscribe``) provides such a market; :class:`ReplayMarket` is one
fed from frames (backtests, benchmarks, tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import polars as pl

from bmac_kit.window import MarketWindow

__all__ = ["MarketLike", "PeriodLike", "ReplayMarket", "ReplayPeriod"]


class PeriodLike(Protocol):
    """One closed period, already applied to the market's window."""

    @property
    def run_time(self) -> datetime: ...
    @property
    def candles(self) -> pl.DataFrame: ...  # ``symbol`` + candle columns, one row per ready symbol
    @property
    def ready(self) -> tuple[str, ...]: ...
    @property
    def missing(self) -> tuple[str, ...]: ...


class MarketLike(Protocol):
    """A market: its window, and its periods as they close (each applied before it is yielded)."""

    @property
    def window(self) -> MarketWindow: ...
    def periods(self) -> AsyncIterator[PeriodLike]: ...


@dataclass(frozen=True, slots=True)
class ReplayPeriod:
    """A period of a :class:`ReplayMarket` (the bus's ``Period`` fields)."""

    run_time: datetime
    candles: pl.DataFrame
    ready: tuple[str, ...]
    missing: tuple[str, ...]


class ReplayMarket:
    """A market replaying frames: each frame (``symbol`` + candle columns) is one period.

    Each period's candles are applied to :attr:`window` before the period is yielded, like the
    bus. ``run_time`` is the newest ``candle_end_time`` in the frame; ``ready`` the symbols
    holding it; ``missing`` the window's other symbols (or ``universe``'s, when given).
    """

    def __init__(
        self,
        window: MarketWindow,
        frames: Iterable[pl.DataFrame],
        *,
        universe: Iterable[str] | None = None,
    ) -> None:
        self.window = window
        self._frames = frames
        self._universe = None if universe is None else frozenset(universe)

    async def periods(self) -> AsyncIterator[ReplayPeriod]:
        """The periods, in the order of the frames."""
        for candles in self._frames:
            if candles.is_empty():
                continue
            self.window.apply(candles)
            yield self.period_of(candles)

    def period_of(self, candles: pl.DataFrame) -> ReplayPeriod:
        """The period of an applied frame."""
        end = candles.get_column("candle_end_time").max()
        assert isinstance(end, datetime)
        run_ms = round(end.timestamp() * 1000)
        ends = self.window.last_ends()
        ready = tuple(s for s in self.window.symbols() if ends[self.window.slot(s)] == run_ms)
        universe = self._universe if self._universe is not None else self.window.symbols()
        missing = tuple(sorted(set(universe) - set(ready)))
        return ReplayPeriod(end.astimezone(UTC), candles, ready, missing)
