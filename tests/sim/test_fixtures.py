"""Field-by-field comparison with real captured Binance payloads (names, JSON types, decimals).

The fixtures are exchangeInfo snapshots of the three markets and kline WebSocket frames of
spot and USDⓈ-M. The simulator's generated symbols must have the captured shape, and when it
serves a snapshot its candles must be formatted exactly like the real frames of those symbols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from .conftest import START_MS, get_json, open_ws, running

_INFO = {
    "spot": "spot_exchange_info_1633998511.json",
    "um": "um_exchange_info_1626992740.json",
    "cm": "cm_exchange_info_1626916402.json",
}
_STATUS_KEY = {"spot": "status", "um": "status", "cm": "contractStatus"}


def _load(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def _kind(value: Any) -> str:
    """JSON type, with strings that hold decimals told apart from other strings."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        body = value.lstrip("-")
        return "decimal" if body.replace(".", "", 1).isdigit() else "str"
    return type(value).__name__


def _decimals(value: str) -> int:
    return len(value.split(".", 1)[1]) if "." in value else 0


def _same_shape(ours: dict[str, Any], real: dict[str, Any], where: str) -> None:
    missing = set(real) - set(ours)
    assert not missing, f"{where}: missing keys {sorted(missing)}"
    for key, value in real.items():
        if value == "" or value is None:
            continue
        assert _kind(ours[key]) == _kind(value), f"{where}.{key}: {ours[key]!r} vs {value!r}"
        if isinstance(value, list) and value and ours[key]:
            assert _kind(ours[key][0]) == _kind(value[0]), f"{where}.{key}[0]"


@pytest.mark.parametrize("market", ["spot", "um", "cm"])
async def test_generated_exchange_info_has_the_captured_shape(
    market: str, binance_fixtures: Path
) -> None:
    real = _load(binance_fixtures / _INFO[market])
    with trio.fail_after(20):
        async with running(START_MS, market=market, symbols=30) as (_, client):
            status, info, _ = await get_json(client, "/exchangeInfo")
    assert status == 200
    assert list(info) == list(real)  # same top-level keys, same order
    _same_shape(info, real, "top")
    assert [set(r) for r in info["rateLimits"]] == [set(r) for r in real["rateLimits"]][
        : len(info["rateLimits"])
    ]
    real_trading = [s for s in real["symbols"] if s[_STATUS_KEY[market]] == "TRADING"]
    for ours in info["symbols"]:
        twin = next(
            (s for s in real_trading if s.get("contractType") == ours.get("contractType")),
            real_trading[0],
        )
        _same_shape(ours, twin, ours["symbol"])
        real_filters = {f["filterType"]: f for f in twin["filters"]}
        for f in ours["filters"]:
            if f["filterType"] in real_filters:
                rf = real_filters[f["filterType"]]
                assert set(f) == set(rf), f"{ours['symbol']} {f['filterType']}"
                _same_shape(f, rf, f"{ours['symbol']}.{f['filterType']}")
        if market != "spot":
            tick = next(f["tickSize"] for f in ours["filters"] if f["filterType"] == "PRICE_FILTER")
            assert _decimals(tick) <= ours["pricePrecision"]
    types = {s.get("contractType") for s in info["symbols"]}
    if market == "um":
        assert {"PERPETUAL", "CURRENT_QUARTER"} <= types
        assert {s["quoteAsset"] for s in info["symbols"]} >= {"USDT", "USDC"}
    if market == "cm":
        assert {"PERPETUAL", "CURRENT_QUARTER", "NEXT_QUARTER"} <= types
        assert all(s["symbol"].startswith(s["pair"]) for s in info["symbols"])


@pytest.mark.parametrize("market", ["spot", "um", "cm"])
async def test_snapshot_symbols_served_as_captured(market: str, binance_fixtures: Path) -> None:
    path = binance_fixtures / _INFO[market]
    real = _load(path)
    with trio.fail_after(30):
        async with running(START_MS, market=market, symbols=path) as (sim, client):
            _, info, _ = await get_json(client, "/exchangeInfo")
    served = {s["symbol"]: s for s in info["symbols"]}
    assert set(served) == {s["symbol"] for s in real["symbols"]}
    for entry in real["symbols"]:
        perpetual = entry.get("contractType", "PERPETUAL") == "PERPETUAL" or market == "spot"
        if perpetual:
            # Unchanged by the simulated market's life: the real entry, byte for byte.
            assert served[entry["symbol"]] == entry
    if market != "spot":
        expired = [
            s for s in real["symbols"] if s["contractType"] in ("CURRENT_QUARTER", "NEXT_QUARTER")
        ]
        assert expired
        for entry in expired:  # delivered in 2021, long before the simulated 2026
            assert served[entry["symbol"]][_STATUS_KEY[market]] == "DELIVERED"
    assert set(sim.trading_symbols()) < set(served)


