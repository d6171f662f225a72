"""WebSocket fidelity over real sockets: routes, control frames, caps, limits, cadence, cuts."""

from __future__ import annotations

import itertools

import orjson
import pytest
import trio
import trio_websocket

from bmac_trio.binance.intervals import parse_interval

from .conftest import START_MS, next_kline, open_ws, running, ws_json

K1M = "btcusdt@kline_1m"
BAD_STREAM = "invalid stream"


async def _drain(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def _flood_then_drain(ws: trio_websocket.WebSocketConnection, n: int) -> None:
    for i in range(n):
        await ws.send_message(
            orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 100 + i}).decode()
        )
    await _drain(ws)


async def _control(ws: trio_websocket.WebSocketConnection, msg: object) -> object:
    await ws.send_message(msg if isinstance(msg, str) else orjson.dumps(msg).decode())
    while True:
        frame = await ws_json(ws)
        if "result" in frame or "error" in frame:
            return frame


async def test_subscribe_unsubscribe_list_and_properties() -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS + 1000, market="um", symbols=6) as (sim, _),
            open_ws(sim.ws_url + "/market/ws") as ws,
        ):
            sub = {
                "method": "SUBSCRIBE",
                "params": ["btcusdt@kline_1m", "ethusdt@kline_5m"],
                "id": 1,
            }
            assert await _control(ws, sub) == {"result": None, "id": 1}
            assert await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3}) == {
                "result": ["btcusdt@kline_1m", "ethusdt@kline_5m"],
                "id": 3,
            }
            unsub = {"method": "UNSUBSCRIBE", "params": ["ethusdt@kline_5m"], "id": 312}
            assert await _control(ws, unsub) == {"result": None, "id": 312}
            assert await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 4}) == {
                "result": ["btcusdt@kline_1m"],
                "id": 4,
            }
            get = {"method": "GET_PROPERTY", "params": ["combined"], "id": 2}
            assert await _control(ws, get) == {"result": False, "id": 2}
            setp = {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}
            assert await _control(ws, setp) == {"result": None, "id": 5}
            assert await _control(ws, get) == {"result": True, "id": 2}
            frame = await next_kline(ws, closed=False)
            assert frame["stream"] == "btcusdt@kline_1m"


@pytest.mark.parametrize(
    ("market", "msg", "code", "text"),
    [
        ("um", "{not json", 3, "Invalid JSON"),
        ("um", {"params": [], "id": 1}, 2, "Invalid request"),
        ("um", {"method": "FOO", "params": [], "id": 1}, 2, "unknown variant"),
        ("um", {"method": "SUBSCRIBE", "params": [K1M], "id": "abc"}, 2, "request ID must be"),
        ("um", {"method": "SUBSCRIBE", "params": ["BTCUSDT@kline_1m"], "id": 2}, 2, BAD_STREAM),
        ("um", {"method": "SUBSCRIBE", "params": ["btcusdt@kline_7m"], "id": 2}, 2, BAD_STREAM),
        ("um", {"method": "SET_PROPERTY", "params": ["combined", "y"], "id": 5}, 1, "Boolean"),
        ("um", {"method": "GET_PROPERTY", "params": ["colour"], "id": 5}, 0, "Unknown property"),
        ("spot", {"method": "SUBSCRIBE", "params": [K1M], "id": "a-b"}, 2, "request ID must be"),
    ],
)  # fmt: skip
async def test_control_errors(market: str, msg: object, code: int, text: str) -> None:
    with trio.fail_after(20):
        async with running(START_MS + 1000, market=market, symbols=6) as (sim, _):
            route = "/market" if market == "um" else ""
            async with open_ws(sim.ws_url + route + "/ws") as ws:
                reply = await _control(ws, msg)
                assert reply["error"]["code"] == code
                assert text in reply["error"]["msg"]
                assert set(reply) == {"error", "id"}
                assert await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 9}) == {
                    "result": [],
                    "id": 9,
                }


