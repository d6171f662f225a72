"""Continuous contracts: NEXT_QUARTER contracts, quarters that roll, continuousKline streams."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from bmac_trio.binance.intervals import MINUTE_MS
from bmac_trio.sim import SimConfig
from bmac_trio.sim._config import Scenario
from bmac_trio.sim._exchange import Exchange

from .conftest import START_MS, WS_ROUTE, get_json, open_ws, running, ws_json

QUOTE = {"um": "USDT", "cm": "USD"}
CQ, NQ, THIRD = "260327", "260626", "260925"  # quarterly expiries after START_MS
SYMBOLS = {"um": 8, "cm": 8}


def _row(k: dict[str, Any]) -> list[Any]:
    return [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"],
            k["Q"], k["B"]]  # fmt: skip


async def _klines(client: Any, symbol: str, start: int, end: int) -> list[list[Any]]:
    _, rows, _ = await get_json(client, "/klines", symbol=symbol, interval="1m",
                                startTime=str(start), endTime=str(end), limit="100")  # fmt: skip
    return rows


async def _continuous(client: Any, pair: str, ctype: str, start: int, end: int) -> Any:
    window = {"startTime": str(start), "endTime": str(end), "limit": "100"}
    return await get_json(
        client, "/continuousKlines", pair=pair, contractType=ctype, interval="1m", **window
    )


@pytest.mark.parametrize("market", ["um", "cm"])
async def test_next_quarter_contracts_listed_and_served(market: str) -> None:
    async with running(START_MS + 1000, market=market, symbols=SYMBOLS[market]) as (_, client):
        _, info, _ = await get_json(client, "/exchangeInfo")
        types = {s["symbol"]: s["contractType"] for s in info["symbols"]}
        q = QUOTE[market]
        for base in ("BTC", "ETH"):
            assert types[f"{base}{q}_{CQ}"] == "CURRENT_QUARTER"
            assert types[f"{base}{q}_{NQ}"] == "NEXT_QUARTER"
        assert f"BTC{q}_{THIRD}" not in types  # listed only when the quarters roll
        a, b = START_MS - 5 * MINUTE_MS, START_MS - MINUTE_MS
        status, cont, _ = await _continuous(client, f"BTC{q}", "NEXT_QUARTER", a, b)
        assert status == 200
        assert len(cont) == 5
        assert cont == await _klines(client, f"BTC{q}_{NQ}", a, b)


async def test_quarters_roll_at_expiry() -> None:
    """The current quarter expired 5 minutes ago: next became current, a new next is listed."""
    expiry = START_MS - 5 * MINUTE_MS
    scenario = Scenario(deliveries=((f"BTCUSDT_{CQ}", expiry),))
    async with running(START_MS, market="um", symbols=8, scenario=scenario) as (_, client):
        _, info, _ = await get_json(client, "/exchangeInfo")
        by_name = {s["symbol"]: s for s in info["symbols"]}
        old, nxt, new = (by_name[f"BTCUSDT_{d}"] for d in (CQ, NQ, THIRD))
        assert (old["status"], old["contractType"]) == ("DELIVERING", "CURRENT_QUARTER")
        assert (nxt["status"], nxt["contractType"]) == ("TRADING", "CURRENT_QUARTER")
        assert (new["status"], new["contractType"]) == ("TRADING", "NEXT_QUARTER")
        assert new["onboardDate"] == expiry
        assert by_name[f"ETHUSDT_{NQ}"]["contractType"] == "NEXT_QUARTER"  # no roll for ETH
        a, b = expiry - 3 * MINUTE_MS, expiry + 2 * MINUTE_MS
        _, current, _ = await _continuous(client, "BTCUSDT", "CURRENT_QUARTER", a, b)
        _, following, _ = await _continuous(client, "BTCUSDT", "NEXT_QUARTER", a, b)
        before = await _klines(client, f"BTCUSDT_{CQ}", a, b)
        after = await _klines(client, f"BTCUSDT_{NQ}", a, b)
        newest = await _klines(client, f"BTCUSDT_{THIRD}", a, b)
        assert [r[0] for r in before] == [a, a + MINUTE_MS, a + 2 * MINUTE_MS]
        assert [r[0] for r in newest] == [expiry, expiry + MINUTE_MS, expiry + 2 * MINUTE_MS]
        assert current == before + [r for r in after if r[0] >= expiry]
        assert following == [r for r in after if r[0] < expiry] + newest


def _shape(event: dict[str, Any], pair: str, ctype: str) -> None:
    assert list(event) == ["e", "E", "ps", "ct", "k"]
    assert (event["e"], event["ps"], event["ct"]) == ("continuous_kline", pair, ctype)
    assert "s" not in event["k"]
    assert list(event["k"]) == ["t", "T", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x",
                                "q", "V", "Q", "B"]  # fmt: skip


@pytest.mark.parametrize("market", ["um", "cm"])
async def test_continuous_kline_streams_close_like_rest(market: str) -> None:
    pair = f"BTC{QUOTE[market]}"
    kinds = {"perpetual": "PERPETUAL", "current_quarter": "CURRENT_QUARTER",
             "next_quarter": "NEXT_QUARTER"}  # fmt: skip
    names = [f"{pair.lower()}_{k}@continuousKline_1m" for k in kinds]
    with trio.fail_after(30):
        async with running(START_MS - 1500, speed=8.0, market=market, symbols=8) as (sim, client):
            url = sim.ws_url + WS_ROUTE[market] + "/stream?streams=" + "/".join(names)
            closing: dict[str, dict[str, Any]] = {}
            async with open_ws(url) as ws:
                while len(closing) < len(names):
                    frame = await ws_json(ws)
                    kind = frame["stream"].split("@")[0].split("_", 1)[1]
                    _shape(frame["data"], pair, kinds[kind])
                    if frame["data"]["k"]["x"]:
                        closing.setdefault(kinds[kind], frame["data"])
            # (START_MS - 1 min normally; a minute later if the machine was too slow to
            # subscribe before that candle's closing push)
            for ctype, event in closing.items():
                t = event["k"]["t"]
                assert t % MINUTE_MS == 0
                status, rows, _ = await _continuous(client, pair, ctype, t, t)
                assert status == 200
                assert rows == [_row(event["k"])]
            perp = "BTCUSDT" if market == "um" else "BTCUSD_PERP"
            for ctype, symbol in (("PERPETUAL", perp), ("NEXT_QUARTER", f"{pair}_{NQ}")):
                k = closing[ctype]["k"]
                assert [_row(k)] == await _klines(client, symbol, k["t"], k["t"])


async def test_continuous_stream_follows_the_roll_and_unknown_types_are_invalid() -> None:
    expiry = START_MS + MINUTE_MS
    scenario = Scenario(deliveries=((f"BTCUSDT_{CQ}", expiry),))
    with trio.fail_after(30):
        async with running(expiry - 1500, speed=4.0, market="um", symbols=8, scenario=scenario) as (
            sim,
            client,
        ):
            async with open_ws(sim.ws_url + "/market/ws") as ws:
                await ws.send_message(
                    '{"method":"SUBSCRIBE","params":["btcusdt_current_quarter@continuousKline_1m",'
                    '"btcusdt_next_quarter@continuousKline_1m"],"id":1}'
                )
                assert await ws_json(ws) == {"result": None, "id": 1}
                await ws.send_message(
                    '{"method":"SUBSCRIBE","params":["btcusdt_next_month@continuousKline_1m"],'
                    '"id":2}'
                )
                assert (await ws_json(ws))["error"]["code"] == 2
                forming: dict[str, dict[str, Any]] = {}
                while len(forming) < 2:
                    event = await ws_json(ws)
                    if event["k"]["t"] == expiry and not event["k"]["x"]:
                        forming.setdefault(event["ct"], event)
            # The first candle after the expiry comes from the contracts that now hold the roles.
            for ctype, symbol in (("CURRENT_QUARTER", NQ), ("NEXT_QUARTER", THIRD)):
                k = forming[ctype]["k"]
                rows = await _klines(client, f"BTCUSDT_{symbol}", expiry, expiry)
                assert rows
                assert k["o"] == rows[0][1]


async def test_um_lists_tradifi_perpetuals() -> None:
    with trio.fail_after(20):
        async with running(START_MS - 1500, speed=8.0, market="um", symbols=8) as (sim, client):
            _, info, _ = await get_json(client, "/exchangeInfo")
            tradifi = {
                s["symbol"]: s for s in info["symbols"] if s["contractType"] == "TRADIFI_PERPETUAL"
            }
            assert set(tradifi) == {"TSLAUSDT", "XAUUSDT", "SPYUSDT"}
            tsla = tradifi["TSLAUSDT"]
            assert (tsla["pair"], tsla["quoteAsset"], tsla["status"]) == ("TSLAUSDT", "USDT",
                                                                           "TRADING")  # fmt: skip
            a = START_MS - 3 * MINUTE_MS
            _, cont, _ = await _continuous(client, "TSLAUSDT", "TRADIFI_PERPETUAL", a, a)
            assert cont == await _klines(client, "TSLAUSDT", a, a)
            url = sim.ws_url + "/market/ws/tslausdt_tradifi_perpetual@continuousKline_1m"
            async with open_ws(url) as ws:
                while not (event := await ws_json(ws))["k"]["x"]:
                    pass
            _shape(event, "TSLAUSDT", "TRADIFI_PERPETUAL")
            t = event["k"]["t"]
            assert [_row(event["k"])] == await _klines(client, "TSLAUSDT", t, t)
            # not on COIN-M, and small UM markets keep their crypto contracts only
        async with running(START_MS, market="cm", symbols=8) as (_, cm):
            status, body, _ = await _continuous(cm, "BTCUSD", "TRADIFI_PERPETUAL", a, a)
            assert (status, body["code"]) == (400, -1121)
        assert "TSLAUSDT" not in Exchange(SimConfig(market="um", symbols=5), START_MS).specs
