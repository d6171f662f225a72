"""WebSocket listeners: combined kline streams, kept alive, replaced new-before-old.

Symbols are spread over connections ("slots") by :class:`StreamPlan`: at most the market's
streams-per-connection cap on each, at least ``num_socket_listeners`` slots (a floor), a symbol
placed by a stable hash (blake2b, not Python's salted ``hash``) and never moved afterwards, so
adding or removing a symbol touches exactly one connection, which is changed with SUBSCRIBE /
UNSUBSCRIBE rather than reconnected (BMAC reconnected whole groups at the boundary, bug 5, and
never listened on groups empty at start, bug 6).

Each slot is supervised by :func:`_run_slot`. A connection is replaced when it

* drops (connection closed, handshake or socket error → :class:`WsDisconnected`), with backoff;
* goes silent: no frame for ``probe_after_s``, then a LIST_SUBSCRIPTIONS probe unanswered for
  ``probe_timeout_s``. Futures push only on change, so silence alone proves nothing; an
  unanswered probe does;
* reaches ``max_age_s`` of exchange time (Binance cuts at 24 h).

A stream the exchange refuses (e.g. a listing named ``BTC-USDT``) costs only its own symbol,
however the refusal shows: a handshake answered HTTP 400 "Invalid stream name" (the slot's
streams are bisected with trial handshakes, about two per halving), a stream named in the URL
but missing from the LIST_SUBSCRIPTIONS sent right after opening (dropped silently), or an error
reply to SUBSCRIBE (the request is sent again in halves until the one stream is known). Those
symbols are left out of every connection and reported to the dispatcher
(:class:`StreamsRefused`), which fetches their candles over REST; the others stay live.

A replacement is opened and subscribed first, and only then is the old connection closed, so
the two overlap; the book drops the duplicate candles. The reader is a thin parse-then-send
loop (no disk I/O): only closed klines (``x: true``) are forwarded; a malformed frame is counted
and dropped.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from bmac_trio.binance.protocol import (
    ControlError,
    ControlReply,
    KlineEvent,
    control_message,
    kline_stream_name,
    parse_ws_message,
    ws_path,
)
from bmac_trio.errors import RemoteProtocolError, WsDisconnected, WsStreamsRefused
from bmac_trio.recorder.events import Inbox, Klines, SetSymbols, StreamsRefused
from bmac_trio.recorder.ws_client import WsClient, WsRejected
from bmac_trio.recorder.ws_handshake import (
    ACCEPTED,
    handshake_status,
    host_and_resource,
    open_ws_stream,
)

if TYPE_CHECKING:
    from bmac_trio.binance.intervals import Interval
    from bmac_trio.binance.markets import Market
    from bmac_trio.clock import Clock
    from bmac_trio.ops.metrics import Metrics

__all__ = ["ListenerStats", "StreamPlan", "WsSettings", "run_ws_listeners"]

log = logging.getLogger("bmac_trio.ws")

#: How Binance spells a kline that is not closed yet (compact JSON, as on the wire).
_OPEN_KLINE = '"x":false'


def _stable_hash(symbol: str) -> int:
    """The same number in every process (Python's ``hash`` of a str is salted per process)."""
    return int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=8).digest(), "big")


class StreamPlan:
    """Which connection slot each symbol is streamed on (pure, deterministic, sticky)."""

    def __init__(self, *, cap: int, floor: int) -> None:
        self.cap = cap
        self.floor = max(1, floor)
        self.slots: list[set[str]] = []
        self.where: dict[str, int] = {}

    def update(self, symbols: Iterable[str]) -> set[int]:
        """Make the plan hold exactly ``symbols``; returns the slots whose set changed."""
        wanted = set(symbols)
        changed: set[int] = set()
        for symbol in sorted(set(self.where) - wanted):
            slot = self.where.pop(symbol)
            self.slots[slot].discard(symbol)
            changed.add(slot)
        added = sorted(wanted - set(self.where))
        target = max(self.floor, math.ceil(len(wanted) / self.cap))
        while len(self.slots) < target:
            self.slots.append(set())
        for symbol in added:
            n = len(self.slots)
            home = _stable_hash(symbol) % n
            for i in range(n):
                slot = (home + i) % n
                if len(self.slots[slot]) < self.cap:
                    break
            else:
                self.slots.append(set())
                slot = n
            self.slots[slot].add(symbol)
            self.where[symbol] = slot
            changed.add(slot)
        return changed


