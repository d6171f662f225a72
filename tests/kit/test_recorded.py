"""The kit on a data directory the real recorder wrote from the simulator (real sockets).

The simulator and the recorder share one accelerated clock, and so does the kit, so the
calculators wait for periods exactly as they would in production: the closing pushes of the
symbols arrive 0.2-2 s after each boundary (the latest one is the "late" symbol), and a
maintenance window scheduled while it runs leaves a period with no candles (every symbol
missing).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import orjson
import polars as pl
import pytest
import trio

from bmac_kit import (
    BmacAllMarketCalculator,
    BmacSingleSymbolCalculator,
    CandleFileReader,
    PeriodNotReady,
)
from bmac_kit._factors import apply_single, load_factors
from bmac_kit._hourly import HourlyJob
from bmac_kit._resample import OFFSETS, resample_hourly
from bmac_trio.clock import TrioClock
from bmac_trio.errors import ConfigError
from bmac_trio.recorder.service import RecorderOptions, run_recorder
from bmac_trio.sim import SimConfig, open_simulator
from bmac_trio.store.config import load_config

START_MS = 1_767_225_600_000 + 40_000  # 2026-01-01 00:00:40 UTC
MINUTE = 60_000
CFGS = [("PctChg", 3), ("TrdNumMeanV1", 5), ("Ema", 4), ("Cci", 3)]
OPTIONS = RecorderOptions(
    ws_probe_after_s=0.5, ws_probe_timeout_s=0.5, restart_backoff_s=0.2, durable=False
)
FIELDS = {
    "open": 1,
    "high": 2,
    "low": 3,
    "close": 4,
    "volume": 5,
    "quote_volume": 7,
    "trade_num": 8,
    "taker_buy_base_asset_volume": 9,
    "taker_buy_quote_asset_volume": 10,
}


def truth_frame(
    sim, symbol: str, interval: str, until_ms: int, count: int, step: int = MINUTE
) -> pl.DataFrame:
    """The exchange's last ``count`` candles ending by ``until_ms``, in the candle schema."""
    rows = [r for r in sim.ground_truth(symbol, interval) if r[0] + step <= until_ms][-count:]
    frame = pl.DataFrame(
        {
            "candle_begin_time": [r[0] for r in rows],
            "candle_end_time": [r[0] + step for r in rows],
            **{name: [float(r[i]) for r in rows] for name, i in FIELDS.items()},
        }
    )
    times = pl.col("candle_begin_time", "candle_end_time").cast(pl.Datetime("ms", "UTC"))
    return frame.with_columns(times)


def assert_row(got: dict, want: dict) -> None:
    got = {k: v for k, v in got.items() if k != "symbol"}
    assert list(got) == list(want)
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-9), key
        else:
            assert got[key] == value, key


