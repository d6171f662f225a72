"""Property tests of the protocol core (issue 6): hostile input never escapes as anything but
RemoteProtocolError, and well-formed input round-trips exactly."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from bmac_trio.binance.exchange_info import parse_exchange_info, select_symbols
from bmac_trio.binance.intervals import parse_interval
from bmac_trio.binance.markets import CM, SPOT, TRADE_TYPES, UM
from bmac_trio.binance.protocol import (
    MAX_DECIMAL,
    Candle,
    ControlError,
    ControlReply,
    Ignored,
    KlineEvent,
    candles_to_frame,
    kline_stream_name,
    parse_error_body,
    parse_klines,
    parse_premium_index,
    parse_server_time,
    parse_ws_message,
)
from bmac_trio.binance.symbols import is_safe_symbol
from bmac_trio.errors import RemoteProtocolError

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
M1 = parse_interval("1m")
T0 = 1_626_992_700_000

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["NaN", "inf", "-1", "1e999", "0x10", "", " 1", "1_0", "-0", "1e-400"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
symbols = st.from_regex(r"[A-Z0-9]{1,12}(_[A-Z0-9]{1,8})?", fullmatch=True)
decimal_strings = st.builds(
    lambda whole, frac, digits: f"{whole}.{frac % 10**digits:0{digits}d}",
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=10**8),
    st.integers(min_value=1, max_value=8),
)


def valid_event(symbol: str, open_ms: int, closed: bool, numbers: list[str], n: int) -> dict:
    o, h, low, c, v, q, vb, qb = numbers
    return {
        "e": "kline",
        "E": open_ms + 60_000 + 200,
        "s": symbol,
        "k": {
            "t": open_ms,
            "T": open_ms + 59_999,
            "s": symbol,
            "i": "1m",
            "f": 1,
            "L": 2,
            "o": o,
            "c": c,
            "h": h,
            "l": low,
            "v": v,
            "n": n,
            "x": closed,
            "q": q,
            "V": vb,
            "Q": qb,
            "B": "0",
        },
    }


kline_events = st.builds(
    valid_event,
    symbols,
    st.integers(min_value=0, max_value=10**7).map(lambda i: T0 + i * 60_000),
    st.booleans(),
    st.lists(decimal_strings, min_size=8, max_size=8),
    st.integers(min_value=0, max_value=10**9),
)


def only_protocol_errors(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except RemoteProtocolError as exc:
        return exc


def check_event(event: object) -> None:
    """Whatever parses is sane: finite non-negative numbers, a safe symbol, on the grid."""
    assert isinstance(
        event, KlineEvent | ControlReply | ControlError | Ignored | RemoteProtocolError
    )
    if isinstance(event, KlineEvent):
        candle = event.candle
        assert is_safe_symbol(candle.symbol)
        assert M1.is_aligned(candle.open_ms)
        assert event.close_ms == candle.open_ms + 59_999
        for name in ("open", "high", "low", "close", "volume", "quote_volume", "trade_num"):
            value = getattr(candle, name)
            assert math.isfinite(value)
            assert 0 <= value <= max(MAX_DECIMAL, 2**53)


@PROPS
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_bytes_and_text(data: bytes | str) -> None:
    check_event(only_protocol_errors(parse_ws_message, data, interval="1m"))
    check_event(only_protocol_errors(parse_ws_message, data, interval=M1))


@PROPS
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    raw = orjson.dumps(value)
    check_event(only_protocol_errors(parse_ws_message, raw, interval="1m"))
    wrapped = orjson.dumps({"stream": "btcusdt@kline_1m", "data": value})
    check_event(only_protocol_errors(parse_ws_message, wrapped, interval="1m"))
    for fn in (parse_server_time, parse_premium_index):
        only_protocol_errors(fn, raw)
    result = only_protocol_errors(parse_klines, raw, symbol="BTCUSDT", interval="1m")
    assert isinstance(result, list | RemoteProtocolError)
    code, msg = parse_error_body(raw)
    assert code is None or isinstance(code, int)
    assert isinstance(msg, str)


@PROPS
@given(kline_events, st.data())
def test_valid_frames_round_trip_and_every_truncation_fails(
    event: dict, data: st.DataObject
) -> None:
    symbol = event["s"]
    frame = orjson.dumps({"stream": kline_stream_name(symbol, "1m"), "data": event})
    parsed = parse_ws_message(frame, interval="1m")
    assert isinstance(parsed, KlineEvent)
    k = event["k"]
    assert parsed.candle == Candle(
        symbol=symbol,
        open_ms=k["t"],
        open=float(k["o"]),
        high=float(k["h"]),
        low=float(k["l"]),
        close=float(k["c"]),
        volume=float(k["v"]),
        quote_volume=float(k["q"]),
        trade_num=float(k["n"]),
        taker_buy_base_asset_volume=float(k["V"]),
        taker_buy_quote_asset_volume=float(k["Q"]),
    )
    assert parsed.closed is k["x"]
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    with pytest.raises(RemoteProtocolError):
        parse_ws_message(frame[:cut], interval="1m")


@PROPS
@given(kline_events, st.data())
def test_mutated_kline_frames(event: dict, data: st.DataObject) -> None:
    where = data.draw(st.sampled_from(["top", "k"]))
    target = event if where == "top" else event["k"]
    key = data.draw(st.sampled_from(sorted(target)))
    if data.draw(st.booleans()):
        del target[key]
    else:
        target[key] = data.draw(json_values)
    frame = orjson.dumps(event)
    result = only_protocol_errors(parse_ws_message, frame, interval="1m")
    check_event(result)


@PROPS
@given(
    st.lists(
        st.tuples(st.lists(decimal_strings, min_size=8, max_size=8), st.integers(0, 10**6)),
        max_size=8,
    ),
    st.data(),
)
def test_klines_bodies_round_trip_and_mutations_fail_cleanly(
    rows_spec: list[tuple[list[str], int]], data: st.DataObject
) -> None:
    rows = []
    for i, (numbers, n) in enumerate(rows_spec):
        o, h, low, c, v, q, vb, qb = numbers
        t = T0 + i * 60_000
        rows.append([t, o, h, low, c, v, t + 59_999, q, n, vb, qb, "0"])
    body = orjson.dumps(rows)
    candles = parse_klines(body, symbol="BTCUSDT", interval="1m")
    assert [c.open_ms for c in candles] == [r[0] for r in rows]
    assert [c.quote_volume for c in candles] == [float(r[7]) for r in rows]
    frame = candles_to_frame(candles, M1)
    assert frame.height == len(rows)
    assert frame["close"].to_list() == [float(r[4]) for r in rows]
    assume(rows)
    row = data.draw(st.sampled_from(rows))
    index = data.draw(st.integers(0, 11))
    row[index] = data.draw(json_values)
    only_protocol_errors(parse_klines, orjson.dumps(rows), symbol="BTCUSDT", interval="1m")
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(RemoteProtocolError):
        parse_klines(body[:cut], symbol="BTCUSDT", interval="1m")


@PROPS
@given(st.sampled_from(["NaN", "nan", "inf", "-inf", "Infinity", "-1", "-0.1", "1e21", "1" * 70]))
def test_hostile_numbers_are_refused(bad: str) -> None:
    event = valid_event("BTCUSDT", T0, True, ["1.0"] * 8, 5)
    event["k"]["h"] = bad
    with pytest.raises(RemoteProtocolError):
        parse_ws_message(orjson.dumps(event), interval="1m")
    row = [T0, "1", bad, "1", "1", "1", T0 + 59_999, "1", 1, "1", "1", "0"]
    with pytest.raises(RemoteProtocolError):
        parse_klines(orjson.dumps([row]), symbol="BTCUSDT", interval="1m")


@pytest.mark.parametrize(
    "body",
    [
        b"[[1" + b"9" * 30 + b',"1","1","1","1","1",1,"1",1,"1","1","0"]]',
        b'[[1626992700000,"1","1","1","1","1",1626992759999,"1",1e400,"1","1","0"]]',
        b"[" * 5000,
        b'{"e":"kline","E":-1,"s":"A","k":{}}',
    ],
)
def test_hostile_bodies_beyond_json_numbers(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_klines(body, symbol="BTCUSDT", interval="1m")
    with pytest.raises(RemoteProtocolError):
        parse_ws_message(body, interval="1m")


@PROPS
@given(st.text(min_size=1, max_size=20).filter(lambda s: not is_safe_symbol(s)))
def test_unsafe_symbol_names_are_refused(name: str) -> None:
    event = valid_event(name, T0, True, ["1.0"] * 8, 5)
    with pytest.raises(RemoteProtocolError):
        parse_ws_message(orjson.dumps(event), interval="1m")


@PROPS
@given(json_values, st.sampled_from([SPOT, UM, CM]))
def test_exchange_info_never_crashes(value: Any, market: Any) -> None:
    bodies = [orjson.dumps(value), orjson.dumps({"symbols": [value], "rateLimits": value})]
    for body in bodies:
        result = only_protocol_errors(parse_exchange_info, body, market)
        if not isinstance(result, RemoteProtocolError):
            for trade_type in TRADE_TYPES.values():
                if trade_type.market is market:
                    selection = select_symbols(result, trade_type, None)
                    assert all(is_safe_symbol(s.symbol) for s in selection.symbols)
