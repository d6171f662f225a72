"""Each fault on demand, triggered while the simulator runs, and counted in ``sim.stats``."""

from __future__ import annotations

import time

import orjson
import pytest
import trio
import trio_websocket

from .conftest import START_MS, get_json, next_kline, open_ws, running

MIN = 60_000
STREAMS = "/market/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m"


async def _texts_until(ws: trio_websocket.WebSocketConnection, clock, until_ms: int) -> list[str]:
    out: list[str] = []
    with trio.move_on_after(clock.to_real(max(0, until_ms - clock.now_ms()) / 1000)):
        while True:
            out.append(await ws.get_message())
    return out


async def _drain(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        await ws.get_message()


def _closings(texts: list[str]) -> list[dict]:
    frames = []
    for t in texts:
        try:
            f = orjson.loads(t)
        except orjson.JSONDecodeError:
            continue
        if f["data"]["k"]["x"]:
            frames.append(f)
    return frames


async def test_drop_some_connections() -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS + 1000, market="um", symbols=4) as (sim, _),
            open_ws(sim.ws_url + STREAMS) as a,
            open_ws(sim.ws_url + STREAMS) as b,
            open_ws(sim.ws_url + STREAMS) as c,
        ):
            await next_kline(c, closed=False)
            assert sim.stats.ws_connections_active == 3
            assert sim.faults.drop_connections(2) == 2
            for ws in (a, b):
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await _drain(ws)
            await next_kline(c, closed=False)  # the third one is untouched
            assert sim.stats.faults["drop"] == 2
            assert sim.stats.ws_connections_active == 1
            assert sim.faults.drop_connections() == 1
            with pytest.raises(trio_websocket.ConnectionClosed):
                await _drain(c)


async def test_silence_keeps_connection_but_sends_nothing() -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS + 1000, speed=60.0, market="um", symbols=4, min_real_update_s=0.1) as (
                sim,
                _,
            ),
            open_ws(sim.ws_url + STREAMS) as ws,
        ):
            await next_kline(ws, closed=False)
            quiet_from = sim.clock.now_ms()
            sim.faults.silence(30)
            texts = await _texts_until(ws, sim.clock, quiet_from + 45_000)
            times = [orjson.loads(t)["data"]["E"] for t in texts]
            assert not [t for t in times if quiet_from + 50 < t < quiet_from + 30_000]
            assert [t for t in times if t >= quiet_from + 30_000]  # same connection, again
            assert sim.stats.faults["silence"] == 1
            assert sim.stats.ws_connections_closed == 0


async def test_malformed_closing_frame() -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS - 2000, speed=8.0, market="um", symbols=4) as (sim, _),
            open_ws(sim.ws_url + STREAMS) as ws,
        ):
            sim.faults.send_malformed(1)
            texts = await _texts_until(ws, sim.clock, START_MS + 4000)
    bad = []
    for t in texts:
        try:
            orjson.loads(t)
        except orjson.JSONDecodeError:
            bad.append(t)
    assert len(bad) == 1
    assert bad[0].startswith('{"stream":"')
    assert len(_closings(texts)) == 1  # the other stream's closing push is intact
    assert sim.stats.faults["malformed"] == 1


async def test_duplicate_closing_frame() -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS - 2000, speed=8.0, market="um", symbols=4) as (sim, _),
            open_ws(sim.ws_url + STREAMS) as ws,
        ):
            sim.faults.send_duplicates(1)
            texts = await _texts_until(ws, sim.clock, START_MS + 4000)
    closings = [(f["stream"], f["data"]["k"]["t"]) for f in _closings(texts)]
    assert len(closings) == 3
    assert len(set(closings)) == 2
    assert sim.stats.faults["duplicate"] == 1


async def test_out_of_order_closing_frame() -> None:
    with trio.fail_after(20):
        async with (
            running(START_MS - 2000, speed=8.0, market="um", symbols=4) as (sim, _),
            open_ws(sim.ws_url + STREAMS) as ws,
        ):
            sim.faults.send_out_of_order(1)
            texts = await _texts_until(ws, sim.clock, START_MS + 4000)
    events = [orjson.loads(t)["data"] for t in texts]
    times = [e["E"] for e in events]
    assert times != sorted(times)  # an older event arrived after a newer one
    late = next(i for i in range(1, len(times)) if times[i] < times[i - 1])
    assert events[late]["k"]["x"] is True
    assert len(_closings(texts)) == 2  # nothing lost
    assert sim.stats.faults["out_of_order"] == 1


async def test_rest_errors_then_recovery() -> None:
    async with running(START_MS, market="um", symbols=4) as (sim, client):
        sim.faults.rest_errors(status=503, count=2)
        for _ in range(2):
            status, body, headers = await get_json(client, "/ping")
            assert status == 503
            assert set(body) == {"code", "msg"}
            assert "x-mbx-used-weight-1m" in headers
        status, body, _ = await get_json(client, "/ping")
        assert (status, body) == (200, {})
        sim.faults.rest_errors(status=500)
        status, body, _ = await get_json(client, "/time")
        assert (status, body["code"]) == (500, -1000)
        assert sim.stats.faults["rest_error"] == 3


async def test_slow_rest() -> None:
    async with running(START_MS, market="um", symbols=4) as (sim, client):
        sim.faults.slow_rest(0.3, count=1)
        t0 = time.monotonic()
        status, _, _ = await get_json(client, "/ping")
        slow = time.monotonic() - t0
        t0 = time.monotonic()
        await get_json(client, "/ping")
        fast = time.monotonic() - t0
        assert status == 200
        assert slow >= 0.3
        assert fast < 0.3
        assert sim.stats.faults["slow_rest"] == 1


async def test_forced_rate_limit_then_ban_if_ignored() -> None:
    async with running(START_MS, market="spot", symbols=4, ban_grace_s=0) as (sim, client):
        sim.faults.rate_limit(count=1, retry_after_s=5)
        status, body, headers = await get_json(client, "/ping")
        assert (status, body["code"]) == (429, -1003)
        assert headers["retry-after"] == "5"
        status, body, headers = await get_json(client, "/ping")  # did not wait
        assert status == 418
        assert int(headers["retry-after"]) == 120
        assert sim.stats.faults["rate_limit"] == 1


async def test_forced_rate_limit_obeyed_is_not_banned() -> None:
    async with running(START_MS, speed=50.0, market="um", symbols=4) as (sim, client):
        sim.faults.rate_limit(count=1, retry_after_s=2)
        status, _, headers = await get_json(client, "/ping")
        assert status == 429
        await sim.clock.sleep_until_ms(sim.clock.now_ms() + int(headers["retry-after"]) * 1000)
        status, _, _ = await get_json(client, "/ping")
        assert status == 200


async def test_requests_in_flight_when_429_was_sent_are_not_banned() -> None:
    async with running(START_MS, speed=10.0, market="um", symbols=4, ban_grace_s=0.5) as (
        sim,
        client,
    ):
        sim.faults.rate_limit(count=1, retry_after_s=30)
        statuses = []
        async with trio.open_nursery() as nursery:
            for _ in range(4):  # sent together: none can have seen the 429 yet

                async def one() -> None:
                    statuses.append((await get_json(client, "/ping"))[0])

                nursery.start_soon(one)
        assert sorted(statuses) == [429, 429, 429, 429]
        # Past the grace, still inside Retry-After: that is ignoring it.
        await sim.clock.sleep_until_ms(sim.clock.now_ms() + 6_000)
        status, _, _ = await get_json(client, "/ping")
        assert status == 418
