"""The live bus's wire format: topics, headers and bodies, pure (no transport, no I/O).

Every message is three byte strings ``[topic, header, body]``:

- ``topic``: UTF-8 (ASCII but for symbols such as ``币安人生USDT``), so a ZeroMQ subscriber
  filters by prefix: ``candle.<SYMBOL>``, ``period``,
  ``symbols``, ``heartbeat`` (and ``reply`` for answers of the request socket).
- ``header``: a JSON object (:class:`Header`): schema version ``v``, the publisher's ``epoch``
  (new at every start), ``seq`` (one counter over all topics of the epoch, from 1),
  ``topic_seq`` (one counter per topic, from 1, for subscribers that filter), ``kind``,
  ``sent_us`` (publisher's wall clock, epoch microseconds), ``body`` (``"json"`` or
  ``"arrow"``) and ``meta`` (small kind-specific fields, e.g. a period's run time).
- ``body``: JSON for small messages, an Arrow IPC *stream* (one record batch) for frames, with
  the columns of :data:`BUS_FRAME_SCHEMA` (``symbol`` + the candle file's columns).

The same encodings serve NATS JetStream (the header goes into a message header), so this module
stays stable: add fields, never rename them; a new meaning bumps :data:`SCHEMA_VERSION`.
``docs/bus.md`` is the reference for other languages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc

from bmac_trio.binance.candles import CANDLE_COLUMNS, CANDLE_SCHEMA, FLOAT_COLUMNS, Candle
from bmac_trio.binance.symbols import is_safe_symbol
from bmac_trio.errors import BusProtocolError

__all__ = [
    "BUS_FRAME_COLUMNS",
    "BUS_FRAME_SCHEMA",
    "SCHEMA_VERSION",
    "TOPIC_CANDLE_PREFIX",
    "TOPIC_HEARTBEAT",
    "TOPIC_PERIOD",
    "TOPIC_REPLY",
    "TOPIC_SYMBOLS",
    "BusMessage",
    "CandleEvent",
    "CandlesReply",
    "CandlesRequest",
    "ErrorReply",
    "Header",
    "Heartbeat",
    "LastPeriodRequest",
    "PeriodEvent",
    "Request",
    "Stamper",
    "SymbolsEvent",
    "candle_events_to_frame",
    "candle_msg_id",
    "candle_topic",
    "decode",
    "decode_body",
    "decode_request",
    "empty_frame",
    "encode_request",
    "frame_to_ipc",
    "ipc_to_frame",
    "message_id",
    "new_epoch",
    "period_msg_id",
]

#: Bumped when a field changes meaning; adding a field does not bump it.
SCHEMA_VERSION: Final = 1

TOPIC_CANDLE_PREFIX: Final = "candle."
TOPIC_PERIOD: Final = "period"
TOPIC_SYMBOLS: Final = "symbols"
TOPIC_HEARTBEAT: Final = "heartbeat"
#: Topic of the request socket's answers (never published).
TOPIC_REPLY: Final = "reply"

Kind = Literal["candle", "period", "symbols", "heartbeat", "candles", "error"]
BodyEncoding = Literal["json", "arrow"]
_KINDS: Final = frozenset({"candle", "period", "symbols", "heartbeat", "candles", "error"})
_BODY_OF_KIND: Final[dict[str, str]] = {
    "candle": "json",
    "period": "arrow",
    "symbols": "json",
    "heartbeat": "json",
    "candles": "arrow",
    "error": "json",
}

_TIME = pa.timestamp("ms", tz="UTC")
#: Columns of every Arrow body: the symbol, then exactly the candle file's columns.
BUS_FRAME_COLUMNS: Final = ("symbol", *CANDLE_COLUMNS)
#: The Arrow schema of every Arrow body (plain ``utf8`` strings and ``timestamp[ms, UTC]``, so
#: every Arrow implementation reads it).
BUS_FRAME_SCHEMA: Final = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("candle_begin_time", _TIME, nullable=False),
        pa.field("candle_end_time", _TIME, nullable=False),
        *(pa.field(name, pa.float64(), nullable=False) for name in FLOAT_COLUMNS),
    ]
)
_POLARS_SCHEMA: Final = pl.Schema({"symbol": pl.String} | dict(CANDLE_SCHEMA))


# --------------------------------------------------------------------------- ids and topics


def new_epoch() -> str:
    """A fresh publisher epoch: 32 random hex digits (compared for equality only)."""
    return os.urandom(16).hex()


def candle_topic(symbol: str) -> str:
    """The topic of ``symbol``'s closed candles."""
    return TOPIC_CANDLE_PREFIX + symbol


