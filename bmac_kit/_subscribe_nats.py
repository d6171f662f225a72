"""``bmac_kit.subscribe("nats://…")``: the same live API as the ZeroMQ bus, from JetStream.

The stream holds the recorder's rolling window (docs/nats.md), so the window is filled from the
stream itself: every message up to the stream's last sequence at subscribe time is history
(applied to the window, no callbacks, no periods); everything after is live and goes through
the same :class:`~bmac_kit._subscribe.Market` machinery as ZeroMQ messages (candle callbacks,
``periods()``, the lazily advanced window). No heal is ever needed: JetStream stores every
message and the ordered consumer re-creates itself from the last sequence it delivered, so a
gap cannot happen — a restarted recorder's new epoch is not a loss here.

nats-py is asyncio: under asyncio it is called directly; under trio it runs on its own loop in
a thread (:class:`bmac_trio.bus.aio_bridge.AsyncioThread`), as in the recorder.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import anyio
import sniffio

from bmac_kit._subscribe import Market, _Source
from bmac_kit.window import MarketWindow
from bmac_trio.bus import messages as bus, nats_codec as codec
from bmac_trio.bus.nats_link import JetStreamLink, Received, StreamSettings
from bmac_trio.errors import BusUnavailable, ConfigError, ProtocolError

__all__ = ["is_nats_url", "subscribe_nats"]

LOGGER = logging.getLogger("bmac_kit.subscribe")
T = TypeVar("T")
#: Messages taken from the consumer at once.
BATCH = 5000
#: The live bus's kinds (the others on the stream are for followers).
_BUS_KINDS = frozenset({"candle", "candles", "period", "symbols", "heartbeat"})


def is_nats_url(text: str) -> bool:
    return text.startswith(("nats://", "tls://"))


class _AsyncioCaller:
    """Runs nats-py coroutines: directly under asyncio, on a private loop under trio."""

    def __init__(self) -> None:
        self._thread: Any = None

    async def __aenter__(self) -> _AsyncioCaller:
        if sniffio.current_async_library() == "trio":
            from bmac_trio.bus.aio_bridge import AsyncioThread

            self._thread = await AsyncioThread("bmac-kit-nats").__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._thread is not None:
            await self._thread.__aexit__(*exc)

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._thread is not None:
            return await self._thread.run(fn, *args)
        return await fn(*args)


class NatsMarket(Market):
    """A :class:`Market` fed by a JetStream ordered consumer."""

    def __init__(self, url: str, link: JetStreamLink, caller: _AsyncioCaller) -> None:
        super().__init__(_Source(url, None), None, None)  # type: ignore[arg-type]
        self._link = link
        self._caller = caller
        self._sub: Any = None
        self.last_seq = 0

    def _track(self, header: bus.Header) -> None:
        # JetStream is lossless and ordered: a sequence gap or a new epoch loses nothing
        if self.epoch is not None and header.epoch != self.epoch:
            self.stats.epochs += 1
        self.epoch = header.epoch
        self.stats.last_header = header

    async def _take(self) -> list[Received]:
        return await self._caller.run(self._link.take, self._sub, BATCH, 1.0)

    async def _fill(self) -> None:
        """Connect, read the meta, build the window from the stream's history."""
        link = self._link
        await self._caller.run(link.connect, 2.0, "bmac_kit")
        if not link.settings.prefix:
            subjects = await self._caller.run(link.describe, link.settings.name)
            prefix = subjects[0].removesuffix(".>") if subjects else ""
            link.settings = StreamSettings(name=link.settings.name, prefix=prefix, max_age_s=1)
        meta = await self._caller.run(link.last_of, "meta")
        if meta is None:
            raise BusUnavailable(f"stream {link.settings.name} holds no meta message yet")
        info = codec.decode("meta", meta.headers, meta.body).value
        self._set_interval(info["interval"])
        window = MarketWindow(int(info.get("num_candles") or 1500), self.interval)
        end = (await self._caller.run(link.stream_state))["last_seq"]
        self._sub = await self._caller.run(link.subscribe_from, 1)
        while self.last_seq < end:
            batch = await self._take()
            history = [r for r in batch if r.seq <= end]
            frames = []
            for received in history:
                body = self._decode(received).value
                if isinstance(body, bus.CandleEvent):
                    self._pending.append(body)
                elif isinstance(body, bus.CandlesReply):
                    frames.append(body.candles)
                elif isinstance(body, bus.PeriodEvent):
                    self._last_period_ms = max(self._last_period_ms or 0, body.run_time_ms)
            self._pending_frames.extend(frames)
            self._window = window
            self._flush()
            self.last_seq = history[-1].seq if history else end
            self._handle([r for r in batch if r.seq > end])  # the first live ones
        self._window = window
        # JetStream never needs a heal: keep no live frames for one to replay (the history's
        # frames went through _flush above)
        self._recent = deque([[]], maxlen=1)
        self._first_message.set()

    def _decode(self, received: Received) -> codec.Decoded:
        try:
            decoded = codec.decode(received.suffix, received.headers, received.body)
        except ProtocolError as exc:
            self.stats.bad += 1
            LOGGER.warning("bad NATS message %d dropped: %s", received.seq, exc)
            return codec.Decoded("bad", None)
        header = (received.headers or {}).get(codec.HEADER)
        if header is not None:
            self._track(bus.Header.from_bytes(header.encode()))
        return decoded

    def _handle(self, batch: list[Received]) -> None:
        for received in batch:
            self.last_seq = received.seq
            decoded = self._decode(received)
            if decoded.kind not in _BUS_KINDS:
                continue  # meta, exginfo, retired: for followers
            body = decoded.value
            self.stats.messages += 1
            if isinstance(body, bus.CandleEvent):
                self.stats.candles += 1
                self._pending.append(body)
                for symbol, callback in self._callbacks:
                    if symbol is None or symbol == body.candle.symbol:
                        callback(body)
            elif isinstance(body, bus.CandlesReply):
                self._pending_frames.append(body.candles)
            elif isinstance(body, bus.PeriodEvent):
                self._on_period(body)
            elif isinstance(body, bus.SymbolsEvent):
                self._flush()
                self._forget(body.delisted)

    async def _receive(self) -> None:
        while True:
            self._handle(await self._take())

    async def request(self, request: Any) -> Any:
        raise ConfigError("a NATS subscription has no request socket: the stream holds the window")