async def test_spot_accepts_string_and_null_ids() -> None:
    async with (
        running(START_MS + 1000, market="spot", symbols=4) as (sim, _),
        open_ws(sim.ws_url + "/ws") as ws,
    ):
        msg = {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": "abc123"}
        assert await _control(ws, msg) == {"result": None, "id": "abc123"}
        msg = {"method": "LIST_SUBSCRIPTIONS", "id": None}
        assert await _control(ws, msg) == {"result": ["btcusdt@kline_1m"], "id": None}


async def test_raw_and_combined_forms() -> None:
    with trio.fail_after(20):
        async with running(
            START_MS + 1000, speed=10.0, market="spot", symbols=4, min_real_update_s=0.05
        ) as (
            sim,
            _,
        ):
            async with open_ws(sim.ws_url + "/ws/btcusdt@kline_1m/ethusdt@kline_1m") as ws:
                event = await next_kline(ws, closed=False)
                assert event["e"] == "kline"
                assert "stream" not in event
            url = sim.ws_url + "/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m"
            async with open_ws(url) as ws:
                frame = await next_kline(ws, closed=False)
                assert list(frame) == ["stream", "data"]
                assert frame["stream"] == frame["data"]["s"].lower() + "@kline_1m"


async def test_um_klines_only_on_market_route() -> None:
    with trio.fail_after(20):
        async with running(START_MS + 59_000, speed=5.0, market="um", symbols=4) as (sim, _):
            url = sim.ws_url + "/ws/btcusdt@kline_1m"
            async with open_ws(url) as unrouted:
                routed_url = sim.ws_url + "/market/ws/btcusdt@kline_1m"
                async with open_ws(routed_url) as routed:
                    await next_kline(routed, closed=True)
                await unrouted.send_message('{"method":"LIST_SUBSCRIPTIONS","id":1}')
                first = await ws_json(unrouted)  # no kline frame came before the reply
                assert first == {"result": ["btcusdt@kline_1m"], "id": 1}
            for route in ("/public", "/private"):
                async with open_ws(sim.ws_url + route + "/ws/btcusdt@kline_1m") as other:
                    await other.send_message(
                        '{"method":"GET_PROPERTY","params":["combined"],"id":2}'
                    )
                    assert await ws_json(other) == {"result": False, "id": 2}


async def test_stream_cap_refused_in_url_and_in_subscribe() -> None:
    with trio.fail_after(20):
        async with running(START_MS + 1000, market="um", symbols=4) as (sim, _):
            names = [f"sim{i:03d}usdt@kline_1m" for i in range(201)]
            url = sim.ws_url + "/market/stream?streams=" + "/".join(names)
            with pytest.raises(trio_websocket.ConnectionRejected) as info:
                async with open_ws(url):
                    pass
            assert info.value.status_code == 400
            url = sim.ws_url + "/market/stream?streams=" + "/".join(names[:200])
            async with open_ws(url) as ws:
                msg = {"method": "SUBSCRIBE", "params": [names[200]], "id": 7}
                reply = await _control(ws, msg)
                assert reply["error"]["code"] == 2
                assert reply["id"] == 7
                reply = await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 8})
                assert len(reply["result"]) == 200
            assert sim.stats.ws_connections_refused == 1


@pytest.mark.parametrize(("market", "route", "limit"), [("um", "/market", 10), ("spot", "", 5)])
async def test_incoming_message_rate_limit_disconnects(market: str, route: str, limit: int) -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS + 1000, market=market, symbols=4) as (sim, _),
            open_ws(sim.ws_url + route + "/ws") as ws,
        ):
            for i in range(limit):  # at the limit: answered
                await ws.send_message(
                    orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode()
                )
            for i in range(limit):
                assert (await ws_json(ws))["id"] == i
            with pytest.raises(trio_websocket.ConnectionClosed) as info:
                await _flood_then_drain(ws, limit + 1)  # over the limit within one second
            assert info.value.reason.code == 1008
            assert info.value.reason.reason == "Too many requests"


async def test_closing_push_delay_and_values() -> None:
    names = ["btcusdt", "ethusdt", "sim001usdt", "sim002usdt", "sim003usdt"]
    with trio.fail_after(20):
        async with running(START_MS - 2_000, speed=8.0, market="um", symbols=10) as (sim, _):
            url = sim.ws_url + "/market/stream?streams=" + "/".join(f"{n}@kline_1m" for n in names)
            async with open_ws(url) as ws:
                seen = {}
                while len(seen) < len(names):
                    frame = await next_kline(ws, closed=True)
                    seen[frame["data"]["s"]] = frame["data"]
            for symbol, event in seen.items():
                k = event["k"]
                assert k["t"] == START_MS - 60_000
                assert 200 <= event["E"] - (k["T"] + 1) <= 2000
                assert event["E"] == sim.closing_push_ms(symbol, "1m", k["t"])
                row = sim.ground_truth(symbol, "1m")[-1]
                assert [
                    k["t"],
                    k["o"],
                    k["h"],
                    k["l"],
                    k["c"],
                    k["v"],
                    k["T"],
                    k["q"],
                    k["n"],
                    k["V"],
                    k["Q"],
                    k["B"],
                ] == row
            delays = {e["E"] - e["k"]["T"] for e in seen.values()}
            assert len(delays) > 1  # per-symbol, not one fixed delay


async def test_futures_updates_only_when_changed_and_after_first_trade() -> None:
    with trio.fail_after(20):
        async with running(START_MS + 1000, speed=2.0, market="um", symbols=8) as (sim, _):
            url = sim.ws_url + "/market/stream?streams=btcusdt@kline_1m/sim001usdt@kline_1m"
            async with open_ws(url) as ws:
                frames = []
                with trio.move_on_after(1.0):
                    while True:
                        frames.append(await next_kline(ws, closed=False))
            assert frames
            last: dict[str, tuple] = {}
            iv = parse_interval("1m")
            for f in frames:
                k = f["data"]["k"]
                assert k["n"] > 0
                key = (k["t"], k["n"], k["c"])
                assert last.get(f["stream"]) != key
                last[f["stream"]] = key
                assert k["t"] == iv.floor(f["data"]["E"])
            # 250 ms cadence in exchange time, here 2x speed but throttled to >= 250 ms real.
            by_stream = [f["data"]["E"] for f in frames if f["stream"] == "btcusdt@kline_1m"]
            gaps = [b - a for a, b in itertools.pairwise(by_stream)]
            assert gaps
            assert all(g >= 250 for g in gaps), gaps
            assert sum(gaps) / len(gaps) >= 450, gaps


