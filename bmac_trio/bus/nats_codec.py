"""The market's NATS messages: the live bus's encodings (:mod:`.messages`) on JetStream subjects.

Pure (no I/O, no NATS client). A bus message ``[topic, header, body]`` becomes the NATS message
``<prefix>.<topic>`` whose body is the bus body and whose header ``Bmac-Header`` is the bus
header's JSON — so ``candle.<SYMBOL>`` (JSON), ``period`` (Arrow IPC of the period's candles,
run time / ready / missing / lag in the header's ``meta``) and ``symbols`` (JSON) read exactly
as on ZeroMQ (docs/bus.md). ``Nats-Msg-Id`` is the bus's de-duplication id
(:func:`~.messages.candle_msg_id`: symbol and open time), so JetStream keeps one copy of what a
restarted recorder publishes again.

Three subjects exist only on NATS, for followers that rebuild a data directory from the stream
(header ``Bmac-Kind`` instead of ``Bmac-Header``): ``exginfo`` (``exginfo.pqt`` as an Arrow IPC
stream, header ``Bmac-Run-Time``), ``retired`` (JSON ``{"symbol"}``: its file went to
``_delisted/``) and ``meta`` (``bmac_meta.json``: interval, trade type, save type, time zone,
num_candles).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from bmac_trio.binance.candles import FLOAT_COLUMNS, Candle, epoch_ms
from bmac_trio.binance.symbols import is_safe_symbol
from bmac_trio.bus import messages as bus
from bmac_trio.errors import BusProtocolError

__all__ = [
    "HEADER",
    "Decoded",
    "Outgoing",
    "candle_message",
    "decode",
    "exginfo_message",
    "frame_candles",
    "meta_message",
    "period_message",
    "retired_message",
    "symbols_message",
]

#: The NATS header that carries the live bus's header (JSON).
HEADER: Final = "Bmac-Header"
#: The NATS header of the NATS-only kinds.
KIND: Final = "Bmac-Kind"
NatsKind = Literal["exginfo", "retired", "meta"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: subject below the prefix, body, NATS headers (with the id)."""

    suffix: str
    body: bytes
    headers: dict[str, str]
    kind: str

    @property
    def msg_id(self) -> str:
        return self.headers["Nats-Msg-Id"]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A received message: its kind and value (a bus body, a frame, a symbol or a dict)."""

    kind: str
    value: Any
    run_time_ms: int | None = None


def _from_bus(message: bus.BusMessage, msg_id: str) -> Outgoing:
    headers = {"Nats-Msg-Id": msg_id, HEADER: message.header.to_bytes().decode()}
    return Outgoing(message.topic, message.body, headers, message.header.kind)


def candle_message(stamper: bus.Stamper, event: bus.CandleEvent, *, now_us: int) -> Outgoing:
    """``candle.<SYMBOL>``, id ``candle.<SYMBOL>.<open_ms>``."""
    message = stamper.candle(event, now_us=now_us)
    return _from_bus(message, bus.candle_msg_id(event.candle.symbol, event.candle.open_ms))


def period_message(stamper: bus.Stamper, event: bus.PeriodEvent, *, now_us: int) -> Outgoing:
    """``period``; a complete period's id is ``period.<run_time>``, a report at the deadline
    names its missing symbols (the complete report that follows is not a duplicate of it)."""
    message = stamper.period(event, now_us=now_us)
    msg_id = bus.period_msg_id(event.run_time_ms)
    if not event.complete:
        msg_id += ".missing." + _digest(orjson.dumps(sorted(event.missing)))
    return _from_bus(message, msg_id)


def symbols_message(stamper: bus.Stamper, event: bus.SymbolsEvent, *, now_us: int) -> Outgoing:
    """``symbols``: the selection and its change."""
    message = stamper.symbols(event, now_us=now_us)
    digest = _digest(orjson.dumps([event.symbols, event.listed, event.delisted]))
    return _from_bus(message, f"symbols.{digest}")


def _nats_only(suffix: NatsKind, msg_id: str, body: bytes, **extra: str) -> Outgoing:
    return Outgoing(suffix, body, {"Nats-Msg-Id": msg_id, KIND: suffix, **extra}, suffix)


def exginfo_message(run_time_ms: int, frame: Any) -> Outgoing:
    """``exginfo``: the polars frame as an Arrow IPC stream."""
    buffer = io.BytesIO()
    frame.write_ipc_stream(buffer)
    body = buffer.getvalue()
    msg_id = f"exginfo.{run_time_ms}.{_digest(body)}"
    return _nats_only("exginfo", msg_id, body, **{"Bmac-Run-Time": str(run_time_ms)})


def retired_message(symbol: str, at_ms: int) -> Outgoing:
    """``retired``: ``symbol``'s file went to ``_delisted/`` (``at_ms``: exchange time)."""
    body = orjson.dumps({"symbol": symbol, "at_ms": at_ms})
    return _nats_only("retired", f"retired.{symbol}.{at_ms}", body)


def meta_message(meta: dict[str, Any]) -> Outgoing:
    """``meta``: what a follower needs to write the same files."""
    body = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)
    return _nats_only("meta", f"meta.{_digest(body)}", body)


def decode(suffix: str, headers: dict[str, str] | None, body: bytes) -> Decoded:
    """A message received under the prefix (``suffix`` = subject without ``<prefix>.``).

    Raises:
        BusProtocolError: a bad header, an unknown kind or a malformed body.
    """
    headers = headers or {}
    raw_header = headers.get(HEADER)
    if raw_header is not None:
        message = bus.BusMessage(suffix, bus.Header.from_bytes(raw_header.encode()), body)
        value = bus.decode_body(message)
        run_time = value.run_time_ms if isinstance(value, bus.PeriodEvent) else None
        return Decoded(message.header.kind, value, run_time)
    kind = headers.get(KIND)
    try:
        if kind == "exginfo":
            import polars as pl

            frame = pl.read_ipc_stream(io.BytesIO(body))
            return Decoded("exginfo", frame, int(headers["Bmac-Run-Time"]))
        if kind == "retired":
            symbol = orjson.loads(body)["symbol"]
            if not is_safe_symbol(symbol):
                raise ValueError(f"unsafe symbol {symbol!r}")
            return Decoded("retired", symbol)
        if kind == "meta":
            meta = orjson.loads(body)
            if not isinstance(meta, dict):
                raise ValueError("meta is not an object")
            return Decoded("meta", meta)
    except (KeyError, TypeError, ValueError, OSError, orjson.JSONDecodeError) as exc:
        raise BusProtocolError(f"malformed NATS {kind} message: {exc!r}") from None
    raise BusProtocolError(f"NATS message {suffix!r} has no {HEADER} nor a known {KIND}")


def frame_candles(frame: Any) -> list[Candle]:
    """The rows of a bus frame (``symbol`` + candle columns) as candles."""
    opens = epoch_ms(frame["candle_begin_time"]).to_list()
    symbols = frame["symbol"].to_list()
    columns = {name: frame[name].to_list() for name in FLOAT_COLUMNS}
    return [
        Candle(symbol=s, open_ms=t, **{name: columns[name][i] for name in FLOAT_COLUMNS})
        for i, (s, t) in enumerate(zip(symbols, opens, strict=True))
    ]


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()
