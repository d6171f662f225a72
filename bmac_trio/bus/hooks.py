"""What the recorder tells its bus publishers, and when (the dispatcher's hook points).

Every method is synchronous and must return at once: it is called on the recorder's event loop
at the moment a candle is accepted or a period reported, so a publisher only queues or hands
the message to a non-blocking socket. The ZeroMQ publisher (:mod:`.publisher`) and the NATS
JetStream publisher (:mod:`.nats_publisher`) both take these calls; :class:`FanOut` puts several
behind the dispatcher's one ``bus``. Other hooks are optional (``exginfo`` and ``retired`` for
NATS, ``period_started`` and ``arrived`` for ZeroMQ's early announcement): the dispatcher looks
them up with ``getattr`` and a publisher without them is not told.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from bmac_trio.binance.candles import Candle

__all__ = ["BusHooks", "FanOut"]


class BusHooks(Protocol):
    """A publisher as the dispatcher sees it."""

    def candles(
        self, symbol: str, candles: Iterable[Candle], *, source: str, received: float
    ) -> None:
        """Closed candles of ``symbol`` were accepted (before they are written); ``received``
        is ``trio.current_time()`` at their arrival."""

    def period(
        self,
        *,
        run_time_ms: int,
        ready: Sequence[str],
        missing: Sequence[str],
        complete: bool,
        lag_s: float | None,
        last_received: float | None,
    ) -> None:
        """A period was reported (complete, or at its deadline with ``missing`` symbols)."""

    def symbols(self, symbols: Iterable[str]) -> None:
        """The recorded selection after an exchangeInfo refresh."""


class FanOut:
    """Several publishers behind one hook."""

    def __init__(self, publishers: Sequence[Any]) -> None:
        self.publishers = tuple(publishers)

    @property
    def frame_source(self) -> Any:
        return None

    @frame_source.setter
    def frame_source(self, source: Any) -> None:
        for p in self.publishers:
            if hasattr(p, "frame_source"):
                p.frame_source = source

    def candles(
        self, symbol: str, candles: Iterable[Candle], *, source: str, received: float
    ) -> None:
        candles = tuple(candles)
        for p in self.publishers:
            p.candles(symbol, candles, source=source, received=received)

    def period(self, **report: Any) -> None:
        for p in self.publishers:
            p.period(**report)

    def symbols(self, symbols: Iterable[str]) -> None:
        symbols = tuple(symbols)
        for p in self.publishers:
            p.symbols(symbols)

    def __getattr__(self, name: str) -> Any:
        """An optional hook (``exginfo``, ``retired``, ``period_started``, ``arrived``, ...):
        forwarded to the publishers that have it; absent (AttributeError) when none has it,
        so ``getattr(bus, name, None)`` in the dispatcher stays None."""
        if name.startswith("_"):
            raise AttributeError(name)
        targets = [getattr(p, name) for p in self.publishers if hasattr(p, name)]
        if not targets:
            raise AttributeError(name)

        def forward(*args: Any, **kwargs: Any) -> None:
            for target in targets:
                target(*args, **kwargs)

        return forward