@pytest.mark.slow
async def test_kit_on_a_recorder_written_directory(tmp_path: Path) -> None:
    base = tmp_path / "data"
    base.mkdir()
    clock = TrioClock(start_ms=START_MS, speed=40)
    sim_cfg = SimConfig(market="um", symbols=12, seed=7)
    with trio.fail_after(60):
        async with open_simulator(sim_cfg, clock=clock) as sim, trio.open_nursery() as nursery:
            (base / "config.json").write_bytes(
                orjson.dumps(
                    {
                        "interval": "1m",
                        "trade_type": "usdt_perp",
                        "num_candles": 60,
                        "num_socket_listeners": 2,
                        "rest_url": sim.rest_url,
                        "ws_url": sim.ws_url,
                    }
                )
            )
            config = load_config(base)
            handle = await nursery.start(
                partial(run_recorder, config, clock=clock, options=OPTIONS)
            )
            await handle.wait_until(lambda h: len(h.stats.completed) >= 1)
            symbols = sorted(handle.symbols)
            candles = CandleFileReader(config.candle_dir)
            exginfo = CandleFileReader(config.exginfo_dir)
            assert (candles.interval, candles.save_type) == ("1m", config.save_type)

            # a period already on disk
            done = handle.stats.completed[0]
            calc = BmacAllMarketCalculator(exginfo, candles, CFGS, clock=clock)
            result = await calc.calc_all(done)
            assert result.missing == ()
            assert result.frame.get_column("symbol").to_list() == symbols
            specs = load_factors(CFGS)
            for row in result.frame.iter_rows(named=True):
                want = apply_single(truth_frame(sim, row["symbol"], "1m", done, 60), specs)
                assert_row(row, want.row(-1, named=True))

            # the next period, waited for while the recorder writes it: the latest closing
            # push is the late symbol, computed only once it has landed
            run_time = (clock.now_ms() // MINUTE + 1) * MINUTE
            pushes = {s: sim.closing_push_ms(s, "1m", run_time - MINUTE) for s in symbols}
            late = max(pushes, key=pushes.__getitem__)
            computed_at: dict[str, int] = {}

            def on_batch(batch: frozenset[str]) -> None:
                computed_at.update(dict.fromkeys(batch, clock.now_ms()))

            # a generous deadline: on a loaded test box the recorder may need seconds of
            # exchange time (tens of real milliseconds at 40x) to write the period
            calc = BmacAllMarketCalculator(
                exginfo, candles, CFGS, bmac_expire_sec=300, clock=clock, on_batch=on_batch
            )
            single = BmacSingleSymbolCalculator(
                late, candles, CFGS, bmac_expire_sec=300, clock=clock
            )
            results = {}

            async def run(name, fn):
                results[name] = await fn(run_time)

            async with trio.open_nursery() as both:  # both start waiting before the period
                both.start_soon(run, "single", single.calc_factors)
                both.start_soon(run, "all", calc.calc_all_factors)
            history, frame = results["single"], results["all"]
            assert clock.now_ms() > pushes[late]
            assert calc.missing == ()
            assert frame.get_column("symbol").to_list() == symbols
            assert computed_at[late] >= pushes[late] > run_time
            assert clock.now_ms() < run_time + 300_000
            truth = truth_frame(sim, late, "1m", run_time, 60)
            assert history.height == 60
            assert history.get_column("close").to_list() == truth.get_column("close").to_list()
            assert_row(history.row(-1, named=True), apply_single(truth, specs).row(-1, named=True))

            # a maintenance window from the next minute: that period's candle never comes,
            # every symbol is reported missing
            blank_open = (clock.now_ms() // MINUTE + 1) * MINUTE
            sim.market_events.maintenance(blank_open, blank_open + MINUTE)
            blank = blank_open + MINUTE
            calc = BmacAllMarketCalculator(exginfo, candles, CFGS, clock=clock)
            frame = await calc.calc_all_factors(blank)
            assert frame.height == 0
            assert calc.missing == tuple(symbols)
            # it waited (until the deadline, or the recorder's final manifest) and returned
            assert blank < clock.now_ms() < blank + 120_000
            with pytest.raises(PeriodNotReady):
                await BmacSingleSymbolCalculator(late, candles, CFGS, clock=clock).calc_factors(
                    blank
                )
            handle.stop()

    # the hourly job reads the same layout (1m source refused: it needs 5m)
    with pytest.raises(ConfigError, match="5m"):
        HourlyJob.from_base(base)


async def test_hourly_job_on_recorded_5m_history(tmp_path: Path) -> None:
    base = tmp_path / "data"
    base.mkdir()
    clock = TrioClock(start_ms=START_MS, speed=40)
    with trio.fail_after(60):
        async with open_simulator(SimConfig(market="um", symbols=12, seed=8), clock=clock) as sim:
            (base / "config.json").write_bytes(
                orjson.dumps(
                    {
                        "interval": "5m",
                        "trade_type": "usdt_perp",
                        "num_candles": 100,
                        "save_type": "feather",
                        "num_socket_listeners": 2,
                        "rest_url": sim.rest_url,
                        "ws_url": sim.ws_url,
                    }
                )
            )
            config = load_config(base)
            async with trio.open_nursery() as nursery:
                handle = await nursery.start(
                    partial(run_recorder, config, clock=clock, options=OPTIONS)
                )
                await handle.wait_until(lambda h: h.stats.history_finished is not None)
                handle.stop()
            symbols = sorted(handle.symbols)
            job = HourlyJob.from_base(base, tmp_path / "out", durable=False)
            report = await trio.to_thread.run_sync(job.run_once)
            assert report.symbols == len(symbols) > 0
            for offset in OFFSETS:
                reader = CandleFileReader(job.offset_dir(offset), "feather")
                assert reader.get_all_symbols() == symbols
                for symbol in symbols:
                    source = CandleFileReader(config.candle_dir).read_candle(symbol)
                    last = source.get_column("candle_end_time").dt.epoch("ms").max()
                    truth = truth_frame(sim, symbol, "5m", last, 100, step=5 * MINUTE)
                    want = resample_hourly(truth.with_columns(symbol=pl.lit(symbol)), offset)
                    got = reader.read_candle(symbol)
                    assert got.height == 8 or got.height == 7  # 100 bars: 7-8 full hours
                    assert got.equals(want.collect().drop("symbol")), (symbol, offset)
