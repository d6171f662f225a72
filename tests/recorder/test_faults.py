"""Healing, against the simulator: drops, silence, the 24 h cut, gaps, rate limits, bad frames."""

from __future__ import annotations

import shutil
from pathlib import Path

import trio

from bmac_trio.recorder.book import PROBES
from bmac_trio.recorder.service import RecorderOptions
from bmac_trio.sim import SimConfig

from .conftest import FAST_OPTIONS, START_MS, assert_matches_truth, recording

UM = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 60}


async def test_connection_dropped_at_the_close_is_healed(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with recording(tmp_path, SimConfig(market="um", symbols=12, seed=5), **UM) as env:
            await env.history()
            [first] = await env.periods(1)
            # drop every connection 100 ms (exchange) after the next boundary: the closing
            # pushes of that period are lost on the old connections
            await env.clock.sleep_until_ms(first + 60_000 + 100)
            assert env.sim.faults.drop_connections() >= 1
            done = await env.periods(4)
            assert env.handle.listeners.replaced.get("dropped", 0) >= 1
            assert_matches_truth(env, through_ms=done[-1])


async def test_silent_streams_are_healed_over_rest(tmp_path: Path) -> None:
    # the exchange pushes nothing for 4 minutes but still answers LIST_SUBSCRIPTIONS: the
    # connections are alive (not replaced: no reconnect storm), late candles come over REST
    # at each deadline. A connection that stops answering is replaced: see test_ws.py.
    with trio.fail_after(30):
        async with recording(tmp_path, SimConfig(market="um", symbols=10, seed=6), **UM) as env:
            await env.history()
            [first] = await env.periods(1)
            env.sim.faults.silence(240)
            done = await env.periods(5)
            assert done[-1] >= first + 4 * 60_000
            assert env.handle.listeners.replaced.get("silent", 0) == 0
            assert env.handle.stats.fetches >= 8 * 3  # deadline fetches, one per symbol
            assert_matches_truth(env, through_ms=done[-1])


async def test_connections_are_replaced_before_the_24h_cut(tmp_path: Path) -> None:
    # the simulator cuts at 150 exchange seconds; the recorder replaces at 100, new before old
    options = RecorderOptions(
        ws_max_age_s=100, ws_probe_after_s=0.5, ws_probe_timeout_s=0.5, durable=False
    )
    sim_cfg = SimConfig(market="um", symbols=10, seed=7, ws_max_lifetime_s=150)
    with trio.fail_after(30):
        async with recording(tmp_path, sim_cfg, options=options, **UM) as env:
            await env.history()
            done = await env.periods(6)
            replaced = env.handle.listeners.replaced
            assert replaced.get("age", 0) >= 2, replaced
            assert replaced.get("dropped", 0) == 0  # never cut by the server
            assert_matches_truth(env, through_ms=done[-1])


async def test_maintenance_gap_longer_than_99_candles(tmp_path: Path) -> None:
    # 110 minutes without candles or pushes, then trading resumes; at 300x that is 22 s
    sim_cfg = SimConfig(market="um", symbols=14, seed=8)
    with trio.fail_after(120):
        async with recording(tmp_path, sim_cfg, speed=300, **{**UM, "num_candles": 200}) as env:
            await env.history()
            [first] = await env.periods(1)
            start, end = first + 60_000, first + 111 * 60_000
            env.sim.market_events.maintenance(start, end)
            # the deadlines of the 110 candles that do not exist fall in (start + 60 s, end + 45 s)
            await env.clock.sleep_until_ms(start + 60_000)
            before = env.handle.stats.fetches
            await env.clock.sleep_until_ms(end + 45_000)
            during = env.handle.stats.fetches - before
            await env.clock.sleep_until_ms(end + 3 * 60_000)
            n = len(env.handle.stats.completed)
            done = await env.periods(n + 2)
            assert_matches_truth(env, through_ms=done[-1])
            symbols = len(env.handle.symbols)
            print(f"maintenance of 110 periods: {during} fetches for {symbols} symbols")
            # no request per symbol per period (BMAC re-queued a >99 gap forever, thousands of
            # calls): each deadline with nothing received asks REST about PROBES symbols only
            assert during <= PROBES * 110 + 3 * symbols, during  # one per symbol: 1100
            # and no livelock after it
            periods = (done[-1] - first) // 60_000 + 1
            assert env.handle.stats.fetches <= 2 * symbols * periods


async def test_duplicate_malformed_out_of_order_frames(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with recording(tmp_path, SimConfig(market="um", symbols=10, seed=9), **UM) as env:
            await env.history()
            await env.periods(1)
            env.sim.faults.send_duplicates(5)
            env.sim.faults.send_malformed(3)
            env.sim.faults.send_out_of_order(4)
            done = await env.periods(4)
            assert env.handle.listeners.bad_frames >= 1
            assert_matches_truth(env, through_ms=done[-1])


async def test_rate_limited_during_history_backs_off_without_ban(tmp_path: Path) -> None:
    # A tight weight limit (120/min) so that the history of 18 x 1500 candles (over 120
    # weight) has to span two minutes, and a 429 injected at the start: the recorder waits
    # Retry-After, is never banned (418), and the exchange never reports more than 90 % of
    # the minute's weight used. One fetcher: with several, requests already in flight when
    # the 429 is sent arrive inside Retry-After, which this strict simulator bans (418) even
    # though the client could not have known yet; the 418 path itself is in test_rest.py.
    sim_cfg = SimConfig(market="um", symbols=22, seed=10, weight_limit=120)
    config = {**UM, "num_candles": 1500, "num_rest_fetchers": 1}
    async with recording(tmp_path, sim_cfg, speed=30, options=FAST_OPTIONS, **config) as env:
        env.sim.faults.rate_limit(1, retry_after_s=2)
        with trio.fail_after(40):
            await env.history()
        rest = env.handle.rest[-1]
        symbols = len(env.handle.symbols)
        print(
            f"{symbols} symbols: history weight {env.handle.weight_spent}, "
            f"max used {rest.max_used_weight}/120, statuses {dict(env.sim.stats.rest_by_status)}"
        )
        assert env.handle.weight_spent > 108  # the history needed more than one minute
        assert env.sim.stats.faults["rate_limit"] == 1
        assert rest.rate_limited == {429: 1}
        assert env.sim.stats.rest_by_status[418] == 0
        assert rest.max_used_weight <= 108
        # the history crossed period boundaries: those periods are still delivered
        boundaries = [START_MS // 60_000 * 60_000 + k * 60_000 for k in (1, 2)]
        assert env.clock.now_ms() > boundaries[-1]
        with trio.fail_after(20):
            await env.handle.wait_until(lambda h: set(boundaries) <= set(h.stats.completed))
        assert_matches_truth(env, through_ms=boundaries[-1])


async def test_rest_errors_and_slow_answers_are_retried(tmp_path: Path) -> None:
    sim_cfg = SimConfig(market="um", symbols=8, seed=11)
    async with recording(tmp_path, sim_cfg, **UM) as env:
        env.sim.faults.rest_errors(503, count=3)
        with trio.fail_after(30):
            await env.history()
            done = await env.periods(2)
        assert env.sim.stats.faults["rest_error"] == 3
        assert_matches_truth(env, through_ms=done[-1])


async def test_data_folder_deleted_under_the_recorder_is_recreated(tmp_path: Path) -> None:
    # someone removes the candle folder while the recorder runs: it is recreated, every file
    # rewritten (the recorder holds each file's window in memory), one alert
    with trio.fail_after(30):
        async with recording(tmp_path, SimConfig(market="um", symbols=8, seed=12), **UM) as env:
            await env.history()
            [first] = await env.periods(1)
            alerts: list[tuple[str, str]] = []
            assert env.handle.dispatcher is not None
            env.handle.dispatcher.alert = lambda kind, text: alerts.append((kind, text))
            folder = env.config.candle_dir
            shutil.rmtree(folder)  # between two boundaries: no write under way
            done = await env.periods(3)
            assert done[-1] > first
            assert_matches_truth(env, through_ms=done[-1])
            assert (folder / "bmac_meta.json").exists()
            assert [kind for kind, _ in alerts] == ["disk"], alerts
            assert "recreated" in alerts[0][1]


async def test_a_period_missed_in_an_outage_completes_as_soon_as_the_exchange_is_back(
    tmp_path: Path,
) -> None:
    # the exchange is unreachable for 90 s around a boundary: that period's closing pushes
    # are lost and its deadline probes meet the outage. It must complete within seconds of
    # the exchange's return, not when the next period's stream reveals the gap.
    sim_cfg = SimConfig(market="um", symbols=10, seed=13)
    with trio.fail_after(60):
        async with recording(tmp_path, sim_cfg, speed=20, **UM) as env:
            await env.history()
            [first] = await env.periods(1)
            missed = first + 60_000
            await env.clock.sleep_until_ms(missed - 10_000)
            env.sim.faults.outage(90)
            back = env.clock.now_ms() + 90_000
            assert env.sim.stats.faults["outage"] == 1
            await env.handle.wait_until(lambda h: missed in h.stats.completed)
            late_by_s = (env.clock.now_ms() - back) / 1000
            print(f"period missed in the outage complete {late_by_s:.1f} s after the return")
            # the next boundary is 30 s after the return: its stream was the only way before
            assert late_by_s < 25, late_by_s
            done = await env.periods(len(env.handle.stats.completed) + 1)
            assert_matches_truth(env, through_ms=done[-1])
