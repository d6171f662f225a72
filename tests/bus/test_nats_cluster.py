"""A three-node JetStream cluster on 127.0.0.1, a replicated stream, one node killed mid-run:
the follower loses nothing (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from bmac_trio.bus.nats_server import NatsServer, start_cluster
from bmac_trio.sim import SimConfig

from ..recorder.conftest import recording
from .conftest import assert_follower_equals, follower_process, nats_key, wait_period

MARKET = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 50}


@pytest.fixture
def cluster(tmp_path: Path, nats_binary: str) -> Iterator[list[NatsServer]]:
    servers = start_cluster(tmp_path / "cluster", 3)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


async def test_cluster_node_killed_mid_run_follower_loses_nothing(
    tmp_path: Path, cluster: list[NatsServer]
) -> None:
    follower_dir = tmp_path / "follower"
    urls = ",".join(s.url for s in cluster)
    with trio.fail_after(90):
        async with (
            recording(
                tmp_path,
                SimConfig(market="um", symbols=8, seed=165),
                speed=60.0,
                publish=False,
                nats=nats_key(*cluster, replicas=3),
                **MARKET,
            ) as env,
            trio.open_nursery() as nursery,
        ):
            follower = follower_process(urls, follower_dir)
            await follower.start(nursery)
            first = (await env.periods(2))[1]
            await wait_period(follower, env.config, first)
            # the first node: the one both clients were most likely connected to
            await trio.to_thread.run_sync(cluster[0].kill)
            done = len(env.handle.stats.completed)
            await env.periods(done + 3)
            latest = env.handle.stats.completed[-1]
            await wait_period(follower, env.config, latest)
            assert_follower_equals(env, follower_dir, latest)
            assert await follower.stop() == 0