async def test_connection_cut_after_lifetime() -> None:
    with trio.fail_after(20):
        async with running(START_MS, speed=10.0, market="cm", symbols=4, ws_max_lifetime_s=3.0) as (
            sim,
            _,
        ):
            async with open_ws(sim.ws_url + "/ws/btcusd_perp@kline_1m") as ws:
                opened = sim.clock.now_ms()
                with pytest.raises(trio_websocket.ConnectionClosed) as info:
                    await _drain(ws)
                assert info.value.reason.code == 1000
                # The server counts from the handshake, a moment before ``opened``.
                assert sim.clock.now_ms() - opened >= 2900
            assert sim.stats.ws_connections_closed == 1


async def test_server_sends_pings() -> None:
    """hypercorn pings at the market's period (exchange time, here 20 s spot at speed 100)."""
    import socket

    import wsproto
    import wsproto.events as ev

    async with running(START_MS, speed=100.0, market="spot", symbols=2) as (sim, _):
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", sim.port)
            async with stream:
                conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
                await stream.send_all(conn.send(ev.Request(host="127.0.0.1", target="/ws")))
                pings = 0
                while pings < 2:
                    data = await stream.receive_some(4096)
                    assert data
                    conn.receive_data(data)
                    for event in conn.events():
                        if isinstance(event, ev.Ping):
                            pings += 1
                            await stream.send_all(conn.send(event.response()))
                assert socket  # the raw socket path above is the real one


async def test_spot_one_second_stream() -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS, speed=4.0, market="spot", symbols=4, min_real_update_s=0.05) as (
                sim,
                _,
            ),
            open_ws(sim.ws_url + "/ws/btcusdt@kline_1s") as ws,
        ):
            closing, updates = [], []
            while len(closing) < 3:
                event = await ws_json(ws)
                (closing if event["k"]["x"] else updates).append(event)
    opens = [e["k"]["t"] for e in closing]
    assert [b - a for a, b in itertools.pairwise(opens)] == [1000, 1000]
    # like the real capture (E one ms after T): before the next one-second candle ends
    assert all(1 <= e["E"] - e["k"]["T"] - 1 <= 50 for e in closing)
    assert all(e["k"]["i"] == "1s" for e in closing + updates)
    assert updates  # mid-second updates of the forming candle
    assert all(u["E"] - u["k"]["t"] < 1000 for u in updates)


async def test_spot_cap_is_1024_streams_per_connection() -> None:
    with trio.fail_after(20):
        async with running(START_MS, market="spot", symbols=4) as (sim, _):
            names = [f"sim{i:04d}usdt@kline_1m" for i in range(1025)]
            url = sim.ws_url + "/stream?streams=" + "/".join(names[:1024])
            async with open_ws(url) as ws:
                reply = await _control(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
                assert len(reply["result"]) == 1024
                reply = await _control(ws, {"method": "SUBSCRIBE", "params": names[1024:], "id": 2})
                assert reply["error"]["code"] == 2
            with pytest.raises(trio_websocket.ConnectionRejected):
                async with open_ws(sim.ws_url + "/stream?streams=" + "/".join(names)):
                    pass


async def test_spot_pushes_every_two_seconds_and_closes_zero_trade_candles() -> None:
    with trio.fail_after(20):
        async with (
            running(
                START_MS, speed=8.0, market="spot", symbols=4, min_real_update_s=0.05,
                zero_trade_fraction=0.5,
            ) as (sim, _),
            open_ws(sim.ws_url + "/stream?streams=ethbtc@kline_1m/ethbtc@kline_1s") as ws,
        ):  # fmt: skip
            minute, zero_closings = [], []
            while len(minute) < 4 or not zero_closings:
                frame = await ws_json(ws)
                k = frame["data"]["k"]
                if frame["stream"] == "ethbtc@kline_1m" and not k["x"]:
                    minute.append(frame["data"]["E"])
                if k["x"] and k["n"] == 0:
                    zero_closings.append(frame["data"])
    gaps = [b - a for a, b in itertools.pairwise(minute)]
    # every 2 s (a grid in exchange time: a late wake-up shortens the next gap), changed or not
    assert all(g >= 1000 for g in gaps), gaps
    assert 1800 <= sum(gaps) / len(gaps) <= 2800, gaps
    event = zero_closings[0]
    k = event["k"]
    assert (k["f"], k["L"]) == (-1, -1)
    assert k["o"] == k["h"] == k["l"] == k["c"]
    assert k["v"] == k["q"] == k["V"] == k["Q"] == "0.00000000"
    assert 1 <= event["E"] - k["T"] - 1 <= 50  # pushed even though nothing traded
    truth = {r[0]: r for r in sim.ground_truth("ETHBTC", "1s", since_ms=START_MS)}
    assert truth[k["t"]][8] == 0
