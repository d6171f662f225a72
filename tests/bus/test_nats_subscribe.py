"""``bmac_kit.subscribe("nats://…")``: the live bus's API, from JetStream (issue 16)."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import trio

import bmac_kit
from bmac_trio.bus.nats_server import NatsServer
from bmac_trio.sim import SimConfig

from ..recorder.conftest import read_candles, recording
from .conftest import nats_key

MARKET = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 50}


async def test_subscribe_over_nats_fills_from_the_stream_then_goes_live(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    with trio.fail_after(60):
        async with recording(
            tmp_path,
            SimConfig(market="um", symbols=8, seed=166),
            speed=60.0,
            publish=False,
            nats=nats_key(nats_server),
            **MARKET,
        ) as env:
            await env.periods(1)
            seen: list[tuple[str, int]] = []
            async with bmac_kit.subscribe(nats_server.url) as market:
                market.on_candle(lambda e: seen.append((e.candle.symbol, e.candle.open_ms)))
                # the window holds the history before anything live arrives
                assert set(market.window.symbols()) == set(env.handle.symbols)
                async with aclosing(market.periods()) as periods:
                    await periods.__anext__()  # its candles may have come with the history
                    period = await periods.__anext__()  # live from its first candle
                assert period.complete
                assert set(period.ready) == set(env.handle.symbols)
                open_ms = env.config.interval.add(period.run_time_ms, -1)
                live = sorted(symbol for symbol, t in seen if t == open_ms)
                assert live == sorted(env.handle.symbols)
                await env.handle.wait_until(lambda h: period.run_time_ms in h.stats.completed)
                await env.handle.dispatcher.idle.wait()  # type: ignore[union-attr]
                for symbol in sorted(env.handle.symbols):
                    on_disk = read_candles(env.config, symbol)
                    on_disk = on_disk.filter(
                        on_disk["candle_end_time"].dt.epoch("ms") <= period.run_time_ms
                    )
                    mine = market.window.frame(symbol)
                    mine = mine.filter(mine["candle_end_time"].dt.epoch("ms") <= period.run_time_ms)
                    assert mine.tail(on_disk.height).equals(on_disk.tail(mine.height)), symbol
                    row = period.candles.filter(period.candles["symbol"] == symbol)
                    assert row.height == 1
                    assert row.drop("symbol").equals(on_disk.tail(1)), symbol


async def test_subscribe_over_nats_under_asyncio(tmp_path: Path, nats_server: NatsServer) -> None:
    import asyncio

    async def one_live_period(url: str) -> tuple[int, tuple[str, ...], int]:
        async with (
            bmac_kit.subscribe(url) as market,
            aclosing(market.periods()) as periods,
        ):
            await periods.__anext__()
            period = await periods.__anext__()
            return period.run_time_ms, period.ready, period.candles.height

    with trio.fail_after(120):  # a loaded machine: asyncio.run starts in a thread
        async with recording(
            tmp_path,
            SimConfig(market="um", symbols=8, seed=167),
            speed=60.0,
            publish=False,
            nats=nats_key(nats_server),
            **MARKET,
        ) as env:
            await env.periods(1)
            url = f"{nats_server.url}?stream={env.config.nats.stream}"  # type: ignore[union-attr]
            run_time, ready, rows = await trio.to_thread.run_sync(asyncio.run, one_live_period(url))
            assert run_time in env.handle.stats.completed
            assert sorted(ready) == sorted(env.handle.symbols)
            assert rows == len(ready)
