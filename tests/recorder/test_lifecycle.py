"""Symbols come and go, the recorder stops and starts: against the simulator."""

from __future__ import annotations

import dataclasses
import gc
import sys
from functools import partial
from pathlib import Path

import httpx
import orjson
import polars as pl
import pytest
import trio

from bmac_trio.cli.run import check, run
from bmac_trio.ops.alerts import NullAlerter
from bmac_trio.recorder.service import RecorderOptions, run_recorder
from bmac_trio.sim import SimConfig
from bmac_trio.store.config import load_config
from bmac_trio.store.layout import DELISTED_DIR, data_file
from bmac_trio.store.lock import acquire_lock

from .conftest import (
    FAST_OPTIONS,
    Env,
    assert_matches_truth,
    recording,
    run_against,
    simulator,
    write_config,
)

UM = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 60}


async def test_listing_and_delisting(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with recording(tmp_path, SimConfig(market="um", symbols=10, seed=21), **UM) as env:
            await env.history()
            [first] = await env.periods(1)
            listeners_before = env.handle.listeners.connects
            env.sim.market_events.list_symbol("NEWUSDT", first + 30_000)
            env.sim.market_events.delist_symbol("SIM003USDT", first + 90_000)
            await env.handle.wait_until(
                lambda h: "NEWUSDT" in h.stats.listed and "SIM003USDT" in h.stats.delisted
            )
            n = len(env.handle.stats.completed)
            done = await env.periods(n + 2)
            config = env.config
            assert "NEWUSDT" in env.handle.symbols
            assert "SIM003USDT" not in env.handle.symbols
            assert_matches_truth(env, through_ms=done[-1])
            # delisted history kept aside, not deleted; no ready file left behind
            assert not data_file(config.candle_dir, "SIM003USDT", "parquet").exists()
            assert (config.candle_dir / DELISTED_DIR / "SIM003USDT.pqt").exists()
            assert not list(config.candle_dir.glob("SIM003USDT_*.ready"))
            # SUBSCRIBE/UNSUBSCRIBE on live connections, nobody reconnected
            assert env.handle.listeners.subscribe_messages >= 2
            assert env.handle.listeners.connects == listeners_before


async def test_delivery_contract_expires(tmp_path: Path) -> None:
    config = {**UM, "trade_type": "usdt_deli"}
    with trio.fail_after(30):
        async with recording(tmp_path, SimConfig(market="um", symbols=8, seed=22), **config) as env:
            await env.history()
            [first] = await env.periods(1)
            symbols = sorted(env.handle.symbols)
            assert len(symbols) == 4  # BTCUSDT_/ETHUSDT_yymmdd, current and next quarter
            expiring = symbols[0]
            env.sim.market_events.set_delivery(expiring, first + 120_000)
            await env.handle.wait_until(lambda h: expiring in h.stats.delisted)
            # the quarters roll: a new next-quarter BTC contract is listed at the expiry
            listed = env.sim.trading_symbols()
            [successor] = [s for s in listed if s.startswith("BTCUSDT_") and s not in symbols]
            await env.handle.wait_until(lambda h: successor in h.symbols)
            n = len(env.handle.stats.completed)
            done = await env.periods(n + 1)
            assert env.handle.symbols == frozenset([*symbols[1:], successor])
            assert_matches_truth(env, symbols[1:], through_ms=done[-1])
            kept = env.config.candle_dir / DELISTED_DIR / f"{expiring}.pqt"
            assert kept.exists()


async def test_restart_after_10_minutes_down_fetches_only_the_tail(tmp_path: Path) -> None:
    base = tmp_path / "data"
    with trio.fail_after(40):
        async with simulator(SimConfig(market="um", symbols=12, seed=23), speed=300) as (
            sim,
            clock,
        ):
            async with run_against(sim, clock, base, **{**UM, "num_candles": 500}) as env:
                await env.history()
                await env.periods(2)
                first_weight = env.handle.stats.history_weight
            stopped = clock.now_ms()
            await clock.sleep_until_ms(stopped + 10 * 60_000)
            async with run_against(sim, clock, base, **{**UM, "num_candles": 500}) as env:
                await env.history()
                weight = env.handle.stats.history_weight
                symbols = len(env.handle.symbols)
                print(
                    f"restart after 10 min: {weight} klines weight for {symbols} symbols "
                    f"({weight / symbols:.2f} per symbol; the first start took {first_weight}); "
                    f"{env.handle.weight_spent} in all with exchangeInfo"
                )
                # one klines call of < 100 candles (weight 1) per symbol
                assert weight == symbols
                done = await env.periods(2)
                assert_matches_truth(env, through_ms=done[-1])


async def test_symbol_delisted_while_down_keeps_every_candle_up_to_its_delisting(
    tmp_path: Path,
) -> None:
    # stopped; the symbol is delisted five minutes later; restarted five minutes after that:
    # the candles between the stop and the delisting exist only on REST, and the file kept
    # aside must hold them (found by the day-long soak)
    base = tmp_path / "data"
    config_keys = {**UM, "num_candles": 200}
    with trio.fail_after(40):
        async with simulator(SimConfig(market="um", symbols=10, seed=24), speed=300) as (
            sim,
            clock,
        ):
            async with run_against(sim, clock, base, **config_keys) as env:
                await env.history()
                await env.periods(1)
                victim = sorted(env.handle.symbols)[-1]
            config = env.config
            stopped = clock.now_ms()
            delisted_at = config.interval.floor(stopped) + 5 * 60_000
            sim.market_events.delist_symbol(victim, delisted_at)
            await clock.sleep_until_ms(delisted_at + 5 * 60_000)
            live = data_file(config.candle_dir, victim, "parquet")
            kept = config.candle_dir / DELISTED_DIR / f"{victim}.pqt"
            async with run_against(sim, clock, base, **config_keys) as env:
                await env.history()
                await env.handle.wait_until(lambda h: kept.exists() and not live.exists())
                assert victim not in env.handle.symbols
                done = await env.periods(1)
                assert_matches_truth(env, through_ms=done[-1])
    frame = pl.read_parquet(kept.read_bytes())
    opens = frame["candle_begin_time"].dt.epoch("ms").to_list()
    truth = [row for row in sim.ground_truth(victim, "1m", since_ms=opens[0])]
    assert truth[-1][0] == delisted_at - 60_000  # the exchange's last candle
    assert opens == [row[0] for row in truth]
    assert frame["close"].to_list() == [float(row[4]) for row in truth]


async def test_symbol_name_escaping_the_directory_is_refused(tmp_path: Path) -> None:
    # an exchangeInfo snapshot whose symbols include names that would escape the directory
    snapshot = tmp_path / "exchange_info.json"
    good = ["BTCUSDT", "ETHUSDT"]
    evil = ["../../EVILUSDT", "..", "A/BUSDT", ".HIDDENUSDT"]

    def entry(symbol: str) -> dict[str, object]:
        return {
            "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
            "baseAsset": "BTC", "quoteAsset": "USDT", "marginAsset": "USDT",
            "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "100000",
                 "tickSize": "0.10"},
                {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000",
                 "stepSize": "0.001"},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
            ],
        }  # fmt: skip

    body = {
        "timezone": "UTC",
        "serverTime": 1767225600000,
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": 2400}
        ],
        "symbols": [entry(s) for s in good + evil],
    }  # fmt: skip
    snapshot.write_bytes(orjson.dumps(body))
    with trio.fail_after(30):
        async with recording(tmp_path, SimConfig(market="um", symbols=snapshot), **UM) as env:
            await env.history()
            done = await env.periods(1)
            assert env.handle.symbols == frozenset(good)
            assert_matches_truth(env, through_ms=done[-1])
    files = await trio.to_thread.run_sync(lambda: [p.name for p in tmp_path.rglob("*")])
    assert [n for n in files if "EVIL" in n or "HIDDEN" in n] == []
    top = await trio.to_thread.run_sync(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert top == ["data", "exchange_info.json"]


BASE = {"interval": "1m", "trade_type": "usdt_perp"}
BAD_CONFIGS = [
    (b"{not json", "not valid JSON"),
    (orjson.dumps({"trade_type": "usdt_perp"}), "'interval'"),
    (orjson.dumps({**BASE, "interval": "7m"}), "'interval'"),
    (orjson.dumps({**BASE, "trade_type": "usdt_future"}), "'trade_type'"),
    (b'{"interval": "1m", "trade_type": "usdt_perp", "interval": "5m"}', "appears twice"),
    (orjson.dumps({**BASE, "num_candles": "9"}), "'num_candles'"),
    (orjson.dumps({**BASE, "save_type": "csv"}), "'save_type'"),
    (orjson.dumps({**BASE, "rest_url": "ftp://x"}), "'rest_url'"),
]


@pytest.mark.parametrize(("content", "key"), BAD_CONFIGS)
def test_bad_config_exits_non_zero_naming_the_key_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, key: str
) -> None:
    base = tmp_path / "data"
    base.mkdir()
    (base / "config.json").write_bytes(content)
    assert run(base) != 0
    err = capsys.readouterr().err
    assert key in err
    assert check(base) != 0
    assert sorted(p.name for p in base.iterdir()) == ["config.json"]


