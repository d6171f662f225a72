"""The wire format: every message survives encode -> frames -> decode, and bad input is refused."""

from __future__ import annotations

import io
from dataclasses import replace

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pytest
from hypothesis import given, strategies as st

from bmac_trio.binance.candles import CANDLE_SCHEMA, FLOAT_COLUMNS, Candle
from bmac_trio.bus.messages import (
    BUS_FRAME_COLUMNS,
    SCHEMA_VERSION,
    BusMessage,
    CandleEvent,
    CandlesReply,
    CandlesRequest,
    ErrorReply,
    Header,
    Heartbeat,
    LastPeriodRequest,
    PeriodEvent,
    Stamper,
    SymbolsEvent,
    candle_events_to_frame,
    candle_msg_id,
    decode,
    decode_body,
    decode_request,
    empty_frame,
    encode_request,
    frame_to_ipc,
    ipc_to_frame,
    message_id,
    new_epoch,
    period_msg_id,
)
from bmac_trio.errors import BusProtocolError

HOUR = 3_600_000
T0 = 1_767_225_600_000


def make_candle(symbol: str = "BTCUSDT", open_ms: int = T0, base: float = 1.5) -> Candle:
    return Candle(
        symbol=symbol, open_ms=open_ms, **{n: base + i for i, n in enumerate(FLOAT_COLUMNS)}
    )


def make_event(symbol: str = "BTCUSDT", open_ms: int = T0, base: float = 1.5) -> CandleEvent:
    return CandleEvent(
        candle=make_candle(symbol, open_ms, base),
        end_ms=open_ms + HOUR,
        source="ws",
        received_us=123,
    )


def roundtrip(message: BusMessage) -> BusMessage:
    frames = message.frames()
    assert all(isinstance(f, bytes) for f in frames)
    return decode(frames)


def test_candle_roundtrip_keeps_every_value_and_topic():
    stamper = Stamper()
    event = make_event(base=0.1)
    got = roundtrip(stamper.candle(event, now_us=5))
    assert got.topic == "candle.BTCUSDT"
    assert got.header.kind == "candle"
    assert got.header.body == "json"
    assert got.header.v == SCHEMA_VERSION
    assert got.header.sent_us == 5
    assert decode_body(got) == event


def test_a_non_ascii_symbol_has_a_utf8_topic():
    # Binance lists such symbols since 2025; an ASCII-only topic stopped the dispatcher
    event = make_event(symbol="币安人生USDT")
    message = Stamper().candle(event, now_us=5)
    assert message.frames()[0] == "candle.币安人生USDT".encode()
    got = roundtrip(message)
    assert got.topic == "candle.币安人生USDT"
    assert decode_body(got) == event


def test_header_numbers_every_message_and_every_topic():
    stamper = Stamper("e1")
    msgs = [
        stamper.candle(make_event("AUSDT"), now_us=0),
        stamper.candle(make_event("BUSDT"), now_us=0),
        stamper.candle(make_event("AUSDT", T0 + HOUR), now_us=0),
        stamper.heartbeat(
            Heartbeat(market="um", interval="1h", symbols=2, last_run_time_ms=None), now_us=0
        ),
    ]
    assert [m.header.seq for m in msgs] == [1, 2, 3, 4]
    assert [m.header.topic_seq for m in msgs] == [1, 1, 2, 1]
    assert {m.header.epoch for m in msgs} == {"e1"}


def test_epochs_differ_between_starts():
    assert Stamper().epoch != Stamper().epoch
    assert len(new_epoch()) == 32


def test_period_roundtrip_carries_the_whole_market_as_arrow():
    events = [make_event(s, T0, float(i)) for i, s in enumerate(["AUSDT", "BUSDT", "CUSDT"])]
    period = PeriodEvent(
        run_time_ms=T0 + HOUR,
        interval="1h",
        ready=("AUSDT", "BUSDT", "CUSDT"),
        missing=("DUSDT",),
        complete=False,
        lag_ms=1.25,
        candles=candle_events_to_frame(events),
        last_received_us=99,
    )
    got = roundtrip(Stamper().period(period, now_us=7))
    assert got.topic == "period"
    assert got.header.body == "arrow"
    decoded = decode_body(got)
    assert isinstance(decoded, PeriodEvent)
    assert decoded.candles.equals(period.candles)
    assert decoded.candles.schema == pl.Schema({"symbol": pl.String} | dict(CANDLE_SCHEMA))
    assert (decoded.run_time_ms, decoded.ready, decoded.missing) == (
        period.run_time_ms,
        period.ready,
        period.missing,
    )
    assert (decoded.complete, decoded.lag_ms, decoded.last_received_us) == (False, 1.25, 99)
    assert decoded.on_disk  # the default: the disk report
    early = decode_body(roundtrip(Stamper().period(replace(period, on_disk=False), now_us=7)))
    assert isinstance(early, PeriodEvent)
    assert not early.on_disk


def test_arrow_body_is_plain_arrow_any_language_reads():
    body = frame_to_ipc(candle_events_to_frame([make_event()]))
    table = pa_ipc.open_stream(io.BytesIO(body)).read_all()
    assert table.schema.names == list(BUS_FRAME_COLUMNS)
    assert table.schema.field("symbol").type == pa.string()
    assert table.schema.field("candle_begin_time").type == pa.timestamp("ms", tz="UTC")
    assert table.column("candle_begin_time")[0].value == T0