def candle_msg_id(symbol: str, open_ms: int, interval: str | None = None) -> str:
    """A de-duplication id of one closed candle, the same from every publisher and restart.

    For NATS JetStream's ``Nats-Msg-Id``: a restarted recorder re-publishing a candle sends the
    same id, so the stream keeps one copy. ``interval`` tells apart streams that mix intervals.
    """
    base = f"candle.{symbol}.{open_ms}"
    return base if interval is None else f"{interval}.{base}"


def period_msg_id(run_time_ms: int, interval: str | None = None) -> str:
    """A de-duplication id of one period (see :func:`candle_msg_id`)."""
    base = f"period.{run_time_ms}"
    return base if interval is None else f"{interval}.{base}"


# --------------------------------------------------------------------------- header


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """The header of every message (see the module doc for the fields)."""

    epoch: str
    seq: int
    topic_seq: int
    kind: Kind
    sent_us: int
    body: BodyEncoding
    meta: dict[str, Any] = field(default_factory=dict)
    v: int = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "v": self.v,
                "epoch": self.epoch,
                "seq": self.seq,
                "topic_seq": self.topic_seq,
                "kind": self.kind,
                "sent_us": self.sent_us,
                "body": self.body,
                "meta": self.meta,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        raw = _loads(data, "header")
        if not isinstance(raw, dict):
            raise BusProtocolError("header is not a JSON object")
        v = raw.get("v")
        if type(v) is not int or v < 1:
            raise BusProtocolError(f"header: bad schema version {v!r}")
        if v > SCHEMA_VERSION:
            raise BusProtocolError(
                f"header: schema version {v} is newer than this reader's {SCHEMA_VERSION}"
            )
        kind = raw.get("kind")
        if kind not in _KINDS:
            raise BusProtocolError(f"header: unknown kind {kind!r}")
        body = raw.get("body")
        if body != _BODY_OF_KIND[kind]:
            raise BusProtocolError(f"header: a {kind} message has a {body!r} body")
        epoch = raw.get("epoch")
        if not isinstance(epoch, str) or not 0 < len(epoch) <= 64:
            raise BusProtocolError(f"header: bad epoch {epoch!r}")
        meta = raw.get("meta", {})
        if not isinstance(meta, dict):
            raise BusProtocolError("header: meta is not an object")
        return cls(
            v=v,
            epoch=epoch,
            seq=_nonneg(raw.get("seq"), "header seq"),
            topic_seq=_nonneg(raw.get("topic_seq"), "header topic_seq"),
            kind=kind,
            sent_us=_nonneg(raw.get("sent_us"), "header sent_us"),
            body=body,
            meta=meta,
        )


@dataclass(frozen=True, slots=True)
class BusMessage:
    """One message as received: the topic, its decoded header and the raw body."""

    topic: str
    header: Header
    body: bytes

    def frames(self) -> list[bytes]:
        """The three frames to send."""
        return [self.topic.encode(), self.header.to_bytes(), self.body]


