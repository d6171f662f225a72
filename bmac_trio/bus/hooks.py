"""What the recorder tells a bus publisher, and when (the dispatcher's hook points).

Every method is synchronous and must return at once: it is called on the recorder's event loop
at the moment a candle is accepted or a period reported, so a publisher only queues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bmac_trio.binance.candles import Candle

__all__ = ["BusHooks", "FanOut"]


class BusHooks(Protocol):
    """A publisher as the dispatcher sees it."""

    def candles(self, symbol: str, candles: Sequence[Candle]) -> None:
        """Closed candles of ``symbol`` were accepted (before or while they are written)."""

    def period(
        self,
        run_time_ms: int,
        *,
        complete: Sequence[str],
        missing: Sequence[str],
        final: bool,
        lag_ms: float | None,
    ) -> None:
        """A period was reported (complete, or at its deadline with ``missing`` symbols)."""

    def symbols(self, run_time_ms: int, symbols: frozenset[str], exginfo: Any) -> None:
        """A fresh selection (exchangeInfo); ``exginfo`` is the polars frame or None."""

    def retired(self, symbol: str) -> None:
        """``symbol``'s file was moved into ``_delisted/``."""


class FanOut:
    """Several publishers behind one hook (e.g. ZeroMQ and NATS)."""

    def __init__(self, publishers: Sequence[BusHooks]) -> None:
        self.publishers = tuple(publishers)

    def candles(self, symbol: str, candles: Sequence[Candle]) -> None:
        for p in self.publishers:
            p.candles(symbol, candles)

    def period(
        self,
        run_time_ms: int,
        *,
        complete: Sequence[str],
        missing: Sequence[str],
        final: bool,
        lag_ms: float | None,
    ) -> None:
        for p in self.publishers:
            p.period(run_time_ms, complete=complete, missing=missing, final=final, lag_ms=lag_ms)

    def symbols(self, run_time_ms: int, symbols: frozenset[str], exginfo: Any) -> None:
        for p in self.publishers:
            p.symbols(run_time_ms, symbols, exginfo)

    def retired(self, symbol: str) -> None:
        for p in self.publishers:
            p.retired(symbol)