def test_second_copy_exits_zero_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "data"
    write_config(base, interval="1m", trade_type="usdt_perp", rest_url="http://127.0.0.1:9")
    with acquire_lock(base):
        assert run(base) == 0
    err = capsys.readouterr().err
    assert "already being recorded" in err
    assert not (base / "usdt_perp_1m").exists()


def test_check_accepts_a_good_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "data"
    write_config(base, interval="5m", trade_type="usdt_swap", save_type="feather")
    assert check(base) == 0
    assert "usdt_swap 5m, feather" in capsys.readouterr().out


class FailOnce(httpx.AsyncBaseTransport):
    """The real transport, except that one klines call raises an unexpected error."""

    def __init__(self, after: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.after = after
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/klines"):
            self.calls += 1
            if self.calls == self.after:
                raise RuntimeError("unexpected bug in a dependency")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordingAlerter(NullAlerter):
    """Keeps every alert instead of sending it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def notify(self, kind: str, text: str) -> None:
        self.sent.append((kind, text))


async def test_unexpected_error_restarts_the_live_phase_keeping_the_data(tmp_path: Path) -> None:
    base = tmp_path / "data"
    transport = FailOnce(after=5)
    with trio.fail_after(30):
        async with (
            simulator(SimConfig(market="um", symbols=10, seed=24), speed=120) as (sim, clock),
            httpx.AsyncClient(transport=transport) as http,
        ):
            write_config(
                base, rest_url=sim.rest_url, ws_url=sim.ws_url, num_socket_listeners=2, **UM
            )
            config = load_config(base)
            async with trio.open_nursery() as nursery:
                alerts = RecordingAlerter()
                handle = await nursery.start(
                    partial(
                        run_recorder,
                        config,
                        clock=clock,
                        http_client=http,
                        alerter=alerts,
                        options=FAST_OPTIONS,
                    )
                )
                await handle.wait_until(lambda h: h.restarts == 1)
                env = Env(sim=sim, clock=clock, base=base, config=config, handle=handle)
                await env.history()
                done = await env.periods(2)
                assert handle.restarts == 1
                assert_matches_truth(env, through_ms=done[-1])
                kinds = [kind for kind, _ in alerts.sent]
                assert kinds.count("crash") == 1
                assert kinds.count("recovered") == 1  # once, after the crash, not every period
                assert kinds.index("crash") < kinds.index("recovered")
                handle.stop()


async def test_a_standalone_recorder_freezes_the_start_up_and_shortens_the_gil_switch(
    tmp_path: Path,
) -> None:
    """``bmac-trio run`` freezes the collector's view of the start-up once the history is on
    disk (full collections then scan only the live phase's objects) and sets a 0.5 ms GIL
    switch interval; an embedded recorder leaves the host process's settings alone unless
    asked."""
    gc.unfreeze()
    switch = sys.getswitchinterval()
    options = dataclasses.replace(FAST_OPTIONS, freeze_gc=True, switch_interval_s=0.0005)
    try:
        with trio.fail_after(30):
            async with recording(
                tmp_path, SimConfig(market="um", symbols=4, seed=23), options=options, **UM
            ) as env:
                await env.history()
                await env.handle.wait_until(lambda _: gc.get_freeze_count() > 0)
                assert gc.get_freeze_count() > 1000
                await env.periods(1)
                assert sys.getswitchinterval() == pytest.approx(0.0005)
                assert_matches_truth(env, through_ms=env.handle.stats.completed[-1])
    finally:
        gc.unfreeze()
        sys.setswitchinterval(switch)
    assert FAST_OPTIONS.freeze_gc is False
    assert FAST_OPTIONS.switch_interval_s is None
    # what `bmac-trio run` and the benchmarks use: both on, other knobs kept
    standalone = RecorderOptions.standalone(write_threads=2)
    assert (standalone.freeze_gc, standalone.switch_interval_s) == (True, 0.0005)
    assert standalone.write_threads == 2