def decode(frames: Sequence[bytes | memoryview]) -> BusMessage:
    """Three received frames as a :class:`BusMessage` (body left encoded).

    Raises:
        BusProtocolError: not three frames, a topic that is not UTF-8, or a bad header.
    """
    if len(frames) != 3:
        raise BusProtocolError(f"a bus message has 3 frames, got {len(frames)}")
    topic_raw, header_raw, body = (bytes(f) for f in frames)
    try:
        topic = topic_raw.decode()
    except UnicodeDecodeError:
        raise BusProtocolError("topic is not UTF-8") from None
    return BusMessage(topic, Header.from_bytes(header_raw), body)


# --------------------------------------------------------------------------- bodies


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleEvent:
    """A closed candle the recorder accepted (topic ``candle.<SYMBOL>``).

    ``received_us`` is when the recorder received it (its wall clock, epoch µs), for latency.
    """

    candle: Candle
    end_ms: int
    source: str
    received_us: int | None = None

    @property
    def symbol(self) -> str:
        return self.candle.symbol

    def to_frame(self) -> pl.DataFrame:
        """The candle as a one-row frame with ``symbol`` + :data:`CANDLE_SCHEMA`."""
        return candle_events_to_frame([self])


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodEvent:
    """A period complete (topic ``period``), or the last period (a request's answer).

    ``candles`` holds every ready symbol's candle of the period (opening at
    ``run_time_ms - interval``) as ``symbol`` + :data:`CANDLE_SCHEMA`. ``complete`` is false
    when the period was reported at its deadline with symbols missing. ``last_received_us`` is
    when the recorder received the period's last closing candle (its wall clock, epoch µs).
    ``on_disk`` tells the two announcements of a period apart (see the field).
    """

    run_time_ms: int
    interval: str
    ready: tuple[str, ...]
    missing: tuple[str, ...]
    complete: bool
    lag_ms: float | None
    candles: pl.DataFrame
    last_received_us: int | None = None
    #: False: announced the moment every expected symbol's candle was accepted, before the
    #: writes landed (a second ``period`` message follows once it is complete on disk).
    on_disk: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolsEvent:
    """The recorded selection changed (topic ``symbols``): all symbols now, and the change."""

    symbols: tuple[str, ...]
    listed: tuple[str, ...]
    delisted: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Sent every second (topic ``heartbeat``), so silence means a dead publisher."""

    market: str
    interval: str
    symbols: int
    last_run_time_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CandlesReply:
    """The request socket's answer to :class:`CandlesRequest`: candles sorted by symbol, time."""

    candles: pl.DataFrame


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReply:
    """The request socket could not answer."""

    error: str


Body = CandleEvent | PeriodEvent | SymbolsEvent | Heartbeat | CandlesReply | ErrorReply


def decode_body(message: BusMessage) -> Body:
    """The typed body of ``message``, by its header's kind.

    Raises:
        BusProtocolError: the body does not match the kind.
    """
    kind = message.header.kind
    meta = message.header.meta
    if kind == "candle":
        return _decode_candle(message.body)
    if kind == "period":
        return _decode_period(meta, message.body)
    if kind == "candles":
        return CandlesReply(candles=ipc_to_frame(message.body))
    raw = _loads(message.body, f"{kind} body")
    if not isinstance(raw, dict):
        raise BusProtocolError(f"{kind} body is not a JSON object")
    if kind == "symbols":
        return SymbolsEvent(
            symbols=_symbols(raw.get("symbols"), "symbols"),
            listed=_symbols(raw.get("listed"), "listed"),
            delisted=_symbols(raw.get("delisted"), "delisted"),
        )
    if kind == "heartbeat":
        last = raw.get("last_run_time_ms")
        return Heartbeat(
            market=_text(raw.get("market"), "heartbeat market"),
            interval=_text(raw.get("interval"), "heartbeat interval"),
            symbols=_nonneg(raw.get("symbols"), "heartbeat symbols"),
            last_run_time_ms=None if last is None else _nonneg(last, "last_run_time_ms"),
        )
    return ErrorReply(error=_text(raw.get("error"), "error"))