@dataclass(frozen=True, slots=True, kw_only=True)
class WsSettings:
    """How the listeners connect and when they replace a connection."""

    market: Market
    interval: Interval
    ws_url: str
    clock: Clock
    floor: int = 8
    #: Exchange seconds a connection may live (Binance cuts at 24 h; replace before).
    max_age_s: float = 23.5 * 3600
    #: Real seconds without any frame before a LIST_SUBSCRIPTIONS probe.
    probe_after_s: float = 30.0
    #: Real seconds a probe may stay unanswered before the connection counts as silent.
    probe_timeout_s: float = 10.0
    #: Real seconds a handshake may take.
    connect_timeout_s: float = 10.0

    @property
    def tick_s(self) -> float:
        """How often a slot checks its connection's age and silence (real seconds)."""
        return max(0.02, min(self.probe_after_s / 3, self.clock.to_real(self.max_age_s) / 20))


@dataclass(slots=True)
class ListenerStats:
    """Counters shared by every slot (read by tests, status and the benchmark)."""

    connects: int = 0
    #: Connections open right now.
    open: int = 0
    replaced: dict[str, int] = field(default_factory=dict)
    bad_frames: int = 0
    #: Closed klines forwarded, and provisional (x:false) updates dropped unparsed.
    klines: int = 0
    open_updates: int = 0
    subscribe_messages: int = 0
    #: Symbols whose stream the exchange refused (recorded over REST instead).
    refused: set[str] = field(default_factory=set)
    #: Trial handshakes made to find them.
    trial_connects: int = 0


@dataclass(slots=True)
class _Conn:
    ws: WsClient
    streams: set[str]
    opened_ms: int
    last_frame: float
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    closed: trio.Event = field(default_factory=trio.Event)
    probe_sent: float | None = None
    next_id: int = 1
    #: SUBSCRIBE requests awaiting their reply, by id.
    subscribing: dict[int, list[str]] = field(default_factory=dict)
    #: SUBSCRIBE requests the exchange answered with an error (none of each is subscribed).
    sub_refused: list[list[str]] = field(default_factory=list)
    #: The LIST_SUBSCRIPTIONS sent right after opening, and the streams it is checked against.
    check_id: int | None = None
    check_streams: frozenset[str] = frozenset()
    #: Streams the exchange dropped silently from the URL (absent from that list).
    dropped: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Slot:
    index: int
    desired: set[str]
    wake: trio.Event = field(default_factory=trio.Event)

    def poke(self) -> None:
        self.wake.set()


