"""The asyncio side of NATS: one nats-py connection and the JetStream calls bmac-trio makes.

Every coroutine here runs on the :class:`~.aio_bridge.AsyncioThread` loop; the trio side calls
them through ``AsyncioThread.run``. nats-py's errors are translated into
:class:`~bmac_trio.errors.BusUnavailable` here, at the adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.header
import logging
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from bmac_trio.errors import BusUnavailable

__all__ = ["JetStreamLink", "Received", "StreamSettings", "text_headers"]

log = logging.getLogger("bmac_trio.nats")

#: Real seconds between reconnect attempts (nats-py retries for ever in the background).
RECONNECT_WAIT_S = 0.5
#: Messages in flight (published, ack not yet back) in one batch.
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    """The stream the market lives in."""

    name: str
    prefix: str
    max_age_s: float
    replicas: int = 1
    duplicate_window_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class Received:
    """One stored message: subject below the prefix, headers, body, stream sequence."""

    suffix: str
    headers: dict[str, str] | None
    body: bytes
    seq: int


def text_headers(headers: dict[str, Any] | None) -> dict[str, str] | None:
    """Headers as text, whichever nats-py call read them.

    The stream-message API (``get_last_msg``) parses headers with ``email``'s parser, which
    hands a non-ASCII value (``Nats-Msg-Id: candle.币安人生USDT.…``) back as an
    ``email.header.Header`` of unknown 8-bit bytes instead of a ``str``; they are UTF-8.
    """
    if headers is None:
        return None
    out: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(value, str):
            raw = b"".join(
                part if isinstance(part, bytes) else part.encode()
                for part, _ in email.header.decode_header(value)
            )
            value = raw.decode("utf-8", errors="replace")
        out[key] = value
    return out


def _candle_open(headers: dict[str, Any] | None) -> int | None:
    """The open time in a candle message's id (``candle.<SYMBOL>.<open_ms>``)."""
    msg_id = (text_headers(headers) or {}).get("Nats-Msg-Id", "")
    return int(msg_id.rsplit(".", 1)[1]) if msg_id.count(".") == 2 else None


def _why(exc: BaseException) -> str:
    """An error as a person reads it (nats-py's API errors carry the server's description)."""
    description = getattr(exc, "description", None)
    code = getattr(exc, "err_code", None)
    if description:
        return f"{type(exc).__name__}: {description}" + (f" (err_code {code})" if code else "")
    return repr(exc)


