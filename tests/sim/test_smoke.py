"""The simulator serves REST and WebSocket on one port and agrees with its ground truth."""

from __future__ import annotations

import httpx
import trio

from bmac_trio.clock import TrioClock
from bmac_trio.sim import SimConfig, open_simulator

from .conftest import START_MS, get_json, open_ws, ws_json


async def test_rest_and_ws_agree_with_ground_truth() -> None:
    clock = TrioClock(start_ms=START_MS - 3_000, speed=20.0)
    with trio.fail_after(20):
        async with open_simulator(SimConfig(market="um", symbols=8), clock=clock) as sim:
            assert sim.rest_url.startswith("http://127.0.0.1:")
            assert "BTCUSDT" in sim.trading_symbols()
            url = sim.ws_url + "/market/stream?streams=btcusdt@kline_1m"
            async with open_ws(url) as ws:
                while True:
                    frame = await ws_json(ws)
                    if frame["data"]["k"]["x"]:
                        break
            k = frame["data"]["k"]
            truth = sim.ground_truth("BTCUSDT", "1m")
            assert truth[-1][0] == k["t"] == START_MS - 60_000
            assert [k["o"], k["h"], k["l"], k["c"], k["v"]] == truth[-1][1:6]
            async with httpx.AsyncClient() as client:
                status, rows, headers = await get_json(
                    client, sim.rest_url + "/fapi/v1/klines", symbol="BTCUSDT", interval="1m",
                    endTime=str(START_MS - 60_000), limit="1000",
                )  # fmt: skip
            assert status == 200
            assert rows == truth[-1000:]
            assert headers["x-mbx-used-weight-1m"] == "5"
            stats = sim.stats
            assert stats.ws_connections_opened == stats.ws_connections_closed == 1
            assert stats.ws_messages_sent >= stats.ws_closing_events >= 1
            assert stats.rest_requests == 1
            assert stats.rest_by_status[200] == 1
            assert stats.weight_per_ip == {"127.0.0.1": 5}
            assert not stats.faults
