"""JetStream publishing through faults: a recorder SIGKILLed and restarted, NATS down a minute.

Real nats-server processes; the simulator and the recorder as in ``tests/recorder``.
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
import trio

from bmac_trio.binance.candles import FLOAT_COLUMNS, Candle
from bmac_trio.binance.protocol import candles_to_frame
from bmac_trio.bus.nats_publisher import NatsPublisher
from bmac_trio.bus.nats_server import NatsServer
from bmac_trio.clock import ScaledWallClock
from bmac_trio.sim import SimConfig, open_simulator
from bmac_trio.store.config import load_config

from ..recorder.conftest import (
    START_MS,
    Env,
    assert_matches_truth,
    read_candles,
    recording,
    write_config,
)
from .conftest import ChildProcess, nats_key, read_stream, stream_candles

MARKET = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 50}


def assert_stream_holds_files(candles: list[tuple[str, int]], config, symbols: list[str]) -> None:
    """No candle twice in the stream, and every candle of the recorder's files is in it."""
    assert len(candles) == len(set(candles)), "duplicates in the stream"
    by_symbol: dict[str, set[int]] = defaultdict(set)
    for symbol, open_ms in candles:
        by_symbol[symbol].add(open_ms)
    for symbol in symbols:
        opens = read_candles(config, symbol)["candle_begin_time"].dt.epoch("ms").to_list()
        lost = sorted(set(opens) - by_symbol[symbol])
        assert not lost, f"{symbol}: {len(lost)} candles of the file not in the stream: {lost[:5]}"


async def test_recorder_sigkilled_and_restarted_no_duplicates_nothing_missing(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    clock = ScaledWallClock(START_MS, 120.0, time.time())
    base = tmp_path / "data"
    with trio.fail_after(90):
        async with open_simulator(SimConfig(market="um", symbols=12, seed=163), clock=clock) as sim:
            write_config(
                base,
                **MARKET,
                num_socket_listeners=2,
                rest_url=sim.rest_url,
                ws_url=sim.ws_url,
                publish=False,
                nats=nats_key(nats_server),
            )
            config = load_config(base)
            args = ["run", str(base), "--clock", clock.spec()]
            async with trio.open_nursery() as nursery:
                first = ChildProcess(args)
                await first.start(nursery)
                await first.wait_for("all symbols ready")
                await first.wait_for("update Runtime")
                # kill in the middle of the next period's writes and publishes
                await clock.sleep_until_ms(clock.now_ms() + 700)
                first.kill()
                assert await first.process.wait() == -signal.SIGKILL  # type: ignore[union-attr]
                second = ChildProcess(args)
                await second.start(nursery)
                await second.wait_for("all symbols ready")
                await second.wait_for("update Runtime")
                await second.wait_for("all symbols ready")
                stopped_ms = clock.now_ms()
                assert await second.stop() == 0
            symbols = sorted(p.stem for p in config.candle_dir.glob("*.pqt"))
            assert len(symbols) >= 4, sorted(p.name for p in config.candle_dir.iterdir())
            env = Env(sim=sim, clock=clock, base=base, config=config, handle=None)  # type: ignore[arg-type]
            assert_matches_truth(
                env, symbols, through_ms=config.interval.floor(stopped_ms) - 60_000
            )
    assert config.nats is not None
    messages = await read_stream([nats_server.url], config.nats.stream, config.nats.subject_prefix)
    candles = stream_candles(messages)
    assert_stream_holds_files(candles, config, symbols)
    # both recorders published: two epochs in the headers, one copy of each candle
    epochs = {
        m.headers["Bmac-Header"].split('"epoch":"')[1][:32]
        for m in messages
        if m.headers and "Bmac-Header" in m.headers
    }
    assert len(epochs) == 2


@pytest.mark.parametrize("down_min", [0, 50])
async def test_a_page_cut_off_behind_newer_live_candles_is_published_at_the_next_start(
    tmp_path: Path, nats_server: NatsServer, down_min: int
) -> None:
    # the suite caught it: SIM003USDT's live candle was acked while its history page, queued
    # behind it, was not when the recorder was SIGKILLed; the restart only looked past the
    # stream's newest candle, so 45 candles of its file never reached the stream
    base = tmp_path / "data"
    write_config(base, **MARKET, publish=False, nats=nats_key(nats_server))
    config = load_config(base)
    symbol, live_ms = "BTCUSDT", START_MS - START_MS % 60_000
    candles = [
        Candle(symbol=symbol, open_ms=live_ms + k * 60_000, **dict.fromkeys(FLOAT_COLUMNS, 1.0 + k))
        for k in range(-3, 2)
    ]
    # restarted ``down_min`` minutes after the live candle opened: the stream keeps
    # num_candles + 2 = 52 minutes, so after 50 the oldest candle (3 minutes before it) has aged
    # out of it and is not published again
    restart_ms = live_ms + down_min * 60_000
    expected = [c for c in candles if c.open_ms >= restart_ms - 52 * 60_000]
    assert len(expected) == (5 if down_min == 0 else 4)
    with trio.fail_after(30):
        first = NatsPublisher(config)
        first.candles(symbol, candles[3:4], source="ws", received=trio.current_time())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first.run)
            await first.wait_until(lambda p: p.backlog == 0)
            nursery.cancel_scope.cancel()  # killed before the history page was queued
        second = NatsPublisher(config, now_ms=lambda: restart_ms)
        second.resume({symbol: candles_to_frame(candles, config.interval), "ETHUSDT": None})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(second.run)
            await second.wait_until(lambda p: p.backlog == 0)
            nursery.cancel_scope.cancel()
        assert config.nats is not None
        messages = await read_stream(
            [nats_server.url], config.nats.stream, config.nats.subject_prefix
        )
    assert sorted(stream_candles(messages)) == [(symbol, c.open_ms) for c in expected]


async def test_nats_down_for_a_minute_recorder_keeps_writing_and_publishes_the_backlog(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    alerts: list[tuple[str, str]] = []
    with trio.fail_after(60):
        async with recording(
            tmp_path,
            SimConfig(market="um", symbols=5, seed=164),
            speed=60.0,
            publish=False,
            nats=nats_key(nats_server),
            **MARKET,
        ) as env:
            publisher = env.handle.nats
            publisher.alert = lambda kind, text: alerts.append((kind, text))
            done = len(await env.periods(2))
            await publisher.wait_until(lambda p: p.backlog == 0)
            await trio.to_thread.run_sync(nats_server.stop)  # SIGTERM by PID
            # a simulated minute and more: the recorder completes periods on its own disk
            await env.periods(done + 2)
            await publisher.wait_until(lambda p: p.state == "down")
            assert publisher.backlog > 0
            assert [kind for kind, _ in alerts] == ["nats"]
            assert "unreachable" in alerts[0][1]
            await trio.to_thread.run_sync(nats_server.start)  # same port, same storage
            await publisher.wait_until(lambda p: p.state == "connected" and p.backlog == 0)
            assert "reachable again" in alerts[-1][1]
            completed = list(env.handle.stats.completed)
            symbols = sorted(env.handle.symbols)
            assert_matches_truth(env, symbols, through_ms=completed[-1])
            assert env.config.nats is not None
            messages = await read_stream(
                [nats_server.url], env.config.nats.stream, env.config.nats.subject_prefix
            )
    assert_stream_holds_files(stream_candles(messages), env.config, symbols)
    periods = [m for m in messages if m.suffix == "period"]
    ids = [m.headers["Nats-Msg-Id"] for m in periods if m.headers]
    for run_time in completed:
        assert f"period.{run_time}" in ids
