"""``bmac_kit.subscribe``: the whole market in memory, filled from disk, advanced by the live bus.

::

    async with bmac_kit.subscribe("~/bmac_data") as market:      # or "tcp://host:6010"
        market.on_candle(lambda event: ..., symbol="BTCUSDT")    # each closed candle, at once
        async for period in market.periods():                    # each period, whole market
            period.candles, period.missing, market.window.frame("BTCUSDT")

Works under trio and asyncio (AnyIO). Nothing is lost: the window is filled after the first
message is seen (so nothing published before is missed), and every gap in the publisher's
sequence numbers, a new publisher epoch (a restarted recorder) or a late start is healed: the
window is rebuilt from the files (a data directory on this host) or from the publisher's request
socket (an endpoint), and the live candles of the last periods and those received meanwhile
are applied on top (the recorder publishes a candle before its write lands, so the truth may
lack the newest); the heal is repeated once at the next period. Live candles are applied to
the window lazily (on the next access or period), so a burst of a whole market's candles costs
microseconds each.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import polars as pl
import zmq

from bmac_kit.window import MarketWindow
from bmac_trio.binance.intervals import Interval, parse_interval
from bmac_trio.bus.endpoints import is_endpoint, request_endpoint
from bmac_trio.bus.messages import (
    CandleEvent,
    CandlesReply,
    CandlesRequest,
    ErrorReply,
    Header,
    Heartbeat,
    PeriodEvent,
    SymbolsEvent,
    candle_events_to_frame,
    decode,
    decode_body,
    encode_request,
)
from bmac_trio.bus.zmq_async import recv_multipart
from bmac_trio.errors import BmacError, BusProtocolError, ConfigError
from bmac_trio.store.config import load_config

__all__ = ["Market", "Period", "SubscriberStats", "subscribe"]

LOGGER = logging.getLogger("bmac_kit.subscribe")

#: Real seconds to wait for the first message before filling from disk anyway (heartbeats
#: come every second; a stopped recorder sends nothing, and the files are still the truth).
FIRST_MESSAGE_WAIT_S = 1.5
#: Real seconds a request to the publisher's request socket may take.
REQUEST_TIMEOUT_S = 30.0
#: Messages queued in this process before libzmq drops (counted by the publisher).
DEFAULT_RCVHWM = 100_000
#: Real seconds before a failed heal is tried again.
HEAL_RETRY_S = 0.5
#: Periods kept for a consumer that does not keep up (the oldest are dropped).
MAX_QUEUED_PERIODS = 1000
#: Periods of live candles replayed over every heal's truth, besides the current one: the
#: recorder publishes a candle before its write lands, so the truth may lack the newest.
REPLAYED_PERIODS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """One period of the whole market.

    ``candles`` holds each ready symbol's candle of the period (``symbol`` + the candle
    files' columns); ``missing`` the symbols the recorder had not got at the deadline.
    ``healed`` periods were not received (lost on the wire) and are rebuilt from the window.
    """

    run_time: datetime
    run_time_ms: int
    candles: pl.DataFrame
    ready: tuple[str, ...]
    missing: tuple[str, ...]
    complete: bool
    lag_ms: float | None = None
    healed: bool = False
    #: When the recorder received the period's last closing candle (Unix µs), for latency.
    last_received_us: int | None = None


@dataclass(slots=True)
class SubscriberStats:
    """What the subscriber saw."""

    messages: int = 0
    candles: int = 0
    #: Gaps in the sequence numbers, and how many messages they lost.
    gaps: int = 0
    lost: int = 0
    epochs: int = 0
    heals: int = 0
    bad: int = 0
    last_header: Header | None = None


@dataclass(slots=True)
class _Source:
    endpoint: str
    base_dir: Path | None


def _resolve(source: str | os.PathLike[str]) -> _Source:
    text = os.fspath(source)
    if is_endpoint(text):
        return _Source(text, None)
    base = Path(text).expanduser()
    config = load_config(base)
    endpoints = config.publish_endpoints
    if not endpoints:
        raise ConfigError(f'{base}: the recorder does not publish ("publish": false)')
    ipc = [e for e in endpoints if e.startswith("ipc://")]
    return _Source((ipc or list(endpoints))[0], base)


class Market:
    """What :func:`subscribe` yields: the window, the periods, candle callbacks, stats."""

    def __init__(self, source: _Source, sock: zmq.Socket[bytes], context: zmq.Context[Any]) -> None:
        self._source = source
        self._sock = sock
        self._context = context
        self.stats = SubscriberStats()
        self.epoch: str | None = None
        self._seq = 0
        self.interval: Interval | None = None
        self._window: Any = None
        self._pending: list[CandleEvent] = []
        self._pending_frames: list[pl.DataFrame] = []
        self._replay: list[pl.DataFrame] | None = None
        #: The live frames applied, a list a period: this one and the ``REPLAYED_PERIODS`` before.
        self._recent: deque[list[pl.DataFrame]] = deque([[]], maxlen=REPLAYED_PERIODS + 1)
        self._callbacks: list[tuple[str | None, Callable[[CandleEvent], Any]]] = []
        #: Periods to yield; ``(run_time_ms, heal generation)`` for one lost on the wire.
        self._periods: deque[Period | tuple[int, int]] = deque(maxlen=MAX_QUEUED_PERIODS)
        self._period_added = anyio.Event()
        self._last_period_ms: int | None = None
        self._first_message = anyio.Event()
        self._heal_wanted = anyio.Event()
        self._heal_reason = ""
        self._heal_again = True
        self._interval_known = anyio.Event()
        self._healing = False
        self._reheal_at_period = False
        self._heal_generation = 0
        #: The heal generation that will include everything received so far.
        self._heal_target = 0
        self._healed = anyio.Event()

    # --- the public face ------------------------------------------------------------------------

    @property
    def window(self) -> Any:
        """Every symbol's last ``num_candles`` candles (``MarketWindow``), up to date."""
        self._flush()
        return self._window

    def on_candle(self, callback: Callable[[CandleEvent], Any], symbol: str | None = None) -> None:
        """Call ``callback(event)`` for each live closed candle (of ``symbol``, or all) the moment
        it arrives, before the window holds it. Keep it quick: it runs in the receiving task."""
        self._callbacks.append((symbol, callback))

    async def periods(self) -> AsyncIterator[Period]:
        """Each period once, in order, the moment the recorder reports it (complete or at the
        deadline with ``missing``); periods lost on the wire are rebuilt after the heal."""
        while True:
            while not self._periods:
                await self._period_added.wait()
                self._period_added = anyio.Event()
            item = self._periods.popleft()
            if isinstance(item, Period):
                yield item
                continue
            # a period lost on the wire: rebuild it from the window once the heal that its
            # loss asked for is done
            run_time_ms, wanted = item
            while self._heal_generation < wanted:
                await self._healed.wait()
            yield self._rebuilt(run_time_ms)

    # --- receiving ------------------------------------------------------------------------------

    async def _receive(self) -> None:
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                # drained: apply the candles received so far now, so that when the period
                # message comes the window already holds them (the period costs factors only)
                self._flush()
                frames = await recv_multipart(self._sock)
            try:
                message = decode(frames)
                body = decode_body(message)
            except BusProtocolError as exc:
                self.stats.bad += 1
                LOGGER.warning("bad bus message dropped: %s", exc)
                continue
            self.stats.messages += 1
            self._track(message.header)
            if isinstance(body, CandleEvent):
                self.stats.candles += 1
                self._pending.append(body)
                for symbol, callback in self._callbacks:
                    if symbol is None or symbol == body.candle.symbol:
                        callback(body)
            elif isinstance(body, CandlesReply):  # a REST page of one symbol
                self._pending_frames.append(body.candles)
            elif isinstance(body, PeriodEvent):
                self._on_period(body)
            elif isinstance(body, SymbolsEvent):
                self._flush()
                self._forget(body.delisted)
            elif isinstance(body, Heartbeat) and self.interval is None:
                self._set_interval(body.interval)
            self._first_message.set()

    def _track(self, header: Header) -> None:
        self.stats.last_header = header
        if self.epoch is None:
            self.epoch, self._seq = header.epoch, header.seq
            return
        if header.epoch != self.epoch:
            self.stats.epochs += 1
            self.epoch, self._seq = header.epoch, header.seq
            self._want_heal(f"new publisher epoch {header.epoch}")
            return
        if header.seq > self._seq + 1:
            self.stats.gaps += 1
            self.stats.lost += header.seq - self._seq - 1
            self._want_heal(f"{header.seq - self._seq - 1} messages lost")
        self._seq = max(self._seq, header.seq)

    def _set_interval(self, name: str) -> None:
        self.interval = parse_interval(name)
        self._interval_known.set()

    def _on_period(self, event: PeriodEvent) -> None:
        if self.interval is None:
            self._set_interval(event.interval)
        assert self.interval is not None
        self._pending_frames.append(event.candles)
        if self._reheal_at_period:
            self._reheal_at_period = False
            self._want_heal("re-check after a heal", again=False)
        last = self._last_period_ms
        if last is not None and event.run_time_ms <= last:
            return  # the same period reported again (late symbols completed it)
        self._recent.append([])
        if last is not None:
            missed = self.interval.add(last, 1)
            while missed < event.run_time_ms:
                self._periods.append((missed, self._heal_target))
                missed = self.interval.add(missed, 1)
        self._last_period_ms = event.run_time_ms
        self._periods.append(
            Period(
                run_time=_utc(event.run_time_ms),
                run_time_ms=event.run_time_ms,
                candles=event.candles,
                ready=event.ready,
                missing=event.missing,
                complete=event.complete,
                lag_ms=event.lag_ms,
                last_received_us=event.last_received_us,
            )
        )
        self._period_added.set()

    def _rebuilt(self, run_time_ms: int) -> Period:
        window = self.window
        frame = window.period_frame(run_time_ms)
        ready = tuple(frame["symbol"].to_list())
        missing = tuple(s for s in window.symbols() if s not in set(ready))
        return Period(
            run_time=_utc(run_time_ms),
            run_time_ms=run_time_ms,
            candles=frame,
            ready=ready,
            missing=missing,
            complete=not missing,
            healed=True,
        )

    def _flush(self) -> None:
        """Apply the live candles received so far to the window (and to a heal under way)."""
        if not self._pending and not self._pending_frames:
            return
        frames = self._pending_frames
        if self._pending:
            frames = [candle_events_to_frame(self._pending), *frames]
        self._pending, self._pending_frames = [], []
        frame = pl.concat(frames) if len(frames) > 1 else frames[0]
        if self._window is None and self._replay is None:
            self._pending_frames = [frame]  # nothing to apply to yet: keep it
            return
        self._recent[-1].append(frame)
        if self._window is not None:
            self._window.apply(frame)
        if self._replay is not None:
            self._replay.append(frame)

    def _forget(self, delisted: tuple[str, ...]) -> None:
        """Drop delisted symbols from the window and from what a heal would replay."""
        if not delisted:
            return
        if self._window is not None:
            for symbol in delisted:
                self._window.remove(symbol)
        kept = ~pl.col("symbol").is_in(list(delisted))
        for frames in (*self._recent, self._replay or []):
            frames[:] = [frame.filter(kept) for frame in frames]

    # --- healing --------------------------------------------------------------------------------

    def _want_heal(self, reason: str, *, again: bool = True) -> None:
        LOGGER.warning("healing the window: %s", reason)
        self._heal_reason = reason
        self._heal_again = again
        # a heal under way may have read the truth already: the next one covers this loss
        step = 2 if self._healing else 1
        self._heal_target = max(self._heal_target, self._heal_generation + step)
        self._heal_wanted.set()

    async def _healer(self) -> None:
        while True:
            await self._heal_wanted.wait()
            self._heal_wanted = anyio.Event()
            again = self._heal_again
            try:
                await self._heal()
            except (OSError, BmacError, pl.exceptions.PolarsError, zmq.ZMQError) as exc:
                # a file moved aside mid-read, the publisher restarting: try again shortly
                LOGGER.warning("heal failed (%s); trying again", exc)
                await anyio.sleep(HEAL_RETRY_S)
                self._want_heal("retry", again=again)
                continue
            self.stats.heals += 1
            if again:
                self._reheal_at_period = True

    async def _heal(self) -> None:
        """Rebuild the window from the truth, then apply the live candles of the last periods
        and those received meanwhile (the truth may not hold the newest yet)."""
        self._healing = True
        try:
            self._flush()
            self._replay = [frame for frames in self._recent for frame in frames]
            window = await self._load()
            self._flush()
            for frame in self._replay:
                window.apply(frame)
            self._window = window
        finally:
            self._replay = None
            self._healing = False
        self._heal_generation += 1
        self._healed.set()
        self._healed = anyio.Event()

    async def _load(self) -> Any:
        if self._source.base_dir is not None:
            return await anyio.to_thread.run_sync(
                MarketWindow.from_directory, self._source.base_dir
            )
        reply = await self._request(CandlesRequest(symbols=None, since_ms=0))
        assert isinstance(reply, CandlesReply)
        frame = reply.candles
        await self._interval_known.wait()  # it comes with the first heartbeat or period
        assert self.interval is not None
        per_symbol = frame.group_by("symbol").len()["len"]
        num = 1500 if frame.is_empty() else int(per_symbol.max())  # type: ignore[arg-type]
        window = MarketWindow(num, self.interval)
        window.apply(frame)
        return window

    async def request(self, request: CandlesRequest) -> pl.DataFrame:
        """Ask the publisher's request socket for candles (any host)."""
        reply = await self._request(request)
        assert isinstance(reply, CandlesReply)
        return reply.candles

    async def _request(self, request: Any) -> Any:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(request_endpoint(self._source.endpoint))
            sock.send_multipart([b"", encode_request(request)], zmq.NOBLOCK)
            with anyio.fail_after(REQUEST_TIMEOUT_S):
                frames = await recv_multipart(sock)
        finally:
            sock.close(linger=0)
        body = decode_body(decode(frames[1:] if frames and frames[0] == b"" else frames))
        if isinstance(body, ErrorReply):
            raise BusProtocolError(f"the publisher could not answer: {body.error}")
        return body


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@asynccontextmanager
async def subscribe(
    source: str | os.PathLike[str],
    *,
    rcvhwm: int = DEFAULT_RCVHWM,
    first_message_wait_s: float = FIRST_MESSAGE_WAIT_S,
) -> AsyncIterator[Market]:
    """Subscribe to a recorder's live bus (see the module doc).

    Args:
        source: the recorder's data directory (this host: heals from the files) or a PUB
            endpoint ``ipc://…`` / ``tcp://host:port`` (heals through its request socket), or
            a NATS JetStream ``nats://host:port[,nats://…][?stream=NAME]`` (docs/nats.md).
        rcvhwm: messages queued in this process before libzmq drops them.

    Raises:
        ConfigError: a directory without config.json, or whose recorder does not publish.
    """
    resolved = _resolve(source)
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.SUB)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(resolved.endpoint)
        market = Market(resolved, sock, context)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(market._receive)
            if resolved.base_dir is None:
                await market._first_message.wait()
            else:
                with anyio.move_on_after(first_message_wait_s):
                    await market._first_message.wait()
            await market._heal()
            market._reheal_at_period = True
            tasks.start_soon(market._healer)
            yield market
            tasks.cancel_scope.cancel()
    finally:
        sock.close(linger=0)
        context.term()
