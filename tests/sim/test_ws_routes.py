"""Connections whose path names no stream (ccxt.pro's ``/ws/0``); replies before a 1008 close."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio_websocket

from .conftest import START_MS, WS_ROUTE, next_kline, open_ws, running, ws_json


async def _collect(ws: trio_websocket.WebSocketConnection, into: list[object]) -> None:
    while True:
        into.append(await ws_json(ws))


_BTC = {"spot": "btcusdt", "um": "btcusdt", "cm": "btcusd_perp"}


@pytest.mark.parametrize("market", ["spot", "um", "cm"])
@pytest.mark.parametrize("path", ["/ws/0", "/ws/7", "/stream?streams=", "/stream?streams=0/x"])
async def test_path_without_a_stream_name_is_accepted_and_silent(market: str, path: str) -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS + 1000, speed=4.0, market=market, symbols=6) as (sim, _),
            open_ws(sim.ws_url + WS_ROUTE[market] + path) as ws,
        ):
            await ws.send_message('{"method":"LIST_SUBSCRIPTIONS","id":1}')
            assert await ws_json(ws) == {"result": [], "id": 1}
            stream = f"{_BTC[market]}@kline_1m"
            await ws.send_message(
                orjson.dumps({"method": "SUBSCRIBE", "params": [stream], "id": 2}).decode()
            )
            assert await ws_json(ws) == {"result": None, "id": 2}
            frame = await next_kline(ws, closed=False)
            event = frame.get("data", frame)
            assert event["s"] == _BTC[market].upper()
            assert ("stream" in frame) is path.startswith("/stream")
        assert sim.stats.ws_connections_refused == 0


async def test_invalid_names_in_the_url_are_not_subscribed() -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS + 1000, market="spot", symbols=4) as (sim, _),
            open_ws(sim.ws_url + "/stream?streams=0/BTCUSDT@kline_1m/ethusdt@kline_1m") as ws,
        ):
            await ws.send_message('{"method":"LIST_SUBSCRIPTIONS","id":1}')
            while (frame := await ws_json(ws)).get("id") != 1:
                pass
            assert frame == {"result": ["ethusdt@kline_1m"], "id": 1}


@pytest.mark.parametrize(("market", "route", "limit"), [("spot", "", 5), ("um", "/market", 10)])
async def test_replies_due_before_a_1008_close_are_all_sent(
    market: str, route: str, limit: int
) -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS + 1000, market=market, symbols=4) as (sim, _),
            open_ws(sim.ws_url + route + "/ws/0") as ws,
        ):
            frames = [
                orjson.dumps(
                    {"method": "SUBSCRIBE", "params": [f"sim{i:03d}usdt@kline_1h"], "id": i}
                ).decode()
                for i in range(1, limit + 2)
            ]
            for frame in frames:  # back to back: the last one breaks the limit
                await ws.send_message(frame)
            replies: list[object] = []
            with pytest.raises(trio_websocket.ConnectionClosed) as info:
                await _collect(ws, replies)
            assert info.value.reason.code == 1008
            assert info.value.reason.reason == "Too many requests"
            assert replies == [{"result": None, "id": i} for i in range(1, limit + 1)]
