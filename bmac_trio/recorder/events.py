"""The closed set of messages that travel on the recorder's channels.

Three channels connect the tasks (see ``_app``)::

    listeners ─┐                      ┌─> Fetch ──────────> REST fetchers
    fetchers  ─┼─> dispatcher inbox ──┤
    alarm     ─┤   (Inbox messages)   └─> SetSymbols ─────> WS listeners
    refresher ─┘

Every message is a frozen, slotted, keyword-only dataclass, so the dispatcher is one ``match``
statement and a message cannot change after it was sent. Times named ``*_ms`` are exchange
time (epoch milliseconds from the injected clock); ``received`` is ``trio.current_time()`` at
arrival (a monotonic real clock, used only to measure period lag).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from bmac_trio.binance.protocol import Candle

__all__ = [
    "Fetch",
    "FetchDone",
    "FetchFailed",
    "FetchReason",
    "FundingRates",
    "Inbox",
    "Klines",
    "PeriodDeadline",
    "PeriodStart",
    "SetSymbols",
    "Source",
    "StreamsRefused",
    "SymbolsChanged",
]

Source = Literal["ws", "rest"]
FetchReason = Literal["history", "gap", "deadline", "listing"]


# --- commands to the REST fetchers -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetch:
    """Fetch the closed candles of ``symbol`` opening from ``first_open_ms`` to ``last_open_ms``.

    Both ends are included. The book never has two in-flight fetches covering one candle.
    """

    symbol: str
    first_open_ms: int
    last_open_ms: int
    reason: FetchReason


# --- commands to the WebSocket listeners -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSymbols:
    """The complete set of symbols the listeners must stream from now on."""

    symbols: frozenset[str]


# --- the dispatcher's inbox --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Klines:
    """Closed candles of one symbol, from a WebSocket push or a REST page."""

    symbol: str
    candles: tuple[Candle, ...]
    source: Source
    received: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchDone:
    """A :class:`Fetch` finished; REST has no closed candle up to ``through_open_ms`` we lack.

    ``through_open_ms`` is the newest open time the answer covers authoritatively (the fetch's
    last open time, or the last closed one when the range reached into the future), or None
    when nothing in the range had closed yet.
    """

    fetch: Fetch
    through_open_ms: int | None
    #: The request weight of its pages (retries not counted).
    weight: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchFailed:
    """A :class:`Fetch` was given up (symbol not tradable, or retries exhausted)."""

    fetch: Fetch
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodStart:
    """The period that ends at ``run_time_ms`` (a UTC-aligned boundary) has just ended."""

    run_time_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodDeadline:
    """``candle_close_timeout_sec`` after ``run_time_ms``: late symbols go to REST."""

    run_time_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolsChanged:
    """A fresh exchangeInfo selection: the symbols to record from now on.

    ``exginfo`` is the polars frame for ``exginfo.pqt`` (kept opaque here).
    """

    run_time_ms: int
    symbols: frozenset[str]
    exginfo: Any = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingRates:
    """A premiumIndex snapshot for the period ending at ``run_time_ms`` (polars frame)."""

    run_time_ms: int
    frame: Any = field(compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamsRefused:
    """The exchange refuses to stream these symbols (listeners → dispatcher): each period's
    candle of theirs is fetched over REST at the boundary instead."""

    symbols: frozenset[str]


Inbox = (
    Klines
    | FetchDone
    | FetchFailed
    | PeriodStart
    | PeriodDeadline
    | SymbolsChanged
    | FundingRates
    | StreamsRefused
)