class JetStreamLink:
    """A connection to a NATS server (or cluster) and its JetStream context.

    ``connected`` follows the client's disconnect / reconnect callbacks (read from any thread).
    """

    def __init__(self, servers: list[str] | tuple[str, ...], settings: StreamSettings) -> None:
        self.servers = list(servers)
        self.settings = settings
        self.nc: Any = None
        self.js: Any = None
        self.connected = False
        self.last_error: str | None = None

    # --- connection ---------------------------------------------------------------------------

    async def connect(self, timeout_s: float = 2.0, name: str = "bmac-trio") -> None:
        """Connect (one attempt at each server); reconnects later happen in the background."""

        async def on_disconnect() -> None:
            self.connected = False

        async def on_reconnect() -> None:
            self.connected = True

        async def on_error(exc: Exception) -> None:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.debug("nats: %s", self.last_error)

        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    self.servers,
                    name=name,
                    connect_timeout=max(1, int(timeout_s)),
                    reconnect_time_wait=RECONNECT_WAIT_S,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                    error_cb=on_error,
                    ping_interval=5,
                    max_outstanding_pings=2,
                ),
                timeout_s * len(self.servers) + 1.0,
            )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise BusUnavailable(f"cannot connect to NATS {self.servers}: {_why(exc)}") from None
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout_s)
        self.connected = True

    async def close(self) -> None:
        """Flush what is buffered (briefly) and close."""
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 2.0)
            with contextlib.suppress(Exception):
                await self.nc.close()
        self.connected = False

    # --- the stream ---------------------------------------------------------------------------

    async def ensure_stream(self) -> dict[str, Any]:
        """Create the stream if missing; widen its retention if it keeps less than needed."""
        s = self.settings
        config = api.StreamConfig(
            name=s.name,
            subjects=[f"{s.prefix}.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            max_age=s.max_age_s,
            num_replicas=s.replicas,
            duplicate_window=min(s.duplicate_window_s, s.max_age_s),
            allow_direct=True,
        )
        try:
            try:
                info = await self.js.stream_info(s.name)
            except nats.js.errors.NotFoundError:
                info = await self.js.add_stream(config)
                log.info("created JetStream stream %s on %s.>", s.name, s.prefix)
            else:
                kept = info.config.max_age or 0
                if 0 < kept < s.max_age_s:
                    info.config.max_age = s.max_age_s
                    info = await self.js.update_stream(info.config)
                    log.info("stream %s now keeps %.0f s", s.name, s.max_age_s)
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"JetStream stream {s.name}: {_why(exc)}") from None
        return {"messages": info.state.messages, "last_seq": info.state.last_seq}

    async def stream_names(self) -> list[str]:
        """Every stream on the server."""
        try:
            return [info.config.name for info in await self.js.streams_info()]
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"cannot list streams: {_why(exc)}") from None

    async def describe(self, name: str) -> list[str]:
        """The subjects of stream ``name``."""
        try:
            info = await self.js.stream_info(name)
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"stream {name}: {_why(exc)}") from None
        return list(info.config.subjects or [])

    async def last_of(self, suffix: str) -> Received | None:
        """The newest message on ``<prefix>.<suffix>``, or None."""
        try:
            msg = await self.js.get_last_msg(self.settings.name, f"{self.settings.prefix}.{suffix}")
        except nats.js.errors.NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"last {suffix} message: {_why(exc)}") from None
        return Received(suffix, text_headers(msg.headers), msg.data or b"", msg.seq)

    async def last_opens(self, symbols: list[str]) -> dict[str, int | None]:
        """The open time of each symbol's newest candle in the stream (None: none there)."""
        out: dict[str, int | None] = {}
        prefix = self.settings.prefix
        for symbol in symbols:
            try:
                msg = await self.js.get_last_msg(self.settings.name, f"{prefix}.candle.{symbol}")
            except nats.js.errors.NotFoundError:
                out[symbol] = None
                continue
            except (TimeoutError, nats.errors.Error) as exc:
                raise BusUnavailable(f"last candle of {symbol}: {_why(exc)}") from None
            out[symbol] = _candle_open(msg.headers)
        return out

    async def candle_counts(self) -> dict[str, int]:
        """How many candle messages the stream holds per symbol (one request)."""
        prefix = f"{self.settings.prefix}.candle."
        try:
            info = await self.js.stream_info(self.settings.name, subjects_filter=f"{prefix}>")
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"stream {self.settings.name}: {_why(exc)}") from None
        subjects = info.state.subjects or {}
        return {subject[len(prefix) :]: count for subject, count in subjects.items()}

    async def candle_opens(self, symbol: str, timeout_s: float = 5.0) -> set[int]:
        """The open time of every candle of ``symbol`` in the stream: its messages' headers
        through an ordered consumer (bodies left on the server)."""
        config = api.ConsumerConfig(headers_only=True, deliver_policy=api.DeliverPolicy.ALL)
        opens: set[int] = set()
        try:
            sub = await self.js.subscribe(
                f"{self.settings.prefix}.candle.{symbol}",
                stream=self.settings.name,
                ordered_consumer=True,
                config=config,
            )
            try:
                while True:
                    msg = await sub.next_msg(timeout=timeout_s)
                    open_ms = _candle_open(msg.headers)
                    if open_ms is not None:
                        opens.add(open_ms)
                    if not msg.metadata.num_pending:
                        return opens
            finally:
                await sub.unsubscribe()
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"candles of {symbol}: {_why(exc)}") from None

    # --- publishing ---------------------------------------------------------------------------

    async def publish_batch(
        self, messages: list[tuple[str, bytes, dict[str, str]]], timeout_s: float
    ) -> tuple[int, str | None]:
        """Publish in order, pipelined; returns how many, from the first, were stored (acked),
        and the error that stopped the rest (None when all were)."""
        prefix = self.settings.prefix
        futures: list[asyncio.Future[Any]] = []
        error: str | None = None
        try:
            for suffix, body, headers in messages:
                futures.append(
                    await self.js.publish_async(
                        f"{prefix}.{suffix}", body, headers=headers, wait_stall=timeout_s
                    )
                )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            error = f"publish: {_why(exc)}"
        stored = 0
        if futures:
            done, _ = await asyncio.wait(futures, timeout=timeout_s)
            for future in futures:
                if future not in done or future.cancelled():
                    error = error or f"no JetStream ack within {timeout_s:g} s"
                    break
                exc = future.exception()
                if exc is not None:
                    error = error or f"JetStream refused: {_why(exc)}"
                    break
                stored += 1
            for future in futures:
                future.cancel()
        return stored, error

    # --- consuming ----------------------------------------------------------------------------

    async def subscribe_from(self, start_seq: int, heartbeat_s: float = 1.0) -> Any:
        """An ordered consumer of the whole prefix from stream sequence ``start_seq`` (1 = all).

        The ordered consumer re-creates itself from the last sequence it delivered when the
        server holding it goes away (a cluster node killed), so nothing is skipped.
        """
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start_seq),
        )
        try:
            return await self.js.subscribe(
                f"{self.settings.prefix}.>",
                stream=self.settings.name,
                ordered_consumer=True,
                idle_heartbeat=heartbeat_s,
                config=config,
            )
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"cannot consume {self.settings.name}: {_why(exc)}") from None

    async def take(self, sub: Any, max_n: int, timeout_s: float) -> list[Received]:
        """Up to ``max_n`` messages: waits ``timeout_s`` for the first; then takes what has
        arrived, and keeps waiting while the server reports more pending (a catch-up)."""
        cut = len(self.settings.prefix) + 1
        out: list[Received] = []
        try:
            msg = await sub.next_msg(timeout=timeout_s)
        except nats.errors.TimeoutError:
            return out
        except nats.errors.Error as exc:
            raise BusUnavailable(f"consuming {self.settings.name}: {_why(exc)}") from None
        while True:
            meta = msg.metadata
            out.append(
                Received(
                    msg.subject[cut:], text_headers(msg.headers), msg.data, meta.sequence.stream
                )
            )
            if len(out) >= max_n:
                return out
            # catching up (the server says more are pending): fill the batch, so that each
            # symbol's file is written once per batch and not once per flow-control window
            more = bool(meta.num_pending)
            if not more and sub._pending_queue.empty():
                return out
            try:
                msg = await sub.next_msg(timeout=timeout_s if more else 0.05)
            except nats.errors.TimeoutError:
                return out

    async def stream_state(self) -> dict[str, int]:
        """Messages, first and last sequence of the stream."""
        try:
            info = await self.js.stream_info(self.settings.name)
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"stream {self.settings.name}: {_why(exc)}") from None
        return {
            "messages": info.state.messages,
            "first_seq": info.state.first_seq,
            "last_seq": info.state.last_seq,
        }
