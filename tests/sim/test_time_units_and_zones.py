"""Spot's microsecond time unit (REST header, WebSocket URL) and UTC+8 buckets (REST timeZone,
``@+08:00`` streams)."""

from __future__ import annotations

import trio

from bmac_trio.binance.intervals import DAY_MS, HOUR_MS, MINUTE_MS

from .conftest import START_MS, get_json, next_kline, open_ws, running, ws_json

US = {"X-MBX-TIME-UNIT": "MICROSECOND"}
UTC8 = 8 * HOUR_MS


async def test_rest_microsecond_header_on_klines_and_server_time() -> None:
    async with running(START_MS + 1000, market="spot", symbols=4) as (_, client):
        params = {"symbol": "BTCUSDT", "interval": "1m", "endTime": str(START_MS - 1), "limit": "3"}
        ms_rows = (await client.get("/klines", params=params)).json()
        us_rows = (await client.get("/klines", params=params, headers=US)).json()
        assert [r[0] * 1000 for r in ms_rows] == [r[0] for r in us_rows]
        assert [r[6] * 1000 + 999 for r in ms_rows] == [r[6] for r in us_rows]
        assert [r[1:6] + r[7:] for r in ms_rows] == [r[1:6] + r[7:] for r in us_rows]
        lower = await client.get(
            "/klines", params=params, headers={"x-mbx-time-unit": "microsecond"}
        )
        assert lower.json() == us_rows
        server = (await client.get("/time", headers=US)).json()["serverTime"]
        assert abs(server - (START_MS + 1000) * 1000) < 5_000_000
        info = (await client.get("/exchangeInfo", headers=US)).json()
        assert info["serverTime"] > 10**15


async def test_futures_ignore_the_microsecond_header() -> None:
    async with running(START_MS + 1000, market="um", symbols=4) as (_, client):
        rows = (await client.get("/klines", params={"symbol": "BTCUSDT", "interval": "1m",
                                                    "limit": "1"}, headers=US)).json()  # fmt: skip
        assert rows[0][0] == START_MS


async def test_ws_time_unit_microsecond() -> None:
    with trio.fail_after(20):
        async with running(START_MS - 1000, speed=4.0, market="spot", symbols=4) as (sim, _):
            url = sim.ws_url + "/stream?streams=btcusdt@kline_1m&timeUnit=MICROSECOND"
            async with open_ws(url) as ws:
                event = (await next_kline(ws, closed=True))["data"]
            k = event["k"]
            open_ms = k["t"] // 1000  # START_MS - 1 min, unless subscribing came too late
            assert k["t"] == open_ms * 1000
            assert open_ms % MINUTE_MS == 0
            assert k["T"] == (open_ms + MINUTE_MS) * 1000 - 1
            assert event["E"] == sim.closing_push_ms("BTCUSDT", "1m", open_ms) * 1000
            async with open_ws(sim.ws_url + "/ws/btcusdt@kline_1m?timeUnit=microsecond") as ws:
                raw = await next_kline(ws, closed=False)
            assert raw["E"] > 10**15
            assert raw["k"]["t"] == (raw["E"] // 1000 // MINUTE_MS) * MINUTE_MS * 1000
            async with open_ws(sim.ws_url + "/ws/btcusdt@kline_1m") as ws:
                plain = await next_kline(ws, closed=False)
            assert plain["k"]["t"] == plain["E"] // MINUTE_MS * MINUTE_MS


async def test_rest_time_zone_moves_bucket_boundaries_only() -> None:
    async with running(START_MS + 1000, market="spot", symbols=4) as (sim, client):
        end = str(START_MS - 1)
        _, utc, _ = await get_json(client, "/klines", symbol="BTCUSDT", interval="1d",
                                   endTime=end, limit="2")  # fmt: skip
        _, cn, _ = await get_json(client, "/klines", symbol="BTCUSDT", interval="1d",
                                  endTime=end, limit="2", timeZone="8")  # fmt: skip
        assert [r[0] % DAY_MS for r in utc] == [0, 0]
        # UTC+8 midnight is 16:00 UTC; open times and close times stay UTC epochs.
        assert [r[0] for r in cn] == [START_MS - DAY_MS - UTC8, START_MS - UTC8]
        assert [r[6] - r[0] for r in cn] == [DAY_MS - 1, DAY_MS - 1]
        assert cn[0][4] == cn[1][1]  # chained: a candle opens at the previous close
        _, same, _ = await get_json(client, "/klines", symbol="BTCUSDT", interval="1d",
                                    endTime=end, limit="2", timeZone="+08:00")  # fmt: skip
        assert same == cn
        # Whole-hour zones leave hourly candles as they are.
        _, h_utc, _ = await get_json(client, "/klines", symbol="BTCUSDT", interval="1h",
                                     endTime=end, limit="3")  # fmt: skip
        _, h_cn, _ = await get_json(client, "/klines", symbol="BTCUSDT", interval="1h",
                                    endTime=end, limit="3", timeZone="8")  # fmt: skip
        assert h_cn == h_utc
        _, h_np, _ = await get_json(client, "/klines", symbol="BTCUSDT", interval="1h",
                                    endTime=end, limit="3", timeZone="05:45")  # fmt: skip
        assert [r[0] % HOUR_MS for r in h_np] == [15 * MINUTE_MS] * 3
        assert sim.ground_truth("BTCUSDT", "1h")[-1] == h_utc[-1]


async def test_utc8_kline_stream_buckets_in_utc8_and_matches_rest() -> None:
    # 15:59:59 UTC is 23:59:59 at UTC+8: the UTC+8 day candle closes, the UTC one does not.
    t0 = START_MS + 16 * HOUR_MS - 4000
    with trio.fail_after(20):
        async with running(t0, speed=2.0, market="spot", symbols=4) as (sim, client):
            url = sim.ws_url + "/stream?streams=btcusdt@kline_1d@+08:00/btcusdt@kline_1d"
            async with open_ws(url) as ws:
                frame = await next_kline(ws, closed=True)
                assert frame["stream"] == "btcusdt@kline_1d@+08:00"
                k = frame["data"]["k"]
                assert (k["t"], k["T"]) == (START_MS - UTC8, START_MS + 16 * HOUR_MS - 1)
                assert k["i"] == "1d"
                while (frame := await ws_json(ws))["stream"] != "btcusdt@kline_1d@+08:00":
                    pass
                assert frame["data"]["k"]["t"] == START_MS + 16 * HOUR_MS  # the next one forms
            _, rows, _ = await get_json(client, "/klines", symbol="BTCUSDT", interval="1d",
                                        startTime=str(k["t"]), limit="1", timeZone="8")  # fmt: skip
            assert rows[0] == [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"],
                               k["n"], k["V"], k["Q"], k["B"]]  # fmt: skip


async def test_utc8_stream_is_spot_only() -> None:
    async with (
        running(START_MS, market="um", symbols=4) as (sim, _),
        open_ws(sim.ws_url + "/market/ws") as ws,
    ):
        await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@kline_1d@+08:00"],"id":1}')
        reply = await ws_json(ws)
        assert reply["error"]["code"] == 2
