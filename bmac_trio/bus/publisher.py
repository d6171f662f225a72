"""The recorder's ZeroMQ publisher: an XPUB socket per endpoint, a request socket beside each.

Sends never wait: every message is handed to libzmq with ``NOBLOCK`` from the event loop (it
only queues it for libzmq's I/O thread). A subscriber whose queue holds ``hwm`` messages is
slow: the message is dropped *for that subscriber only* and counted. ``XPUB_NODROP`` makes the
send report the full queue (``zmq.Again``), and it is sent once more in lossy mode, which reaches
everyone else. The subscriber sees the gap in ``seq`` and heals (docs/bus.md).

The request socket (ROUTER) answers "candles of these symbols since T" from the recorder's
frames in memory (what is on disk plus what is being written), and "the last period".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import polars as pl
import trio
import zmq

from bmac_trio.binance.candles import CANDLE_SCHEMA, FLOAT_COLUMNS, Candle
from bmac_trio.bus.endpoints import request_endpoint
from bmac_trio.bus.messages import (
    BusMessage,
    CandleEvent,
    CandlesRequest,
    Heartbeat,
    LastPeriodRequest,
    PeriodEvent,
    Stamper,
    SymbolsEvent,
    candle_events_to_frame,
    decode_request,
    empty_frame,
)
from bmac_trio.bus.zmq_async import recv_multipart
from bmac_trio.clock import unix_us
from bmac_trio.errors import BusProtocolError, ConfigError

if TYPE_CHECKING:
    from bmac_trio.binance.intervals import Interval

__all__ = ["DEFAULT_HWM", "BusPublisher", "BusStats", "FrameSource"]

log = logging.getLogger("bmac_trio.bus")

#: Messages queued per subscriber before it counts as slow: a period's burst (one candle per
#: symbol plus the period) for a couple of thousand symbols fits.
DEFAULT_HWM: Final = 10_000
#: Real seconds between heartbeats.
HEARTBEAT_S: Final = 1.0
#: Periods of candles kept to build the ``period`` message.
KEEP_PERIODS: Final = 3

#: ``() -> {symbol: (frame on disk or None, candles not merged yet)}`` for the request socket.
FrameSource = Callable[[Iterable[str] | None], dict[str, tuple[pl.DataFrame | None, list[Any]]]]


@dataclass(slots=True)
class BusStats:
    """Counters shown in status and metrics."""

    sent: int = 0
    #: Messages that at least one slow subscriber did not get (its queue was at the HWM).
    dropped: int = 0
    requests: int = 0
    subscriptions: int = 0
    endpoints: list[str] = field(default_factory=list)


class BusPublisher:
    """Publishes the recorder's candles, periods and symbol changes (see the module doc).

    Args:
        endpoints: where to bind (``ipc://`` / ``tcp://``); a request socket binds beside each.
        market / interval: what the recorder records (in heartbeats and periods).
        hwm: messages queued per subscriber before it is dropped from.
        sndbuf: the kernel's send buffer per subscriber in bytes (0: the OS default).
        on_drop: called with the number of messages dropped so far (metrics).
    """

    def __init__(
        self,
        endpoints: Iterable[str],
        *,
        market: str,
        interval: Interval,
        hwm: int = DEFAULT_HWM,
        sndbuf: int = 0,
        on_drop: Callable[[int], None] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self.market = market
        self.interval = interval
        self.hwm = hwm
        self.sndbuf = sndbuf
        self.stamper = Stamper()
        self.stats = BusStats()
        self._on_drop = on_drop or (lambda n: None)
        self._on_sent = on_sent or (lambda n: None)
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._pub: list[zmq.Socket[bytes]] = []
        self._req: list[zmq.Socket[bytes]] = []
        #: Recent candles by symbol and open time, to build each ``period`` message.
        self._recent: dict[str, dict[int, CandleEvent]] = {}
        self._symbols: tuple[str, ...] = ()
        self.last_period: PeriodEvent | None = None
        #: Periods whose closing candles are being counted, and those announced already.
        self._arrived: dict[int, set[str]] = {}
        self._announced: set[int] = set()
        #: Periods reported on the bus: whether their complete report was published.
        self._reported: dict[int, bool] = {}
        self._pruned_at = -1
        #: Set per live phase: the recorder's frames for the request socket.
        self.frame_source: FrameSource | None = None

    @property
    def epoch(self) -> str:
        return self.stamper.epoch

    # --- sockets ------------------------------------------------------------------------------

    def open(self) -> None:
        """Bind every endpoint and its request socket.

        Raises:
            ConfigError: an endpoint cannot be bound (in use, bad path, too long).
        """
        self._context = zmq.Context()
        try:
            for endpoint in self.endpoints:
                pub = self._context.socket(zmq.XPUB)
                pub.setsockopt(zmq.LINGER, 0)
                pub.setsockopt(zmq.SNDHWM, self.hwm)
                pub.setsockopt(zmq.XPUB_NODROP, 1)
                if self.sndbuf:
                    pub.setsockopt(zmq.SNDBUF, self.sndbuf)
                self._pub.append(pub)
                pub.bind(endpoint)
                req = self._context.socket(zmq.ROUTER)
                req.setsockopt(zmq.LINGER, 0)
                self._req.append(req)
                req.bind(request_endpoint(endpoint))
                self.stats.endpoints.append(pub.getsockopt_string(zmq.LAST_ENDPOINT))
        except (zmq.ZMQError, ValueError) as exc:
            self.close()
            raise ConfigError(f"publish: cannot bind {endpoint!r}: {exc}") from None
        log.info("live bus on %s (epoch %s)", ", ".join(self.stats.endpoints), self.epoch)

    def close(self) -> None:
        """Close every socket (pending messages are dropped: linger 0)."""
        for sock in (*self._pub, *self._req):
            sock.close(linger=0)
        self._pub.clear()
        self._req.clear()
        if self._context is not None:
            self._context.term()
            self._context = None

    def _send(self, message: BusMessage) -> None:
        frames = message.frames()
        for pub in self._pub:
            try:
                pub.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                # a subscriber's queue is full: drop it there, deliver to everyone else
                self.stats.dropped += 1
                self._on_drop(1)
                pub.setsockopt(zmq.XPUB_NODROP, 0)
                try:
                    pub.send_multipart(frames, zmq.NOBLOCK)
                finally:
                    pub.setsockopt(zmq.XPUB_NODROP, 1)
        self.stats.sent += 1
        self._on_sent(1)

    # --- what the dispatcher calls (sync, never blocks) ---------------------------------------

    def candles(
        self, symbol: str, candles: Iterable[Candle], *, source: str, received: float
    ) -> None:
        """Closed candles the dispatcher accepted; ``received`` is ``trio.current_time()``
        at their arrival. One message per candle; a REST page is one ``candles`` message."""
        now = unix_us()
        received_us = now - int((trio.current_time() - received) * 1e6)
        events = [
            CandleEvent(
                candle=c,
                end_ms=self.interval.end(c.open_ms),
                source=source,
                received_us=received_us,
            )
            for c in candles
        ]
        # kept to build the period messages, which only ask for the newest periods: a history
        # page of 1500 candles per symbol kept whole held ~300 MB for 500 symbols until the
        # first period pruned it (pages come in time order)
        recent = self._recent.setdefault(symbol, {})
        for event in events[-KEEP_PERIODS:]:
            recent[event.candle.open_ms] = event
        if len(events) == 1:
            self._send(self.stamper.candle(events[0], now_us=now))
        elif events:
            frame = candle_events_to_frame(events)
            self._send(self.stamper.candle_page(symbol, frame, now_us=now))

    def period(
        self,
        *,
        run_time_ms: int,
        ready: Iterable[str],
        missing: Iterable[str],
        complete: bool,
        lag_s: float | None,
        last_received: float | None,
    ) -> None:
        """A period was reported (complete, or at its deadline with symbols missing).

        Published at its first report and once complete; the reports in between (each late
        symbol written) are not: their candles went out as candle messages already, and a
        whole-market frame per late symbol would cost O(symbols²) per period.
        """
        published = self._reported.get(run_time_ms)
        if published is not None and (published or not complete):
            return
        self._reported[run_time_ms] = complete
        if len(self._reported) > KEEP_PERIODS * 4:
            for old in sorted(self._reported)[: -KEEP_PERIODS * 2]:
                del self._reported[old]
        open_ms = self.interval.add(run_time_ms, -1)
        ready = tuple(ready)
        events = []
        for symbol in ready:
            event = self._recent.get(symbol, {}).get(open_ms)
            if event is None:
                event = self._lookup(symbol, open_ms)
            if event is not None:
                events.append(event)
        now = unix_us()
        last_us = (
            None
            if last_received is None
            else now - int((trio.current_time() - last_received) * 1e6)
        )
        event = PeriodEvent(
            run_time_ms=run_time_ms,
            interval=self.interval.name,
            ready=ready,
            missing=tuple(missing),
            complete=complete,
            lag_ms=None if lag_s is None else round(lag_s * 1000, 3),
            candles=candle_events_to_frame(events),
            last_received_us=last_us,
        )
        self.last_period = event
        self._send(self.stamper.period(event, now_us=now))
        if open_ms > self._pruned_at:  # once per period, not per report
            self._pruned_at = open_ms
            self._prune(open_ms)

    def arrived(self, run_time_ms: int, symbol: str, expected: frozenset[str]) -> None:
        """``symbol``'s candle of the period ending at ``run_time_ms`` was accepted: once every
        expected symbol's is, the period is announced at once, before the writes land."""
        if run_time_ms in self._announced:
            return
        got = self._arrived.setdefault(run_time_ms, set())
        got.add(symbol)
        if expected and expected <= got:
            self._announce(run_time_ms, expected)

    def period_started(self, run_time_ms: int, expected: frozenset[str]) -> None:
        """The period ending at ``run_time_ms`` ended: its closing candles may have come first."""
        open_ms = self.interval.add(run_time_ms, -1)
        got = {s for s in expected if open_ms in self._recent.get(s, {})}
        self._arrived.setdefault(run_time_ms, set()).update(got)
        if expected and expected <= got and run_time_ms not in self._announced:
            self._announce(run_time_ms, expected)

    def _announce(self, run_time_ms: int, expected: frozenset[str]) -> None:
        open_ms = self.interval.add(run_time_ms, -1)
        events = [e for s in sorted(expected) if (e := self._recent.get(s, {}).get(open_ms))]
        received = [e.received_us for e in events if e.received_us is not None]
        event = PeriodEvent(
            run_time_ms=run_time_ms,
            interval=self.interval.name,
            ready=tuple(sorted(expected)),
            missing=(),
            complete=True,
            lag_ms=None,
            candles=candle_events_to_frame(events),
            last_received_us=max(received) if received else None,
            on_disk=False,
        )
        self._send(self.stamper.period(event, now_us=unix_us()))
        self._announced.add(run_time_ms)
        for old in [t for t in self._arrived if t <= run_time_ms]:
            del self._arrived[old]
        if len(self._announced) > KEEP_PERIODS * 4:
            self._announced = set(sorted(self._announced)[-KEEP_PERIODS:])

    def _lookup(self, symbol: str, open_ms: int) -> CandleEvent | None:
        """A ready symbol's candle that was not published (read from disk at start)."""
        if self.frame_source is None:
            return None
        frame, _ = self.frame_source([symbol]).get(symbol, (None, []))
        if frame is None:
            return None
        begin = pl.lit(open_ms).cast(pl.Int64).cast(CANDLE_SCHEMA["candle_begin_time"])
        rows = frame.filter(pl.col("candle_begin_time") == begin)
        if rows.height == 0:
            return None
        row = rows.row(0, named=True)
        candle = Candle(symbol=symbol, open_ms=open_ms, **{n: row[n] for n in FLOAT_COLUMNS})
        return CandleEvent(candle=candle, end_ms=self.interval.end(open_ms), source="disk")

    def _prune(self, open_ms: int) -> None:
        oldest = self.interval.add(open_ms, -(KEEP_PERIODS - 1))
        for symbol, recent in self._recent.items():
            if len(recent) > KEEP_PERIODS or (recent and min(recent) < oldest):
                self._recent[symbol] = {t: e for t, e in recent.items() if t >= oldest}

    def symbols(self, symbols: Iterable[str]) -> None:
        """The selection is now ``symbols``: publish what was listed and delisted, if anything."""
        now_set = tuple(sorted(symbols))
        before = set(self._symbols)
        listed = tuple(s for s in now_set if s not in before)
        delisted = tuple(sorted(before - set(now_set)))
        self._symbols = now_set
        for symbol in delisted:
            self._recent.pop(symbol, None)
        if listed or delisted:
            event = SymbolsEvent(symbols=now_set, listed=listed, delisted=delisted)
            self._send(self.stamper.symbols(event, now_us=unix_us()))

    def heartbeat(self) -> None:
        beat = Heartbeat(
            market=self.market,
            interval=self.interval.name,
            symbols=len(self._symbols),
            last_run_time_ms=None if self.last_period is None else self.last_period.run_time_ms,
        )
        self._send(self.stamper.heartbeat(beat, now_us=unix_us()))

    # --- tasks --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeats, subscription bookkeeping and the request sockets, until cancelled."""
        async with trio.open_nursery() as nursery:
            for req in self._req:
                nursery.start_soon(self._serve, req)
            task_status.started()
            while True:
                self._drain_subscriptions()
                self.heartbeat()
                await trio.sleep(HEARTBEAT_S)

    def _drain_subscriptions(self) -> None:
        """XPUB hands subscriptions to us: read them so they do not pile up, and count them."""
        for pub in self._pub:
            while True:
                try:
                    frame = pub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if frame[:1] == b"\x01":
                    self.stats.subscriptions += 1
                elif frame[:1] == b"\x00":
                    self.stats.subscriptions -= 1

    async def _serve(self, sock: zmq.Socket[bytes]) -> None:
        while True:
            frames = await recv_multipart(sock)
            # ROUTER: [identity, (empty delimiter of a REQ client,) request]
            if len(frames) < 2:
                continue
            envelope, request = frames[:-1], frames[-1]
            self.stats.requests += 1
            reply = await self._answer(request)
            try:
                sock.send_multipart([*envelope, *reply.frames()], zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # the client went away: nothing to tell it
                log.debug("reply not sent: %s", exc)

    async def _answer(self, data: bytes) -> BusMessage:
        now = unix_us()
        try:
            request = decode_request(data)
        except BusProtocolError as exc:
            return self.stamper.reply_error(str(exc), now_us=now)
        if isinstance(request, LastPeriodRequest):
            if self.last_period is None:
                return self.stamper.reply_error("no period reported yet", now_us=now)
            return self.stamper.reply_period(self.last_period, now_us=now)
        assert isinstance(request, CandlesRequest)
        if self.frame_source is None:
            return self.stamper.reply_error("the recorder is starting", now_us=now)
        snapshot = self.frame_source(request.symbols)
        frame = await trio.to_thread.run_sync(
            _candles_since, snapshot, request.since_ms, self.interval
        )
        return self.stamper.reply_candles(frame, now_us=unix_us())


def _candles_since(
    snapshot: dict[str, tuple[pl.DataFrame | None, list[Any]]], since_ms: int, interval: Interval
) -> pl.DataFrame:
    """In a worker thread: every symbol's candles opening at or after ``since_ms``."""
    from bmac_trio.binance.candles import candles_to_frame

    since = pl.lit(since_ms).cast(pl.Int64).cast(CANDLE_SCHEMA["candle_begin_time"])
    parts = []
    for symbol in sorted(snapshot):
        frame, pending = snapshot[symbol]
        pieces = [] if frame is None else [frame]
        if pending:
            pieces.append(candles_to_frame(pending, interval))
        if not pieces:
            continue
        merged = (
            pl.concat(pieces).unique("candle_begin_time", keep="last").sort("candle_begin_time")
        )
        merged = merged.filter(pl.col("candle_begin_time") >= since)
        parts.append(merged.select(pl.lit(symbol).alias("symbol"), *CANDLE_SCHEMA.names()))
    return pl.concat(parts) if parts else empty_frame()