def test_empty_frame_roundtrips():
    assert ipc_to_frame(frame_to_ipc(empty_frame())).equals(empty_frame())


def test_symbols_heartbeat_and_replies_roundtrip():
    stamper = Stamper()
    sym = SymbolsEvent(symbols=("AUSDT", "BUSDT"), listed=("BUSDT",), delisted=("CUSDT",))
    beat = Heartbeat(market="um", interval="1h", symbols=2, last_run_time_ms=T0)
    assert decode_body(roundtrip(stamper.symbols(sym, now_us=1))) == sym
    assert decode_body(roundtrip(stamper.heartbeat(beat, now_us=1))) == beat
    frame = candle_events_to_frame([make_event(), make_event(open_ms=T0 + HOUR)])
    reply = roundtrip(stamper.reply_candles(frame, now_us=1))
    assert reply.topic == "reply"
    assert reply.header.seq == stamper.seq  # as recent as the last message published
    assert reply.header.topic_seq == 0
    decoded = decode_body(reply)
    assert isinstance(decoded, CandlesReply)
    assert decoded.candles.equals(frame)
    assert decode_body(roundtrip(stamper.reply_error("no", now_us=1))) == ErrorReply(error="no")


def test_requests_roundtrip():
    for request in (
        CandlesRequest(symbols=("AUSDT",), since_ms=T0),
        CandlesRequest(symbols=None, since_ms=0),
        LastPeriodRequest(),
    ):
        assert decode_request(encode_request(request)) == request


@pytest.mark.parametrize(
    "data",
    [
        b"nope",
        b"[]",
        b'{"op": "drop"}',
        b'{"op": "candles", "since_ms": -1, "symbols": null}',
        b'{"op": "candles", "since_ms": 0, "symbols": ["../x"]}',
    ],
)
def test_bad_requests_are_refused(data):
    with pytest.raises(BusProtocolError):
        decode_request(data)


def good_header(**change) -> bytes:
    raw = orjson.loads(Stamper("e").candle(make_event(), now_us=0).header.to_bytes())
    raw.update(change)
    return orjson.dumps(raw)


@pytest.mark.parametrize(
    "frames",
    [
        [b"candle.X", good_header()],
        [b"candle.\xff", good_header(), b"{}"],
        [b"candle.X", b"not json", b"{}"],
        [b"candle.X", good_header(v=SCHEMA_VERSION + 1), b"{}"],
        [b"candle.X", good_header(kind="trade"), b"{}"],
        [b"candle.X", good_header(body="arrow"), b"{}"],
        [b"candle.X", good_header(seq=-1), b"{}"],
        [b"candle.X", good_header(epoch=""), b"{}"],
    ],
)
def test_bad_frames_are_refused(frames):
    with pytest.raises(BusProtocolError):
        decode(frames)


@pytest.mark.parametrize(
    "body",
    [b"[1]", b'{"symbol": "a/b"}', b'{"symbol": "X", "open": "1"}'],
)
def test_bad_candle_bodies_are_refused(body):
    message = BusMessage("candle.X", Header.from_bytes(good_header()), body)
    with pytest.raises(BusProtocolError):
        decode_body(message)


def test_bad_arrow_is_refused():
    with pytest.raises(BusProtocolError):
        ipc_to_frame(b"not arrow")
    other = pa.table({"x": [1]})
    sink = pa.BufferOutputStream()
    with pa_ipc.new_stream(sink, other.schema) as writer:
        writer.write_table(other)
    with pytest.raises(BusProtocolError):
        ipc_to_frame(sink.getvalue().to_pybytes())


def test_message_ids_do_not_depend_on_the_epoch():
    a = Stamper().candle(make_event(), now_us=0)
    b = Stamper().candle(make_event(), now_us=9)
    assert a.header.epoch != b.header.epoch
    assert message_id(a) == message_id(b) == candle_msg_id("BTCUSDT", T0)
    assert candle_msg_id("BTCUSDT", T0, "1h") != candle_msg_id("BTCUSDT", T0, "5m")
    period = PeriodEvent(
        run_time_ms=T0,
        interval="1h",
        ready=(),
        missing=(),
        complete=True,
        lag_ms=None,
        candles=empty_frame(),
    )
    assert message_id(Stamper().period(period, now_us=0)) == period_msg_id(T0)
    beat = Heartbeat(market="um", interval="1h", symbols=0, last_run_time_ms=None)
    assert message_id(Stamper().heartbeat(beat, now_us=0)) is None


finite = st.floats(min_value=0, max_value=1e20, allow_nan=False, allow_infinity=False)


@given(values=st.lists(finite, min_size=len(FLOAT_COLUMNS), max_size=len(FLOAT_COLUMNS)))
def test_any_float_survives_json_exactly(values):
    candle = Candle(symbol="XUSDT", open_ms=T0, **dict(zip(FLOAT_COLUMNS, values, strict=True)))
    event = CandleEvent(candle=candle, end_ms=T0 + HOUR, source="rest")
    assert decode_body(roundtrip(Stamper().candle(event, now_us=0))) == event
