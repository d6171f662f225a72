"""The WebSocket side of the simulator: connections, subscriptions and the kline publisher.

One publisher task serves every connection. Per kline stream it pushes

* the closing ``x:true`` event ``delay`` after the candle ends, where ``delay`` is a
  deterministic 0.2-2.0 s of exchange time per (symbol, interval, open) (1-50 ms for ``1s``
  candles) and ``E`` = end + delay; it is sent even when nothing traded, and never skipped by
  throttling;
* ``x:false`` updates of the forming candle at the market's cadence (spot 2 s, 1 s for ``1s``;
  futures 250 ms, only when the candle changed and not before its first trade), never for a
  candle whose predecessor's closing event is still due.

Throttling rule at high clock speed: intermediate updates of one stream are at least
``min_real_update_s`` real seconds apart (default: the Binance cadence, e.g. 0.25 s), i.e. the
exchange-time gap is ``max(cadence, min_real_update_s * speed)``; all streams of one cadence
tick together, half a period off the candle boundaries. Silence (a fault or a maintenance
window) suppresses every frame.

Continuous-kline streams (futures) follow the contract holding the role when each candle
opens (:meth:`._exchange.Exchange.continuous_spec`); spot ``@+08:00`` streams bucket in UTC+8.
A connection opened with ``timeUnit=MICROSECOND`` gets its event times in microseconds.

Each connection has a bounded outgoing queue drained by its own writer; a client too slow
to keep up is disconnected, like Binance does.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

import orjson
import trio

from bmac_trio.binance.intervals import Interval
from bmac_trio.binance.markets import Market
from bmac_trio.clock import Clock
from bmac_trio.sim._config import SimConfig
from bmac_trio.sim._encode import continuous_kline_event, event_in_micros, kline_event
from bmac_trio.sim._exchange import Exchange
from bmac_trio.sim._hashing import symbol_key, unit
from bmac_trio.sim._market_data import Candle
from bmac_trio.sim._stats import SimStats
from bmac_trio.sim._symbols import SymbolSpec
from bmac_trio.sim._ws_protocol import ConnProtocol, ContinuousStream, KlineStream, parse_stream
from bmac_trio.sim._zones import zoned

__all__ = ["Conn", "Hub"]


def _next_tick(now: int, gap: int) -> int:
    """The next update tick: a grid of ``gap`` offset by half a gap from candle boundaries,
    so a tick never falls just before the previous candle's closing push (1s candles)."""
    off = gap // 2
    return ((now - off) // gap + 1) * gap + off


@dataclass(eq=False, slots=True)
class Conn:
    """One accepted WebSocket connection."""

    cid: int
    proto: ConnProtocol
    klines: bool
    out: trio.MemorySendChannel[str]
    opened_ms: int
    #: Event times in microseconds (spot ``timeUnit=MICROSECOND``).
    micros: bool = False
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    close_code: int = 1000
    close_reason: str = ""
    held: list[str] = field(default_factory=list)

    def _put(self, text: str) -> None:
        try:
            self.out.send_nowait(text)
        except trio.WouldBlock:
            self.kill(1008, "slow consumer")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def deliver(self, text: str) -> None:
        """Queue ``text``; frames held back for reordering follow it."""
        self._put(text)
        if self.held:
            held, self.held = self.held, []
            for h in held:
                self._put(h)

    def kill(self, code: int = 1000, reason: str = "") -> None:
        """Close this connection from the server side."""
        if not self.scope.cancel_called:
            self.close_code, self.close_reason = code, reason
        self.scope.cancel()


@dataclass(eq=False, slots=True)
class _Stream:
    name: str
    #: The symbol, or ``<PAIR>_<CONTRACT TYPE>`` of a continuous stream (seeds its delays).
    symbol: str
    interval: str
    iv: Interval
    gap_ms: int
    continuous: ContinuousStream | None = None
    conns: dict[Conn, None] = field(default_factory=dict)
    closed_upto: int = 0
    last_key: tuple[int, int, int] | None = None


@dataclass(slots=True)
class _FrameFaults:
    malformed: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    closing_only: bool = True


class Hub:
    """Connections, streams and the publisher loop (:meth:`run`)."""

    def __init__(self, ex: Exchange, clock: Clock, cfg: SimConfig, stats: SimStats) -> None:
        self.ex = ex
        self.market: Market = ex.market
        self.clock = clock
        self.cfg = cfg
        self.stats = stats
        self.conns: dict[int, Conn] = {}
        self.streams: dict[str, _Stream] = {}
        self._heap: list[tuple[int, int, _Stream, int]] = []
        self._seq = itertools.count()
        self._cids = itertools.count(1)
        self._ticks: dict[int, int] = {}
        self._wake = trio.Event()
        self.silent_until = 0
        self.frame_faults = _FrameFaults()
        self.max_streams = cfg.max_streams or self.market.max_streams_per_connection
        self._key = symbol_key(cfg.seed, "closing-delay")

    # ------------------------------------------------------------------- connections

    def open_conn(
        self, proto: ConnProtocol, klines: bool, *, micros: bool = False
    ) -> tuple[Conn, trio.MemoryReceiveChannel[str]]:
        """Register a connection; returns it and the receive end of its outgoing queue."""
        send, recv = trio.open_memory_channel[str](self.cfg.send_queue_frames)
        conn = Conn(next(self._cids), proto, klines, send, self.clock.now_ms(), micros)
        self.conns[conn.cid] = conn
        self.stats.ws_connections_opened += 1
        return conn, recv

    def close_conn(self, conn: Conn) -> None:
        """Forget a connection and its subscriptions."""
        if self.conns.pop(conn.cid, None) is None:
            return
        self.unsubscribe(conn, list(conn.proto.streams))
        conn.out.close()
        self.stats.ws_connections_closed += 1

    def subscribe(self, conn: Conn, names: list[str]) -> None:
        """Attach ``conn`` to kline streams (other stream kinds never carry data here)."""
        now = self.clock.now_ms()
        for name in names:
            parsed = parse_stream(name, self.market)
            if not isinstance(parsed, KlineStream | ContinuousStream):
                continue
            stream = self.streams.get(name)
            if stream is None:
                stream = self._new_stream(name, parsed, now)
            stream.conns[conn] = None

    def unsubscribe(self, conn: Conn, names: list[str]) -> None:
        """Detach ``conn``; a stream nobody listens to is dropped."""
        for name in names:
            stream = self.streams.get(name)
            if stream is None:
                continue
            stream.conns.pop(conn, None)
            if not stream.conns:
                del self.streams[name]

    def _new_stream(self, name: str, parsed: KlineStream | ContinuousStream, now: int) -> _Stream:
        cadence = self.market.stream_update_ms(parsed.interval)
        real_gap = self.cfg.min_real_update_s
        if real_gap is None:
            real_gap = cadence / 1000
        gap = max(cadence, math.ceil(real_gap * 1000 * self.clock.speed))
        if isinstance(parsed, ContinuousStream):
            key = f"{parsed.pair}_{parsed.contract_type}"
            iv = zoned(parsed.interval, 0)
            stream = _Stream(name, key, parsed.interval, iv, gap, continuous=parsed)
        else:
            iv = zoned(parsed.interval, parsed.offset_ms)
            stream = _Stream(name, parsed.symbol, parsed.interval, iv, gap)
        self.streams[name] = stream
        t = iv.floor(now)
        prev = iv.add(t, -1)
        if now < self.closing_due(stream, prev):
            # The previous candle's closing push is still due: start the chain there.
            stream.closed_upto = iv.add(prev, -1)
            self._schedule(stream, prev)
        else:
            stream.closed_upto = prev
            self._schedule(stream, t)
        if gap not in self._ticks:
            self._ticks[gap] = _next_tick(now, gap)
        self._wake.set()
        return stream

    def wake(self) -> None:
        """Make the publisher re-plan now (the schedule or the market changed)."""
        self._wake.set()

    def drop(self, count: int | None = None) -> int:
        """Close ``count`` connections (oldest first; None = all); how many were closed."""
        victims = sorted(self.conns.values(), key=lambda c: c.cid)
        if count is not None:
            victims = victims[:count]
        for conn in victims:
            conn.kill(1001, "dropped")
        return len(victims)

    # ------------------------------------------------------------------------ pushing

    def closing_delay_ms(self, symbol: str, iv: Interval, open_ms: int) -> int:
        """0.2-2.0 s, deterministic per symbol and period (1-50 ms for ``1s`` candles).

        The 0.2-2.0 s range is the real UM capture of 1m streams; a real spot ``1s`` closing
        event came 1 ms after its close, before the next second's candle ended.
        """
        u = unit(self._key ^ symbol_key(self.cfg.seed, symbol), open_ms, iv.ms)
        if iv.ms == 1000:
            return 1 + int(u * 49)
        return 200 + int(u * 1800)

    def closing_due(self, stream: _Stream, open_ms: int) -> int:
        """Exchange time of the closing push of the candle opening at ``open_ms``."""
        return stream.iv.end(open_ms) + self.closing_delay_ms(stream.symbol, stream.iv, open_ms)

    def _schedule(self, stream: _Stream, open_ms: int) -> None:
        due = self.closing_due(stream, open_ms)
        heapq.heappush(self._heap, (due, next(self._seq), stream, open_ms))

    def silent(self, t_ms: int) -> bool:
        """No frames at all during a silence fault or a maintenance window."""
        return t_ms < self.silent_until or self.ex.in_maintenance(t_ms)

    def _spec_at(self, stream: _Stream, open_ms: int) -> SymbolSpec | None:
        """The contract whose candle the stream carries for the candle opening at ``open_ms``."""
        c = stream.continuous
        if c is None:
            return self.ex.specs.get(stream.symbol)
        return self.ex.continuous_spec(c.pair, c.contract_type, open_ms)

    def _event(self, stream: _Stream, spec: SymbolSpec, candle: Candle, event_ms: int) -> dict:
        c = stream.continuous
        if c is None:
            return kline_event(spec, stream.interval, candle, event_ms)
        return continuous_kline_event(
            c.pair, c.contract_type, spec, stream.interval, candle, event_ms
        )

    def _emit(self, stream: _Stream, event: dict, *, closing: bool) -> None:
        targets = [c for c in stream.conns if c.klines]
        if not targets:
            return
        # One text per (combined, micros) form any target needs.
        texts: dict[tuple[bool, bool], str] = {}
        for micros in {c.micros for c in targets}:
            raw = orjson.dumps(event_in_micros(event) if micros else event).decode()
            texts[False, micros] = raw
            texts[True, micros] = f'{{"stream":"{stream.name}","data":{raw}}}'
        ff = self.frame_faults
        eligible = closing or not ff.closing_only
        copies, hold = 1, False
        if eligible and ff.malformed:
            ff.malformed -= 1
            self.stats.faults["malformed"] += 1
            texts = {form: text[: len(text) // 2] for form, text in texts.items()}
        elif eligible and ff.duplicates:
            ff.duplicates -= 1
            self.stats.faults["duplicate"] += 1
            copies = 2
        elif eligible and ff.out_of_order:
            ff.out_of_order -= 1
            self.stats.faults["out_of_order"] += 1
            hold = True
        for conn in targets:
            text = texts[conn.proto.combined, conn.micros]
            for _ in range(copies):
                if hold:
                    conn.held.append(text)
                else:
                    conn.deliver(text)
        self.stats.ws_kline_events += 1
        if closing:
            self.stats.ws_closing_events += 1

    def _fire_closings(self, now: int) -> None:
        ex = self.ex
        while self._heap and self._heap[0][0] <= now:
            due, _, stream, open_ms = heapq.heappop(self._heap)
            if self.streams.get(stream.name) is not stream:
                continue
            stream.closed_upto = max(stream.closed_upto, open_ms)
            spec = self._spec_at(stream, open_ms)
            nxt = stream.iv.add(open_ms, 1)
            # A continuous contract never ends: its next candle comes from the next holder.
            end = ex.end_ms(spec) if spec is not None and stream.continuous is None else None
            if end is None or nxt < end:
                self._schedule(stream, nxt)
            if spec is None or self.silent(due) or not ex.exists(spec, stream.iv, open_ms):
                continue
            candle = ex.model.closed_candle(spec, stream.iv, open_ms)
            self._emit(stream, self._event(stream, spec, candle, due), closing=True)

    def _update(self, stream: _Stream, now: int) -> None:
        ex = self.ex
        t = stream.iv.floor(now)
        spec = self._spec_at(stream, t)
        if spec is None:
            return
        if stream.closed_upto < stream.iv.add(t, -1) or not ex.exists(spec, stream.iv, t):
            return
        if now < ex.onboard_ms(spec):
            return
        candle = ex.model.candle(spec, stream.iv, t, now)
        if self.market.is_futures:
            key = (t, candle.n, candle.c)
            if candle.n == 0 or key == stream.last_key:
                return
            stream.last_key = key
        self._emit(stream, self._event(stream, spec, candle, now), closing=False)

    def _fire_updates(self, now: int) -> None:
        due = [gap for gap, t in self._ticks.items() if t <= now]
        if not due:
            return
        for gap in due:
            self._ticks[gap] = _next_tick(now, gap)
        if self.silent(now):
            return
        for stream in list(self.streams.values()):
            if stream.gap_ms in due:
                self._update(stream, now)

    def _next_due(self) -> int | None:
        candidates = list(self._ticks.values())
        if self._heap:
            candidates.append(self._heap[0][0])
        return min(candidates) if candidates else None

    async def run(self) -> None:
        """The publisher loop; runs until cancelled.

        Cancellation: safe at any await; no state is left half-updated.
        """
        while True:
            now = self.clock.now_ms()
            self._fire_closings(now)
            self._fire_updates(now)
            nxt = self._next_due()
            delay = math.inf if nxt is None else self.clock.to_real(max(0, nxt - now) / 1000)
            with trio.move_on_after(delay):
                await self._wake.wait()
            if self._wake.is_set():
                self._wake = trio.Event()
