"""Streaming factors end to end: recorder + simulator + bus + a streaming strategy process.

The strategy's factor frame of every period equals the batch calculation over the recorder's
files for that period, across a recorder SIGKILL and restart (the bus heals the window).
"""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
import trio

from bmac_kit._factors import apply_all_market, load_factors
from bmac_kit._reader import CandleFileReader, read_market
from bmac_trio.clock import ScaledWallClock
from bmac_trio.sim import SimConfig, open_simulator
from bmac_trio.store.config import load_config

from ..recorder.conftest import START_MS, write_config
from ._procs import reap_all
from ._streaming_strategy import FACTORS
from .test_bus_e2e import CLI, MINUTE, RUNNING, UM, Process

STRATEGY = Path(__file__).with_name("_streaming_strategy.py")


@pytest.fixture(autouse=True)
async def _kill_children():
    yield
    await reap_all(RUNNING)


class Strategy(Process):
    def __init__(self, source: Path, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        super().__init__([sys.executable, str(STRATEGY), str(source), str(out)])
        self.stderr = out / "stderr.log"

    @property
    def periods(self) -> list[dict[str, Any]]:
        return [orjson.loads(s) for s in self.lines if s.startswith("{")]

    async def wait_period(self, run_time_ms: int) -> dict[str, Any]:
        await self.wait_for(lambda _: any(p["run_time_ms"] >= run_time_ms for p in self.periods))
        return self.periods[-1]


def batch_frame(reader: CandleFileReader, run_ms: int) -> pl.DataFrame:
    market = read_market({s: reader.symbol_path(s) for s in reader.get_all_symbols()})
    out = apply_all_market(market, load_factors(FACTORS), run_ms)
    return out[0] if isinstance(out, tuple) else out


def assert_same(streamed: pl.DataFrame, batch: pl.DataFrame) -> int:
    """Every streamed row equals the batch row of its symbol; the number of values compared."""
    batch = batch.filter(pl.col("symbol").is_in(streamed["symbol"].to_list()))
    assert streamed["symbol"].to_list() == batch["symbol"].to_list()
    columns = [f"{n}_{p}" for n, p in FACTORS]
    assert streamed.drop(columns).equals(batch.drop(columns))
    for column in columns:
        for got, want in zip(streamed[column], batch[column], strict=True):
            if want is None or math.isnan(want):
                assert math.isnan(got), column
            else:
                assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-10), (column, got, want)
    return streamed.height * len(columns)


@pytest.mark.slow
async def test_streaming_factors_equal_batch_across_a_recorder_restart(tmp_path: Path):
    speed = 20.0
    clock = ScaledWallClock(START_MS, speed, time.time())
    base = tmp_path / "data"
    with trio.fail_after(150):
        async with open_simulator(SimConfig(market="um", symbols=8, seed=47), clock=clock) as sim:
            write_config(
                base, **UM, num_socket_listeners=2, rest_url=sim.rest_url, ws_url=sim.ws_url
            )
            config = load_config(base)
            async with trio.open_nursery() as nursery:
                first = Process(
                    [*CLI, "run", str(base), "--clock", clock.spec()], lines_on="stderr"
                )
                await first.start(nursery)
                await first.wait_for(lambda ls: any("all symbols ready" in s for s in ls))
                strategy = Strategy(base, tmp_path / "strategy")
                await strategy.start(nursery)
                before = (await strategy.wait_period(0))["run_time_ms"]
                await strategy.wait_period(before + MINUTE)
                assert await first.kill() == -signal.SIGKILL
                await trio.sleep(2 * MINUTE / 1000 / speed)  # down for about two periods
                second = Process(
                    [*CLI, "run", str(base), "--clock", clock.spec()], lines_on="stderr"
                )
                await second.start(nursery)
                await strategy.wait_for(
                    lambda _: bool(strategy.periods) and strategy.periods[-1]["epochs"] >= 1
                )
                last = strategy.periods[-1]["run_time_ms"] + 2 * MINUTE
                await strategy.wait_period(last)
                assert await second.kill(signal.SIGTERM) == 0
                await strategy.kill()
                nursery.cancel_scope.cancel()
    reader = CandleFileReader(config.candle_dir)
    runs = [p["run_time_ms"] for p in strategy.periods]
    assert runs == list(range(runs[0], runs[-1] + 1, MINUTE))  # every period, none skipped
    compared = 0
    for run_ms in runs:
        streamed = pl.read_parquet(strategy.out / f"{run_ms}.parquet")
        compared += assert_same(streamed, batch_frame(reader, run_ms))
    symbols = len(reader.get_all_symbols())
    full = [p for p in strategy.periods if p["rows"] == symbols and not p["missing"]]
    assert len(full) >= len(runs) - 3  # every symbol computed but around the restart
    assert compared >= symbols * len(FACTORS) * len(full)