def _candle_body(event: CandleEvent) -> bytes:
    c = event.candle
    data: dict[str, Any] = {
        "symbol": c.symbol,
        "candle_begin_time": c.open_ms,
        "candle_end_time": event.end_ms,
    }
    for name in FLOAT_COLUMNS:
        data[name] = getattr(c, name)
    data["source"] = event.source
    data["received_us"] = event.received_us
    return orjson.dumps(data)


def _decode_candle(body: bytes) -> CandleEvent:
    raw = _loads(body, "candle body")
    if not isinstance(raw, dict):
        raise BusProtocolError("candle body is not a JSON object")
    symbol = raw.get("symbol")
    if not is_safe_symbol(symbol):
        raise BusProtocolError(f"candle body: bad symbol {symbol!r}")
    floats = {}
    for name in FLOAT_COLUMNS:
        value = raw.get(name)
        if type(value) not in (int, float):
            raise BusProtocolError(f"candle body: {name} is not a number: {value!r}")
        floats[name] = float(value)
    received = raw.get("received_us")
    source = raw.get("source", "")
    return CandleEvent(
        candle=Candle(
            symbol=symbol,  # type: ignore[arg-type]  # checked by is_safe_symbol
            open_ms=_nonneg(raw.get("candle_begin_time"), "candle_begin_time"),
            **floats,
        ),
        end_ms=_nonneg(raw.get("candle_end_time"), "candle_end_time"),
        source=source if isinstance(source, str) else "",
        received_us=None if received is None else _nonneg(received, "received_us"),
    )


def _period_meta(event: PeriodEvent) -> dict[str, Any]:
    return {
        "run_time_ms": event.run_time_ms,
        "interval": event.interval,
        "ready": list(event.ready),
        "missing": list(event.missing),
        "complete": event.complete,
        "lag_ms": event.lag_ms,
        "last_received_us": event.last_received_us,
        "on_disk": event.on_disk,
    }


def _decode_period(meta: dict[str, Any], body: bytes) -> PeriodEvent:
    lag = meta.get("lag_ms")
    if lag is not None and type(lag) not in (int, float):
        raise BusProtocolError(f"period: bad lag_ms {lag!r}")
    received = meta.get("last_received_us")
    complete = meta.get("complete")
    if type(complete) is not bool:
        raise BusProtocolError(f"period: bad complete {complete!r}")
    return PeriodEvent(
        run_time_ms=_nonneg(meta.get("run_time_ms"), "period run_time_ms"),
        interval=_text(meta.get("interval"), "period interval"),
        ready=_symbols(meta.get("ready"), "period ready"),
        missing=_symbols(meta.get("missing"), "period missing"),
        complete=complete,
        lag_ms=None if lag is None else float(lag),
        candles=ipc_to_frame(body),
        last_received_us=None if received is None else _nonneg(received, "last_received_us"),
        on_disk=meta.get("on_disk", True) is not False,
    )


# --------------------------------------------------------------------------- Arrow frames


def candle_events_to_frame(events: Iterable[CandleEvent]) -> pl.DataFrame:
    """Candle events as one frame with ``symbol`` + :data:`CANDLE_SCHEMA` (in the given order)."""
    events = list(events)
    columns: dict[str, list[Any]] = {
        "symbol": [e.candle.symbol for e in events],
        "candle_begin_time": [e.candle.open_ms for e in events],
        "candle_end_time": [e.end_ms for e in events],
    }
    for name in FLOAT_COLUMNS:
        columns[name] = [getattr(e.candle, name) for e in events]
    return _from_columns(columns)


def _from_columns(columns: dict[str, list[Any]]) -> pl.DataFrame:
    """Series by Series: a ``with_columns`` cast is a query through polars' engine, whose
    threads are slow to wake on a busy machine (the subscriber builds one per batch)."""
    times = [
        pl.Series(name, columns[name], dtype=pl.Int64).cast(CANDLE_SCHEMA[name])
        for name in ("candle_begin_time", "candle_end_time")
    ]
    floats = [pl.Series(name, columns[name], dtype=pl.Float64) for name in FLOAT_COLUMNS]
    return pl.DataFrame([pl.Series("symbol", columns["symbol"], dtype=pl.String), *times, *floats])