class _Listener:
    def __init__(
        self,
        settings: WsSettings,
        inbox: trio.MemorySendChannel[Inbox],
        stats: ListenerStats,
        metrics: Metrics | None,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> None:
        self.s = settings
        self.inbox = inbox
        self.stats = stats
        self.metrics = metrics
        self.on_reconnect = on_reconnect

    def streams(self, symbols: Iterable[str]) -> set[str]:
        """The stream names of ``symbols``, less those the exchange refused."""
        refused = self.stats.refused
        return {kline_stream_name(sym, self.s.interval) for sym in symbols if sym not in refused}

    async def open(self, nursery: trio.Nursery, slot: _Slot, streams: set[str]) -> _Conn:
        """Connect with ``streams`` in the URL; the server subscribes them at once.

        Raises:
            WsStreamsRefused: the handshake was answered 400 (a stream name refused).
            WsDisconnected: any other failure to connect.
        """
        url = self.s.ws_url + ws_path(self.s.market, sorted(streams))
        try:
            with trio.fail_after(self.s.connect_timeout_s):
                conn: _Conn = await nursery.start(self.connection, slot, url, streams)
        except WsRejected as exc:
            if exc.status_code == 400:
                raise WsStreamsRefused(f"slot {slot.index}: streams refused: {exc}") from exc
            raise WsDisconnected(f"slot {slot.index}: connect failed: {exc}") from exc
        except WsDisconnected as exc:
            raise WsDisconnected(f"slot {slot.index}: connect failed: {exc}") from exc
        except (OSError, trio.TooSlowError) as exc:
            raise WsDisconnected(f"slot {slot.index}: connect failed: {exc!r}") from exc
        return conn

    async def connection(
        self,
        slot: _Slot,
        url: str,
        streams: set[str],
        *,
        task_status: trio.TaskStatus[_Conn] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """One connection's life: the handshake (its failure raises to the opener), then read
        until it closes or its scope is cancelled; the stream is closed whatever happens."""
        stream = await open_ws_stream(url)
        async with stream:
            host, resource = host_and_resource(url)
            ws = await WsClient.connect(stream, host, resource)
            conn = _Conn(
                ws=ws,
                streams=set(streams),
                opened_ms=self.s.clock.now_ms(),
                last_frame=trio.current_time(),
            )
            self.stats.connects += 1
            self.stats.open += 1
            if self.metrics is not None:
                self.metrics.connections(self.stats.open)
            task_status.started(conn)
            # a server may also drop a stream it refuses from the URL silently
            conn.check_id, conn.check_streams = conn.next_id, frozenset(conn.streams)
            try:
                await self.send_control(conn, "LIST_SUBSCRIPTIONS", None)
            except WsDisconnected:
                conn.check_id = None  # closed already: the reader returns at once
            await self.read(slot, conn)

    async def read(self, slot: _Slot, conn: _Conn) -> None:
        """Parse, then send: the whole job of a reader."""
        try:
            with conn.scope:
                while messages := await conn.ws.receive():
                    conn.last_frame = trio.current_time()
                    conn.probe_sent = None
                    for data in messages:
                        await self.handle(slot, conn, data)
        finally:
            conn.closed.set()
            self.stats.open -= 1
            if self.metrics is not None:
                self.metrics.connections(self.stats.open)
            slot.poke()
            with trio.move_on_after(1, shield=True):
                await conn.ws.close()

    async def handle(self, slot: _Slot, conn: _Conn, data: str | bytes) -> None:
        """One message: a closed kline goes to the dispatcher, a control reply to its
        request; a provisional update or a malformed frame is counted and dropped."""
        if self.metrics is not None:
            self.metrics.message_received()
        if isinstance(data, str) and _OPEN_KLINE in data:
            # a provisional update (x:false): about 4 a second per futures symbol, all
            # dropped; skipping the full parse saves most of the CPU
            self.stats.open_updates += 1
            return
        try:
            event = parse_ws_message(data, interval=self.s.interval)
        except RemoteProtocolError as exc:
            self.stats.bad_frames += 1
            log.debug("slot %d: dropped a malformed frame: %s", slot.index, exc)
            return
        if isinstance(event, KlineEvent):
            if event.closed:
                self.stats.klines += 1
                await self.inbox.send(
                    Klines(
                        symbol=event.candle.symbol,
                        candles=(event.candle,),
                        source="ws",
                        received=conn.last_frame,
                    )
                )
        elif isinstance(event, ControlReply):
            if isinstance(event.id, int):
                conn.subscribing.pop(event.id, None)
            if event.id == conn.check_id and isinstance(event.result, list):
                # streams named in the URL that the exchange did not subscribe
                conn.dropped = set(conn.check_streams - set(event.result))
                conn.check_id = None
                if conn.dropped:
                    conn.streams.difference_update(conn.dropped)
                    slot.poke()
        elif isinstance(event, ControlError):
            log.warning("slot %d: control error %s %s", slot.index, event.code, event.msg)
            batch = conn.subscribing.pop(event.id, None)
            if isinstance(event.id, int) and batch is not None:
                # the whole request was refused: none of it is subscribed
                conn.streams.difference_update(batch)
                conn.sub_refused.append(batch)
                slot.poke()

    async def send_control(self, conn: _Conn, method: str, params: list[str] | None) -> None:
        try:
            await conn.ws.send_text(control_message(method, conn.next_id, params))
        except WsDisconnected as exc:
            raise WsDisconnected(f"{method} failed: {exc}") from exc
        if method == "SUBSCRIBE" and params:
            conn.subscribing[conn.next_id] = list(params)
        conn.next_id += 1
        self.stats.subscribe_messages += 1

    async def resubscribe(self, conn: _Conn, add: set[str], remove: set[str]) -> None:
        """SUBSCRIBE/UNSUBSCRIBE in chunks, within the client message-rate limit."""
        gap_s = self.s.clock.to_real(2.0 / self.s.market.max_client_messages_per_second)
        for method, streams in (("UNSUBSCRIBE", remove), ("SUBSCRIBE", add)):
            ordered = sorted(streams)
            for i in range(0, len(ordered), 100):
                await self.send_control(conn, method, ordered[i : i + 100])
                if method == "SUBSCRIBE":
                    conn.streams.update(ordered[i : i + 100])
                else:
                    conn.streams.difference_update(ordered[i : i + 100])
                await trio.sleep(gap_s)

    async def accepts(self, streams: Iterable[str]) -> bool:
        """Whether the exchange accepts a connection with ``streams`` (a trial handshake).

        Raises:
            WsDisconnected: the trial failed for another reason than a refusal.
        """
        url = self.s.ws_url + ws_path(self.s.market, sorted(streams))
        self.stats.trial_connects += 1
        try:
            with trio.fail_after(self.s.connect_timeout_s):
                status = await handshake_status(url)
        except trio.TooSlowError as exc:
            raise WsDisconnected(f"trial connect: no answer: {exc!r}") from exc
        if status == 400:
            return False
        if status != ACCEPTED:
            raise WsDisconnected(f"trial connect: HTTP {status}")
        return True

    async def refused_among(self, streams: list[str]) -> list[str]:
        """The refused streams among ``streams``, all of which together were refused."""
        if len(streams) == 1:
            return streams
        half = len(streams) // 2
        refused: list[str] = []
        for part in (streams[:half], streams[half:]):
            if not await self.accepts(part):
                refused += await self.refused_among(part)
        return refused

    async def isolate(self, slot: _Slot, streams: set[str]) -> None:
        """Find which of ``streams`` (refused together) the exchange refuses; leave their
        symbols out of every connection and tell the dispatcher.

        Raises:
            WsDisconnected: no single stream is refused (a transient failure): back off.
        """
        refused = await self.refused_among(sorted(streams))
        if not await self.refuse(slot, refused):
            raise WsDisconnected(f"slot {slot.index}: refused, but every part was accepted")

    async def refuse(self, slot: _Slot, streams: Iterable[str]) -> bool:
        """Leave the symbols of ``streams`` (refused by the exchange) out of every connection
        and tell the dispatcher; whether there were any."""
        names = {kline_stream_name(s, self.s.interval): s for s in slot.desired}
        symbols = frozenset(names[n] for n in streams if n in names)
        if not symbols:
            return False
        self.stats.refused.update(symbols)
        log.warning(
            "slot %d: the exchange refuses to stream %s: recorded over REST instead",
            slot.index,
            sorted(symbols),
        )
        await self.inbox.send(StreamsRefused(symbols=symbols))
        return True

    async def split_refused(self, slot: _Slot, conn: _Conn, streams: set[str]) -> None:
        """SUBSCRIBE requests refused as a whole: a single stream is the refused one, larger
        requests are sent again in halves (the refused stream is found in log2(n) rounds)."""
        batches, conn.sub_refused = conn.sub_refused, []
        gap_s = self.s.clock.to_real(2.0 / self.s.market.max_client_messages_per_second)
        for batch in batches:
            wanted = [s for s in batch if s in streams]
            if len(wanted) == 1:
                await self.refuse(slot, wanted)
                continue
            half = len(wanted) // 2
            for part in (wanted[:half], wanted[half:]):
                if part:
                    await self.send_control(conn, "SUBSCRIBE", part)
                    conn.streams.update(part)
                    await trio.sleep(gap_s)

    def why_replace(self, conn: _Conn) -> str | None:
        if self.s.clock.now_ms() - conn.opened_ms >= self.s.max_age_s * 1000:
            return "age"
        probe = conn.probe_sent
        if probe is not None and trio.current_time() - probe > self.s.probe_timeout_s:
            return "silent"
        return None

    def replaced(self, slot: _Slot, why: str) -> None:
        self.stats.replaced[why] = self.stats.replaced.get(why, 0) + 1
        if self.metrics is not None:
            self.metrics.reconnected()
        if self.on_reconnect is not None and why != "age":
            # the 24 h cut is routine; drops and silences are what an operator should hear of
            self.on_reconnect(f"WebSocket connection {slot.index} replaced ({why})")
        log.info("slot %d: replacing connection (%s)", slot.index, why)

    async def isolated(self, slot: _Slot, streams: set[str], backoff: float) -> bool:
        """:meth:`isolate`; True when it failed and the caller should back off (it waited)."""
        if not streams:
            return False
        try:
            await self.isolate(slot, streams)
        except WsDisconnected as exc:
            log.warning("%s; retrying in %.2f s", exc, backoff)
            await trio.sleep(backoff)
            return True
        return False

    async def run_slot(
        self, slot: _Slot, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep one connection streaming ``slot.desired`` for as long as it is cancelled."""
        started = False
        backoff = 0.05
        conn: _Conn | None = None
        async with trio.open_nursery() as nursery:
            while True:
                slot.wake = trio.Event()
                streams = self.streams(slot.desired)
                if conn is not None and conn.closed.is_set():
                    self.replaced(slot, "dropped")
                    conn = None
                if not streams:
                    if conn is not None:
                        conn.scope.cancel()
                        conn = None
                    if not started:
                        task_status.started()
                        started = True
                    await slot.wake.wait()
                    continue
                if conn is None:
                    try:
                        conn = await self.open(nursery, slot, streams)
                    except WsStreamsRefused:
                        if await self.isolated(slot, streams, backoff):
                            backoff = min(backoff * 2, 5.0)
                            if not started:  # as below: REST covers the meantime
                                task_status.started()
                                started = True
                        continue
                    except WsDisconnected as exc:
                        log.warning("%s; retrying in %.2f s", exc, backoff)
                        if not started:
                            # do not hold the start (and the REST backfill) hostage to the
                            # stream: the deadlines fetch over REST until it connects
                            task_status.started()
                            started = True
                        await trio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                    backoff = 0.05
                    if not started:
                        task_status.started()
                        started = True
                    continue
                why = self.why_replace(conn)
                if why is not None:
                    try:
                        new = await self.open(nursery, slot, streams)
                    except WsStreamsRefused:
                        if await self.isolated(slot, streams, backoff):
                            backoff = min(backoff * 2, 5.0)
                        continue
                    except WsDisconnected as exc:
                        log.warning("%s (replacing after %s)", exc, why)
                        await trio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                    self.replaced(slot, why)
                    conn.scope.cancel()
                    conn = new
                    continue
                if conn.dropped:
                    dropped, conn.dropped = conn.dropped, set()
                    await self.refuse(slot, dropped & streams)
                    continue
                if conn.sub_refused:
                    try:
                        await self.split_refused(slot, conn, streams)
                    except WsDisconnected as exc:
                        log.info("slot %d: %s", slot.index, exc)
                    continue
                try:
                    add, remove = streams - conn.streams, conn.streams - streams
                    if add or remove:
                        await self.resubscribe(conn, add, remove)
                        continue
                    idle = trio.current_time() - conn.last_frame
                    if conn.probe_sent is None and idle > self.s.probe_after_s:
                        conn.probe_sent = trio.current_time()
                        await self.send_control(conn, "LIST_SUBSCRIPTIONS", None)
                except WsDisconnected as exc:
                    log.info("slot %d: %s", slot.index, exc)
                    conn.scope.cancel()
                    continue
                with trio.move_on_after(self.s.tick_s):
                    await slot.wake.wait()


async def run_ws_listeners(
    *,
    settings: WsSettings,
    symbols: frozenset[str],
    commands: trio.MemoryReceiveChannel[SetSymbols],
    inbox: trio.MemorySendChannel[Inbox],
    stats: ListenerStats | None = None,
    metrics: Metrics | None = None,
    on_reconnect: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Stream closed klines of ``symbols`` (then of each :class:`SetSymbols`) to ``inbox``.

    Ready (``task_status.started()``) once every initial connection is open and subscribed,
    so the caller can start the REST backfill knowing the stream already overlaps it (or once
    a connection's first attempt failed: it keeps retrying, and REST covers the meantime).

    Channels:
        receives :class:`SetSymbols` on ``commands``; sends :class:`Klines` on ``inbox``, which
        it closes on exit.

    Cancellation:
        cancels every connection (each closed with a bounded, shielded close).
    """
    stats = stats if stats is not None else ListenerStats()
    plan = StreamPlan(cap=settings.market.max_streams_per_connection, floor=settings.floor)
    plan.update(symbols)
    with inbox, commands:
        listener = _Listener(settings, inbox, stats, metrics, on_reconnect)
        slots: list[_Slot] = []
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as starting:
                for index, members in enumerate(plan.slots):
                    slot = _Slot(index=index, desired=set(members))
                    slots.append(slot)
                    starting.start_soon(nursery.start, listener.run_slot, slot)
            log.info(
                "listening on %d connections for %d symbols",
                sum(1 for s in slots if s.desired),
                len(symbols),
            )
            task_status.started()
            async for command in commands:
                changed = plan.update(command.symbols)
                for index in sorted(changed):
                    if index >= len(slots):
                        slot = _Slot(index=index, desired=set(plan.slots[index]))
                        slots.append(slot)
                        await nursery.start(listener.run_slot, slot)
                    else:
                        slots[index].desired = set(plan.slots[index])
                        slots[index].poke()
                if changed:
                    log.info("streams changed on slots %s", sorted(changed))
            nursery.cancel_scope.cancel()
