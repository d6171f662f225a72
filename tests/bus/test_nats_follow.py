"""The market on NATS JetStream, with real nats-server processes (issue 16).

The recorder runs against the simulator and publishes to JetStream; ``bmac-trio follow``
runs as another process and must keep the same files as the recorder, from the stream alone.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import trio

from bmac_trio.bus.nats_server import NatsServer
from bmac_trio.sim import SimConfig
from bmac_trio.store.layout import run_time_label

from ..recorder.conftest import recording
from .conftest import (
    assert_follower_equals,
    follower_process,
    nats_key,
    read_stream,
    stream_candles,
    wait_period,
)

SPEED = 60.0
MARKET = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 50}


async def test_follower_process_keeps_the_recorders_files(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    follower_dir = tmp_path / "follower"
    with trio.fail_after(60):
        async with (
            recording(
                tmp_path,
                SimConfig(market="um", symbols=5, seed=161),
                speed=SPEED,
                nats=nats_key(nats_server),
                **MARKET,
            ) as env,
            trio.open_nursery() as nursery,
        ):
            follower = follower_process(nats_server.url, follower_dir)
            await follower.start(nursery)
            completed = await env.periods(3)
            await wait_period(follower, env.config, completed[2])
            compared = assert_follower_equals(env, follower_dir, completed[2])
            assert compared >= 5 * 10
            # the ready file of that period exists on both sides, for every symbol
            for symbol in sorted(env.handle.symbols):
                name = f"{symbol}_*.ready"
                assert sorted(p.name for p in (follower_dir / "usdt_perp_1m").glob(name))
            # exchange info too, from the stream
            exginfo = [base / "exginfo_1m" / "exginfo.pqt" for base in (env.base, follower_dir)]
            assert pl.read_parquet(exginfo[1]).equals(pl.read_parquet(exginfo[0]))
            assert await follower.stop() == 0
            assert (follower_dir / ".nats_follow.json").exists()
            messages = await read_stream(
                [nats_server.url], env.config.nats.stream, env.config.nats.subject_prefix
            )
            candles = stream_candles(messages)
            assert len(candles) == len(set(candles))


async def test_follower_down_ten_minutes_catches_up_with_nothing_missing(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    follower_dir = tmp_path / "follower"
    with trio.fail_after(60):
        async with (
            recording(
                tmp_path,
                SimConfig(market="um", symbols=5, seed=162),
                speed=120.0,
                nats=nats_key(nats_server),
                **MARKET,
            ) as env,
            trio.open_nursery() as nursery,
        ):
            follower = follower_process(nats_server.url, follower_dir)
            await follower.start(nursery)
            first = (await env.periods(1))[0]
            await wait_period(follower, env.config, first)
            follower.kill()  # SIGKILL, by PID
            assert await follower.process.wait() != 0  # type: ignore[union-attr]
            down = len(env.handle.stats.completed)
            # ten simulated minutes (ten 1m periods) while the follower is down
            await env.periods(down + 10)
            await follower.start(nursery)
            latest = env.handle.stats.completed[-1]
            await wait_period(follower, env.config, latest)
            assert_follower_equals(env, follower_dir, latest)
            # every period's manifest of the ten minutes it missed is there too
            for run_time in env.handle.stats.completed[down : down + 10]:
                label = run_time_label(run_time, env.config.timezone)
                assert (follower_dir / "usdt_perp_1m" / "_periods" / f"{label}.json").exists()
            assert any("from sequence" in line for line in follower.lines)
            assert await follower.stop() == 0