def _frames(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(orjson.loads(line)["frame"]) for line in path.read_text().splitlines()]


def _compare_frame(ours: dict[str, Any], real: dict[str, Any]) -> None:
    assert list(ours) == list(real)
    assert list(ours["data"]) == list(real["data"])
    assert list(ours["data"]["k"]) == list(real["data"]["k"])
    for level_ours, level_real in (
        (ours["data"], real["data"]),
        (ours["data"]["k"], real["data"]["k"]),
    ):
        for key, value in level_real.items():
            if isinstance(value, dict):
                continue
            assert _kind(level_ours[key]) == _kind(value), key
            if _kind(value) == "decimal":
                assert _decimals(level_ours[key]) == _decimals(value), (key, level_ours[key], value)


@pytest.mark.parametrize(
    ("market", "fixture"), [("um", "um_kline_frames.jsonl"), ("spot", "spot_kline_frames.jsonl")]
)
async def test_ws_kline_frames_match_captured(
    market: str, fixture: str, binance_fixtures: Path
) -> None:
    real = _frames(binance_fixtures / fixture)
    wanted = {(f["stream"], f["data"]["k"]["x"]): f for f in real}
    streams = sorted({f["stream"] for f in real})
    route = "/market" if market == "um" else ""
    path = binance_fixtures / _INFO[market]
    with trio.fail_after(30):
        async with running(
            START_MS - 3_000, speed=4.0, market=market, symbols=path, min_real_update_s=0.05
        ) as (sim, _):
            url = f"{sim.ws_url}{route}/stream?streams={'/'.join(streams)}"
            async with open_ws(url) as ws:
                got: dict[tuple[str, bool], dict[str, Any]] = {}
                while not set(wanted) <= set(got):
                    frame = orjson.loads(await ws.get_message())
                    got.setdefault((frame["stream"], frame["data"]["k"]["x"]), frame)
    for key, real_frame in wanted.items():
        _compare_frame(got[key], real_frame)
        assert got[key]["data"]["s"] == real_frame["data"]["s"]


@pytest.mark.parametrize(
    ("market", "symbol", "fixture"),
    [("um", "SUSHIUSDT", "um_kline_frames.jsonl"), ("spot", "NKNUSDT", "spot_kline_frames.jsonl")],
)
async def test_rest_rows_formatted_like_captured_frames(
    market: str, symbol: str, fixture: str, binance_fixtures: Path
) -> None:
    real = next(
        f["data"]["k"] for f in _frames(binance_fixtures / fixture) if f["data"]["s"] == symbol
    )
    expected = [
        real["t"],
        real["o"],
        real["h"],
        real["l"],
        real["c"],
        real["v"],
        real["T"],
        real["q"],
        real["n"],
        real["V"],
        real["Q"],
        real["B"],
    ]
    path = binance_fixtures / _INFO[market]
    async with running(START_MS, market=market, symbols=path) as (_, client):
        _, rows, _ = await get_json(client, "/klines", symbol=symbol, interval="1m", limit="50")
    assert len(rows) == 50
    for row in rows:
        assert [_kind(v) for v in row] == [_kind(v) for v in expected]
        assert [_decimals(v) for v in row if isinstance(v, str)] == [
            _decimals(v) for v in expected if isinstance(v, str)
        ]


async def test_coin_m_rows_formatted_like_binance(binance_fixtures: Path) -> None:
    """CM rows: prices at pricePrecision, volume in whole contracts, base volume with 8 places."""
    doc_row = [
        1591258320000,
        "9640.7",
        "9642.4",
        "9640.6",
        "9642.0",
        "206",
        1591258379999,
        "2.13660389",
        48,
        "119",
        "1.23424865",
        "0",
    ]
    path = binance_fixtures / _INFO["cm"]
    async with running(START_MS, market="cm", symbols=path) as (_, client):
        _, rows, _ = await get_json(
            client, "/klines", symbol="BTCUSD_PERP", interval="1m", limit="30"
        )
    for row in rows:
        assert [_kind(v) for v in row] == [_kind(v) for v in doc_row]
        assert [_decimals(v) for v in row if isinstance(v, str)] == [
            _decimals(v) for v in doc_row if isinstance(v, str)
        ]
