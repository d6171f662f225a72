"""Faults on demand (``sim.faults``) and scripted market events (``sim.market_events``).

Each applied fault is counted in ``sim.stats.faults`` by kind. Delays given to REST faults
are real seconds (they model the network); silence is exchange time (it models the market).
"""

from __future__ import annotations

from dataclasses import dataclass

from bmac_trio.clock import Clock
from bmac_trio.sim._exchange import Exchange
from bmac_trio.sim._hub import Hub
from bmac_trio.sim._stats import SimStats

__all__ = ["Faults", "MarketEvents"]


@dataclass(slots=True)
class _RestFaults:
    error_status: int = 500
    errors: int = 0
    slow_delay_s: float = 0.0
    slow: int = 0
    rate_limited: int = 0
    retry_after_s: int = 1


class Faults:
    """Break things while the simulator runs."""

    def __init__(self, hub: Hub, clock: Clock, stats: SimStats) -> None:
        self._hub = hub
        self._clock = clock
        self._stats = stats
        self.rest = _RestFaults()
        #: Exchange ms until which the exchange is unreachable (see :meth:`outage`).
        self.down_until = 0

    def outage(self, exchange_seconds: float) -> None:
        """The exchange is down for ``exchange_seconds`` from now: every WebSocket connection
        is dropped, new ones are refused and every REST request is answered 503 (what
        Binance's front end answers while the engine behind it is down). The market goes on:
        candles closing meanwhile are served once it is back."""
        self.down_until = max(self.down_until, self._clock.now_ms() + int(exchange_seconds * 1000))
        self._stats.faults["outage"] += 1
        self._stats.faults["drop"] += self._hub.drop(None)

    def is_down(self) -> bool:
        """Inside an :meth:`outage`."""
        return self._clock.now_ms() < self.down_until

    def drop_connections(self, count: int | None = None) -> int:
        """Close ``count`` WebSocket connections (None: all); returns how many."""
        n = self._hub.drop(count)
        self._stats.faults["drop"] += n
        return n

    def silence(self, exchange_seconds: float) -> None:
        """Stay connected but send no frame for ``exchange_seconds`` from now."""
        until = self._clock.now_ms() + int(exchange_seconds * 1000)
        self._hub.silent_until = max(self._hub.silent_until, until)
        self._hub.wake()
        self._stats.faults["silence"] += 1

    def send_malformed(self, n: int = 1, *, closing_only: bool = True) -> None:
        """The next ``n`` kline frames (closing ones by default) are cut in half."""
        self._hub.frame_faults.malformed += n
        self._hub.frame_faults.closing_only = closing_only

    def send_duplicates(self, n: int = 1, *, closing_only: bool = True) -> None:
        """The next ``n`` kline frames are sent twice."""
        self._hub.frame_faults.duplicates += n
        self._hub.frame_faults.closing_only = closing_only

    def send_out_of_order(self, n: int = 1, *, closing_only: bool = True) -> None:
        """The next ``n`` kline frames are held back and sent after the connection's next."""
        self._hub.frame_faults.out_of_order += n
        self._hub.frame_faults.closing_only = closing_only

    def rest_errors(self, status: int = 500, count: int = 1) -> None:
        """The next ``count`` REST requests fail with ``status`` (500 or 503)."""
        self.rest.error_status, self.rest.errors = status, self.rest.errors + count

    def slow_rest(self, delay_s: float, count: int = 1) -> None:
        """The next ``count`` REST requests are answered ``delay_s`` real seconds late."""
        self.rest.slow_delay_s, self.rest.slow = delay_s, self.rest.slow + count

    def rate_limit(self, count: int = 1, retry_after_s: int = 1) -> None:
        """The next ``count`` REST requests get 429 (a request inside Retry-After: 418)."""
        self.rest.rate_limited += count
        self.rest.retry_after_s = retry_after_s


class MarketEvents:
    """Script the market's life while it runs (times are exchange epoch ms).

    What has been published cannot be unpublished: a delisting, expiry or maintenance window
    that would start in the past starts now instead (so the ground truth keeps every candle
    already served). Listing a new symbol in the past only adds history; moving an existing
    symbol's listing rewrites its history, so do that before clients look at it.
    """

    def __init__(self, ex: Exchange, hub: Hub, clock: Clock) -> None:
        self._ex = ex
        self._hub = hub
        self._clock = clock

    def list_symbol(self, symbol: str, at_ms: int) -> None:
        """List ``symbol`` at ``at_ms`` (a new symbol, or an existing one moved)."""
        self._ex.list_symbol(symbol, at_ms)
        self._hub.wake()

    def delist_symbol(self, symbol: str, at_ms: int) -> None:
        """Delist ``symbol`` at ``at_ms`` (not earlier than now)."""
        self._ex.delist_symbol(symbol, max(at_ms, self._clock.now_ms()))

    def set_delivery(self, symbol: str, at_ms: int) -> None:
        """Move a delivery contract's expiry to ``at_ms`` (not earlier than now)."""
        self._ex.set_delivery(symbol, max(at_ms, self._clock.now_ms()))

    def maintenance(self, start_ms: int, end_ms: int) -> None:
        """No candles, silent streams during ``[start_ms, end_ms)``, from now at the earliest."""
        start = max(start_ms, self._clock.now_ms())
        if end_ms > start:
            self._ex.add_maintenance(start, end_ms)
            self._hub.wake()
