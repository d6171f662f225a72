"""The Binance kline protocol core, against hand-written and real captured payloads."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
import polars as pl
import pytest

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.binance.markets import CM, SPOT, UM
from bmac_trio.binance.protocol import (
    Candle,
    ControlError,
    ControlReply,
    FundingRate,
    Ignored,
    KlineEvent,
    candles_to_frame,
    closed_only,
    control_message,
    kline_stream_name,
    klines_params,
    parse_error_body,
    parse_klines,
    parse_premium_index,
    parse_retry_after,
    parse_server_time,
    parse_weight_headers,
    parse_ws_message,
    ws_path,
)
from bmac_trio.errors import RemoteProtocolError
from bmac_trio.store.layout import CANDLE_SCHEMA

SUSHI = (
    '{"stream":"sushiusdt@kline_1m","data":{"e":"kline","E":1626992760203,"s":"SUSHIUSDT",'
    '"k":{"t":1626992700000,"T":1626992759999,"s":"SUSHIUSDT","i":"1m","f":126902874,'
    '"L":126902986,"o":"7.6080","c":"7.6170","h":"7.6180","l":"7.6070","v":"3005","n":113,'
    '"x":true,"q":"22875.8590","V":"1900","Q":"14464.6960","B":"0"}}}'
)
ETH_1S_RAW_NO_B = (
    '{"e":"kline","E":1682244928001,"s":"ETHUSDT","k":{"t":1682244927000,"T":1682244927999,'
    '"s":"ETHUSDT","i":"1s","f":-1,"L":-1,"o":"1870.76000000","c":"1870.76000000",'
    '"h":"1870.76000000","l":"1870.76000000","v":"0.00000000","n":0,"x":true,'
    '"q":"0.00000000","V":"0.00000000","Q":"0.00000000"}}'
)
SPOT_ROWS = (
    b'[[1634943780000,"60685.22000000","60729.84000000","60670.90000000","60719.27000000",'
    b'"21.63272000",1634943839999,"1313200.01340410",617,"12.28492000","745719.41022840","0"],'
    b'[1634943840000,"60739.85000000","60739.85000000","60739.85000000","60739.85000000",'
    b'"0.04734000",1634943899999,"2875.42449900",7,"0.04734000","2875.42449900","0"]]'
)


def test_real_um_closed_kline() -> None:
    event = parse_ws_message(SUSHI, interval="1m")
    assert isinstance(event, KlineEvent)
    assert event.closed
    assert event.stream == "sushiusdt@kline_1m"
    assert (event.event_ms, event.close_ms) == (1626992760203, 1626992759999)
    assert event.candle == Candle(
        symbol="SUSHIUSDT",
        open_ms=1626992700000,
        open=7.608,
        high=7.618,
        low=7.607,
        close=7.617,
        volume=3005.0,
        quote_volume=22875.859,
        trade_num=113.0,
        taker_buy_base_asset_volume=1900.0,
        taker_buy_quote_asset_volume=14464.696,
    )


def test_raw_zero_trade_1s_kline_without_b() -> None:
    event = parse_ws_message(ETH_1S_RAW_NO_B.encode(), interval=parse_interval("1s"))
    assert isinstance(event, KlineEvent)
    assert event.stream is None
    assert event.candle.trade_num == 0.0
    assert event.candle.volume == 0.0


def test_every_captured_frame_parses(binance_fixtures: Path) -> None:
    closed = 0
    frames = 0
    for name in ("spot_kline_frames.jsonl", "um_kline_frames.jsonl"):
        for line in (binance_fixtures / name).read_text().splitlines():
            record = orjson.loads(line)
            event = parse_ws_message(record["frame"], interval="1m")
            assert isinstance(event, KlineEvent)
            raw = orjson.loads(record["frame"])["data"]["k"]
            assert event.candle.close == float(raw["c"])
            assert event.candle.taker_buy_quote_asset_volume == float(raw["Q"])
            assert event.closed is raw["x"]
            closed += event.closed
            frames += 1
    assert frames == 69
    assert closed == 4


def test_control_frames() -> None:
    assert parse_ws_message('{"result":null,"id":1}', interval="1m") == ControlReply(
        id=1, result=None
    )
    assert parse_ws_message('{"result":["a@kline_1m"],"id":"x"}', interval="1m") == ControlReply(
        id="x", result=["a@kline_1m"]
    )
    assert parse_ws_message(
        '{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":2}', interval="1m"
    ) == ControlError(id=2, code=2, msg="Invalid request: invalid stream")
    assert parse_ws_message('{"code":3,"msg":"Invalid JSON"}', interval="1m") == ControlError(
        id=None, code=3, msg="Invalid JSON"
    )


def test_other_events_are_ignored() -> None:
    event = parse_ws_message(
        '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}', interval="1m"
    )
    assert isinstance(event, Ignored)
    assert "serverShutdown" in event.reason
    assert isinstance(
        parse_ws_message('{"e":"markPriceUpdate","E":1,"s":"X"}', interval="1m"), Ignored
    )


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "{",
        "[1,2]",
        "{}",
        '{"stream":"x","data":5}',
        SUSHI.replace('"7.6080"', '"NaN"'),
        SUSHI.replace('"7.6080"', '"inf"'),
        SUSHI.replace('"7.6080"', '"-1"'),
        SUSHI.replace('"7.6080"', '"1e300"'),
        SUSHI.replace('"7.6080"', "7.608"),
        SUSHI.replace('"n":113', '"n":-1'),
        SUSHI.replace('"n":113', '"n":true'),
        SUSHI.replace('"x":true', '"x":"true"'),
        SUSHI.replace('"t":1626992700000', '"t":1626992700001'),
        SUSHI.replace('"T":1626992759999', '"T":1626992760000'),
        SUSHI.replace('"s":"SUSHIUSDT",\n', "").replace('"SUSHIUSDT"', '"../../etc"'),
        SUSHI.replace('"i":"1m"', '"i":"5m"'),
        SUSHI.replace("sushiusdt@kline_1m", "btcusdt@kline_1m"),
        SUSHI.replace(',"s":"SUSHIUSDT","i"', ',"s":"BTCUSDT","i"'),
        SUSHI[:-20],
    ],
)
def test_malformed_or_hostile_frames_raise_remote_protocol_error(frame: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_ws_message(frame, interval="1m")


def test_stream_names_and_paths() -> None:
    assert kline_stream_name("BTCUSDT", "5m") == "btcusdt@kline_5m"
    assert (
        ws_path(UM, ["a@kline_1m", "b@kline_1m"]) == "/market/stream?streams=a@kline_1m/b@kline_1m"
    )
    assert ws_path(SPOT, ["a@kline_1m"]) == "/stream?streams=a@kline_1m"
    assert ws_path(CM, []) == "/stream"
    assert orjson.loads(control_message("SUBSCRIBE", 7, ["a@kline_1m"])) == {
        "method": "SUBSCRIBE",
        "params": ["a@kline_1m"],
        "id": 7,
    }
    assert orjson.loads(control_message("LIST_SUBSCRIPTIONS", 3)) == {
        "method": "LIST_SUBSCRIPTIONS",
        "id": 3,
    }


def test_non_ascii_symbols_stream_under_a_percent_encoded_url() -> None:
    # Binance lists such symbols since 2025: sent raw, the handshake raised UnicodeEncodeError
    name = kline_stream_name("币安人生USDT", "1m")
    assert name == "币安人生usdt@kline_1m"
    path = ws_path(UM, ["btcusdt@kline_1m", name])
    assert path.isascii()
    assert path == (
        "/market/stream?streams=btcusdt@kline_1m/%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9Fusdt@kline_1m"
    )
    assert parse_qs(urlsplit(path).query)["streams"] == [f"btcusdt@kline_1m/{name}"]
    # the combined wrapper names the stream as subscribed (raw); the payload's symbol is upper
    frame = SUSHI.replace("SUSHIUSDT", "币安人生USDT").replace("sushiusdt@kline_1m", name)
    parsed = parse_ws_message(frame.encode(), interval="1m")
    assert isinstance(parsed, KlineEvent)
    assert parsed.candle.symbol == "币安人生USDT"


def test_klines_params_send_both_ends() -> None:
    iv = parse_interval("1m")
    start = 1_700_000_040_000
    params = klines_params(CM, "BTCUSD_PERP", iv, start, start + 99 * 60_000, 100)
    assert params == {
        "symbol": "BTCUSD_PERP",
        "interval": "1m",
        "startTime": str(start),
        "endTime": str(start + 100 * 60_000 - 1),
        "limit": "100",
    }
    with pytest.raises(ValueError, match="more than"):
        klines_params(UM, "X", iv, start, start + 100 * 60_000, 100)
    with pytest.raises(ValueError, match="limit"):
        klines_params(SPOT, "X", iv, start, start, 1001)
    day = parse_interval("1d")
    with pytest.raises(ValueError, match="200 days"):
        klines_params(CM, "X", day, 0, 300 * 86_400_000, 1500)


def test_parse_klines_real_spot_rows_and_closed_only() -> None:
    candles = parse_klines(SPOT_ROWS, symbol="BTCUSDT", interval="1m")
    assert [c.open_ms for c in candles] == [1634943780000, 1634943840000]
    assert candles[0].quote_volume == 1313200.0134041
    assert candles[0].trade_num == 617.0
    assert closed_only(candles, "1m", 1634943899999) == candles[:1]
    assert closed_only(candles, "1m", 1634943900000) == candles
    assert parse_klines(b"[]", symbol="BTCUSDT", interval="1m") == []


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b"[[1]]",
        b'[[1634943780000,"1","1","1","1","1",1634943839999,"1",1,"1"]]',
        b'[[1634943780000,"1","1","1","1","1",1634943839999,"1",1,"1",null,"0"]]',
        SPOT_ROWS.replace(b"1634943840000", b"1634943780000").replace(
            b"1634943899999", b"1634943839999"
        ),
        SPOT_ROWS[:50],
    ],
)
def test_parse_klines_rejects_bad_bodies(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_klines(body, symbol="BTCUSDT", interval="1m")


def test_headers_errors_time_and_funding() -> None:
    assert parse_weight_headers({"X-MBX-USED-WEIGHT-1M": "190"}) == 190
    assert parse_weight_headers({"x-mbx-used-weight-1m": "5", "x-mbx-used-weight": "5"}) == 5
    assert parse_weight_headers({"x-mbx-used-weight-1m": "lots"}) is None
    assert parse_weight_headers({}) is None
    assert parse_retry_after({"Retry-After": "112"}) == 112.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_error_body(b'{"code":-1121,"msg":"Invalid symbol."}') == (-1121, "Invalid symbol.")
    assert parse_error_body(b"<html>bad gateway</html>") == (None, "<html>bad gateway</html>")
    assert parse_server_time(b'{"serverTime":1499827319559}') == 1499827319559
    with pytest.raises(RemoteProtocolError):
        parse_server_time(b'{"serverTime":"now"}')
    body = orjson.dumps(
        [
            {"symbol": "BTCUSD_PERP", "lastFundingRate": "0.00010000", "nextFundingTime": 5},
            {"symbol": "BTCUSD_210924", "lastFundingRate": "", "nextFundingTime": 0},
            {"symbol": "../x", "lastFundingRate": "0.1"},
        ]
    )
    assert parse_premium_index(body) == [
        FundingRate(symbol="BTCUSD_PERP", funding_rate=0.0001, next_funding_time_ms=5),
        FundingRate(symbol="BTCUSD_210924", funding_rate=None),
    ]
    one = parse_premium_index(b'{"symbol":"BTCUSDT","lastFundingRate":"-0.00030000"}')
    assert one == [FundingRate(symbol="BTCUSDT", funding_rate=-0.0003)]
    with pytest.raises(RemoteProtocolError):
        parse_premium_index(b'[{"symbol":"BTCUSDT","lastFundingRate":"nan"}]')


@pytest.mark.parametrize("interval", ["1m", "6h", "1w", "1M"])
def test_candles_to_frame_schema_and_end_times(interval: str) -> None:
    iv = parse_interval(interval)
    first = iv.floor(1_700_000_000_000)
    candles = [
        Candle(
            symbol="X",
            open_ms=iv.add(first, i),
            open=1.0 + i,
            high=2.0,
            low=0.5,
            close=1.5,
            volume=3.0,
            quote_volume=4.0,
            trade_num=5.0,
            taker_buy_base_asset_volume=1.0,
            taker_buy_quote_asset_volume=2.0,
        )
        for i in range(3)
    ]
    frame = candles_to_frame(candles, iv)
    assert frame.schema == CANDLE_SCHEMA
    begins = frame["candle_begin_time"].dt.epoch("ms").to_list()
    ends = frame["candle_end_time"].dt.epoch("ms").to_list()
    assert begins == [c.open_ms for c in candles]
    assert ends == [iv.end(c.open_ms) for c in candles]
    assert frame["open"].to_list() == [1.0, 2.0, 3.0]
    assert candles_to_frame([], iv).schema == CANDLE_SCHEMA
    assert candles_to_frame([], iv).height == 0
    assert isinstance(frame, pl.DataFrame)