def empty_frame() -> pl.DataFrame:
    """A frame with no rows and the columns of every Arrow body."""
    return pl.DataFrame(schema=_POLARS_SCHEMA)


def frame_to_ipc(frame: pl.DataFrame) -> bytes:
    """``frame`` (``symbol`` + the candle columns) as Arrow IPC stream bytes, one record batch.

    Raises:
        ValueError: a column is missing or of another type.
    """
    if list(frame.columns) != list(BUS_FRAME_COLUMNS):
        frame = frame.select(BUS_FRAME_COLUMNS)
    if frame.schema != _POLARS_SCHEMA:
        raise ValueError(f"frame schema {frame.schema} is not the bus frame schema")
    table = frame.to_arrow().cast(BUS_FRAME_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa_ipc.new_stream(sink, BUS_FRAME_SCHEMA) as writer:
        writer.write_table(table, max_chunksize=max(len(frame), 1))
    return sink.getvalue().to_pybytes()


def ipc_to_frame(data: bytes | memoryview) -> pl.DataFrame:
    """Arrow IPC stream bytes as a frame with ``symbol`` + :data:`CANDLE_SCHEMA`.

    Raises:
        BusProtocolError: not an Arrow IPC stream, or other columns.
    """
    try:
        table = pa_ipc.open_stream(data).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise BusProtocolError(f"body is not an Arrow IPC stream ({exc})") from None
    if table.schema.names != list(BUS_FRAME_COLUMNS):
        raise BusProtocolError(f"Arrow body has columns {table.schema.names}")
    try:
        table = table.cast(BUS_FRAME_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BusProtocolError(f"Arrow body has other column types ({exc})") from None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


# --------------------------------------------------------------------------- the stamper


class Stamper:
    """Builds the publisher's messages: numbers them and stamps the header.

    A small pure state object: ``seq`` counts every message of the epoch, ``topic_seq`` each
    topic's. Replies of the request socket carry the current ``seq`` (the last one published)
    and ``topic_seq`` 0, so a subscriber knows how recent the answer is.
    """

    def __init__(self, epoch: str | None = None) -> None:
        self.epoch = epoch or new_epoch()
        self.seq = 0
        self._topic_seq: dict[str, int] = {}

    def _stamp(
        self, topic: str, kind: Kind, now_us: int, body: bytes, meta: dict[str, Any] | None = None
    ) -> BusMessage:
        self.seq += 1
        topic_seq = self._topic_seq.get(topic, 0) + 1
        self._topic_seq[topic] = topic_seq
        header = Header(
            epoch=self.epoch,
            seq=self.seq,
            topic_seq=topic_seq,
            kind=kind,
            sent_us=now_us,
            body=_BODY_OF_KIND[kind],  # type: ignore[arg-type]
            meta=meta or {},
        )
        return BusMessage(topic, header, body)

    def candle(self, event: CandleEvent, *, now_us: int) -> BusMessage:
        return self._stamp(candle_topic(event.candle.symbol), "candle", now_us, _candle_body(event))

    def candle_page(self, symbol: str, candles: pl.DataFrame, *, now_us: int) -> BusMessage:
        """Several closed candles of one symbol at once (a REST page), kind ``candles``, Arrow,
        on the symbol's candle topic."""
        return self._stamp(candle_topic(symbol), "candles", now_us, frame_to_ipc(candles))

    def period(self, event: PeriodEvent, *, now_us: int) -> BusMessage:
        body = frame_to_ipc(event.candles)
        return self._stamp(TOPIC_PERIOD, "period", now_us, body, _period_meta(event))

    def symbols(self, event: SymbolsEvent, *, now_us: int) -> BusMessage:
        body = orjson.dumps(
            {
                "symbols": list(event.symbols),
                "listed": list(event.listed),
                "delisted": list(event.delisted),
            }
        )
        return self._stamp(TOPIC_SYMBOLS, "symbols", now_us, body)

    def heartbeat(self, beat: Heartbeat, *, now_us: int) -> BusMessage:
        body = orjson.dumps(
            {
                "market": beat.market,
                "interval": beat.interval,
                "symbols": beat.symbols,
                "last_run_time_ms": beat.last_run_time_ms,
            }
        )
        return self._stamp(TOPIC_HEARTBEAT, "heartbeat", now_us, body)

    def _reply(
        self, kind: Kind, now_us: int, body: bytes, meta: dict[str, Any] | None = None
    ) -> BusMessage:
        header = Header(
            epoch=self.epoch,
            seq=self.seq,
            topic_seq=0,
            kind=kind,
            sent_us=now_us,
            body=_BODY_OF_KIND[kind],  # type: ignore[arg-type]
            meta=meta or {},
        )
        return BusMessage(TOPIC_REPLY, header, body)

    def reply_candles(self, candles: pl.DataFrame, *, now_us: int) -> BusMessage:
        return self._reply("candles", now_us, frame_to_ipc(candles))

    def reply_period(self, event: PeriodEvent, *, now_us: int) -> BusMessage:
        return self._reply("period", now_us, frame_to_ipc(event.candles), _period_meta(event))

    def reply_error(self, error: str, *, now_us: int) -> BusMessage:
        return self._reply("error", now_us, orjson.dumps({"error": error}))


def message_id(message: BusMessage, interval: str | None = None) -> str | None:
    """The de-duplication id of a published message, or None if it has none (heartbeat, ...).

    Candles and periods get ids that do not depend on the epoch (see :func:`candle_msg_id`).
    """
    kind = message.header.kind
    if kind == "candle" and message.topic.startswith(TOPIC_CANDLE_PREFIX):
        raw = _loads(message.body, "candle body")
        return candle_msg_id(
            message.topic[len(TOPIC_CANDLE_PREFIX) :], raw["candle_begin_time"], interval
        )
    if kind == "period":
        return period_msg_id(message.header.meta["run_time_ms"], interval)
    return None


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True, kw_only=True)
class CandlesRequest:
    """ "Candles of these symbols (None: all) whose ``candle_begin_time >= since_ms``"."""

    symbols: tuple[str, ...] | None
    since_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LastPeriodRequest:
    """ "The last period reported" (complete or at its deadline)."""


Request = CandlesRequest | LastPeriodRequest


def encode_request(request: Request) -> bytes:
    """A request to the publisher's request socket: one JSON frame."""
    if isinstance(request, CandlesRequest):
        return orjson.dumps(
            {
                "op": "candles",
                "symbols": None if request.symbols is None else list(request.symbols),
                "since_ms": request.since_ms,
            }
        )
    return orjson.dumps({"op": "last_period"})


def decode_request(data: bytes) -> Request:
    """The request in one received frame.

    Raises:
        BusProtocolError: not a known request.
    """
    raw = _loads(data, "request")
    if not isinstance(raw, dict):
        raise BusProtocolError("request is not a JSON object")
    op = raw.get("op")
    if op == "last_period":
        return LastPeriodRequest()
    if op == "candles":
        symbols = raw.get("symbols")
        return CandlesRequest(
            symbols=None if symbols is None else _symbols(symbols, "request symbols"),
            since_ms=_nonneg(raw.get("since_ms"), "request since_ms"),
        )
    raise BusProtocolError(f"unknown request op {op!r}")


# --------------------------------------------------------------------------- checks


def _loads(data: bytes | memoryview, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BusProtocolError(f"{what} is not valid JSON ({exc})") from None


def _nonneg(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise BusProtocolError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BusProtocolError(f"{what} must be a string, got {value!r}")
    return value


def _symbols(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(is_safe_symbol(s) for s in value):
        raise BusProtocolError(f"{what} must be a list of symbols")
    return tuple(value)