def _target(url: str) -> tuple[list[str], str, str]:
    """``nats://h1:4222,nats://h2:4222?stream=NAME&prefix=P`` → servers, stream, prefix."""
    base, _, query = url.partition("?")
    params = parse_qs(query)
    servers = [u.strip() for u in base.split(",") if u.strip()]
    for server in servers:
        parts = urlsplit(server)
        if not is_nats_url(server) or not parts.hostname:
            raise ConfigError(f"{server!r} is not nats://host:port")
    return servers, params.get("stream", [""])[0], params.get("prefix", [""])[0]


@asynccontextmanager
async def subscribe_nats(url: str) -> AsyncIterator[Market]:
    """See the module doc; ``url`` may name the stream: ``nats://host:4222?stream=NAME``
    (default: the only ``BMAC_*`` stream on the server)."""
    servers, stream, prefix = _target(url)
    async with _AsyncioCaller() as caller:
        link = JetStreamLink(servers, StreamSettings(name=stream, prefix=prefix, max_age_s=1.0))
        try:
            if not stream:
                await caller.run(link.connect, 2.0, "bmac_kit")
                names = [n for n in await caller.run(link.stream_names) if n.startswith("BMAC_")]
                if len(names) != 1:
                    raise ConfigError(f"{len(names)} BMAC_ streams ({names}): add ?stream=NAME")
                link.settings = StreamSettings(name=names[0], prefix="", max_age_s=1.0)
                await caller.run(link.close)
                link.nc = None
            market = NatsMarket(url, link, caller)
            await market._fill()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(market._receive)
                yield market
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await caller.run(link.close)
