"""Odd symbol names cost nothing but themselves: a non-ASCII listing streams, a refused one is
recorded over REST while every other symbol stays live."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bmac_trio.ops.alerts import NullAlerter
from bmac_trio.sim import SimConfig
from bmac_trio.sim._config import Scenario

from .conftest import START_MS, assert_matches_truth, recording

UM = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 60}
CHINESE = "币安人生USDT"
REFUSED = "BTC-USDT"  # listed, but the stream server answers 400 "Invalid stream name"


async def test_non_ascii_and_refused_streams_cost_only_themselves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts: list[tuple[str, str]] = []
    monkeypatch.setattr(NullAlerter, "notify", lambda self, kind, text: alerts.append((kind, text)))
    listed = START_MS - 10 * 86_400_000
    sim_cfg = SimConfig(
        market="um", symbols=10, seed=21, scenario=Scenario(listings=((REFUSED, listed),))
    )
    with trio.fail_after(40):
        async with recording(tmp_path, sim_cfg, **UM) as env:
            assert env.handle.dispatcher is not None
            await env.history()
            symbols = env.handle.symbols
            assert {CHINESE, REFUSED} <= symbols
            done = await env.periods(3)
            assert env.handle.restarts == 0  # the live phase never crashed
            assert env.handle.listeners.refused == {REFUSED}
            assert env.handle.dispatcher.rest_only == {REFUSED}
            assert env.handle.listeners.klines > 0
            # every symbol's file equals the exchange, the two odd ones included
            assert_matches_truth(env, through_ms=done[-1])
            assert (env.config.candle_dir / f"{CHINESE}.pqt").exists()
            # one alert for the refused stream
            assert [kind for kind, _ in alerts if kind == "stream_refused"] == ["stream_refused"]


async def test_a_refused_listing_while_running_costs_only_itself(tmp_path: Path) -> None:
    # listed while the recorder runs: it joins a live connection by SUBSCRIBE, which the
    # exchange answers with an error (and subscribes none of that request)
    with trio.fail_after(40):
        async with recording(tmp_path, SimConfig(market="um", symbols=10, seed=22), **UM) as env:
            await env.history()
            [first] = await env.periods(1)
            env.sim.market_events.list_symbol(REFUSED, first + 20_000)
            await env.handle.wait_until(lambda h: REFUSED in h.symbols)
            joined = len(env.handle.stats.completed)
            done = await env.periods(joined + 2)
            assert env.handle.restarts == 0
            assert env.handle.listeners.refused == {REFUSED}
            assert env.handle.listeners.replaced == {}  # no connection was lost over it
            assert_matches_truth(env, through_ms=done[-1])
