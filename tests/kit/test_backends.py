"""Every calculator, and the BMAC-shaped ones, under asyncio and under trio (AnyIO).

Each test body is one coroutine run by ``anyio.run`` on each backend from a sync test
(pytest-trio's trio_mode only runs async tests, so both stay in one suite). The clock is a
:class:`ScaledWallClock` at 50x, so a 40 s deadline is 0.8 real seconds; a late symbol
is written once the calculator has demonstrably polled (an event set from its reader's worker
thread), never after a sleep.
"""

from __future__ import annotations

import time

import anyio
import anyio.from_thread
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import bmac_kit.bmac
from bmac_kit import (
    BmacAllMarketCalculator,
    BmacSingleSymbolCalculator,
    CandleFileReader,
    FactorError,
    PeriodNotReady,
    next_run_time,
    sleep_until_run_time,
)
from bmac_kit._factors import apply_single, load_factors
from bmac_trio.clock import ScaledWallClock

T0 = 1_721_216_400_000
CFGS = [("PctChg", 3), ("TrdNumMeanV1", 5), ("Rsi", 6)]
BACKENDS = ["asyncio", "trio"]
SPEED = 50.0
TIMES = "datetime64[ns, UTC]"


def clock_at(ms: int) -> ScaledWallClock:
    return ScaledWallClock(ms, SPEED, time.time())


class ObservedReader(CandleFileReader):
    """A candle reader whose ``polled`` event is set at its ``after``-th poll (create it inside
    the event loop)."""

    def __init__(self, directory, after: int) -> None:
        super().__init__(directory)
        self.polls = 0
        self.after = after
        self.polled = anyio.Event()

    def read_manifest(self, run_time):
        self.polls += 1
        if self.polls == self.after:
            anyio.from_thread.run_sync(self.polled.set)
        return super().read_manifest(run_time)


def assert_bmac_dtypes(df, factors: list[str]) -> None:
    assert str(df["candle_begin_time"].dtype) == TIMES
    floats = [c for c in df.columns if c != "candle_begin_time"]
    assert floats[-len(factors) :] == factors
    assert {str(df[c].dtype) for c in floats} == {"float64"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_symbol_calculators(backend, datadir, make_candles) -> None:
    frame = make_candles(40, end_ms=T0)

    async def main() -> None:
        reader = ObservedReader(datadir.candles, after=2)
        clock = clock_at(T0 - 1_000)
        # a long deadline (8 real seconds): the late symbol lands long before it, however busy
        # the machine; it returns as soon as the symbol is in
        calc = BmacSingleSymbolCalculator("BTCUSDT", reader, CFGS, 400, clock=clock)
        async with anyio.create_task_group() as tg:

            async def write_late() -> None:
                await reader.polled.wait()  # the calculator is waiting and found nothing
                datadir.write_symbol("BTCUSDT", frame)

            tg.start_soon(write_late)
            history = await calc.calc_factors(T0)
        assert reader.polls >= 3
        assert_frame_equal(history, apply_single(frame, load_factors(CFGS)))

        bmac = bmac_kit.bmac.BmacSingleSymbolCalculator(
            "BTCUSDT", bmac_kit.bmac.CandleFileReader(datadir.candles), CFGS, clock=clock
        )
        df = await bmac.calc_factors(T0)
        assert df.index.name == "candle_end_time"
        assert str(df.index.dtype) == TIMES
        assert df.index[-1].value == T0 * 1_000_000
        assert_bmac_dtypes(df, ["PctChg_3", "TrdNumMeanV1_5", "Rsi_6"])
        assert df["Rsi_6"].to_numpy() == pytest.approx(
            history.get_column("Rsi_6").to_numpy(), nan_ok=True
        )
        candles = bmac.candle_reader.read_candle("BTCUSDT")
        assert str(candles.index.dtype) == TIMES
        assert list(candles.columns) == list(df.columns[:-3])

        missing = BmacSingleSymbolCalculator("ETHUSDT", reader, CFGS, clock=clock)
        with pytest.raises(PeriodNotReady, match="ETHUSDT not ready"):
            await missing.calc_factors(T0)
        assert clock.now_ms() >= T0 + 40_000

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_market_calculators(backend, datadir, make_candles, bmac_style_package) -> None:
    symbols = ["AUSDT", "BUSDT", "LATEUSDT", "GONEUSDT", "PENNYUSDT"]
    frames = {s: make_candles(50 + i, end_ms=T0, seed=i) for i, s in enumerate(symbols)}
    penny = frames["PENNYUSDT"]
    frames["PENNYUSDT"] = penny.with_columns(pl.col(*penny.columns[2:7]) / 10_000)
    datadir.write_exginfo(symbols, T0)
    for s in ["AUSDT", "BUSDT", "PENNYUSDT"]:
        datadir.write_symbol(s, frames[s])
    datadir.write_symbol("GONEUSDT", make_candles(50, end_ms=T0 - 300_000))  # never ready
    cfgs = [("PctChg", 3), ("TrdNumMeanV1", 5), ("PennyGuard", 4)]

    async def main() -> None:
        reader = ObservedReader(datadir.candles, after=2)
        exginfo = CandleFileReader(datadir.exginfo)
        clock = clock_at(T0 - 1_000)
        # 100 s (2 real seconds): room for the late symbol on a busy machine; GONEUSDT waits
        calc = BmacAllMarketCalculator(exginfo, reader, cfgs, bmac_style_package, 100, clock=clock)
        async with anyio.create_task_group() as tg:

            async def write_late() -> None:
                await reader.polled.wait()
                datadir.write_symbol("LATEUSDT", frames["LATEUSDT"])

            tg.start_soon(write_late)
            result = await calc.calc_all_factors(T0)
        assert result.get_column("symbol").to_list() == ["AUSDT", "BUSDT", "LATEUSDT"]
        assert calc.missing == ("GONEUSDT", "PENNYUSDT")
        assert isinstance(calc.errors["PENNYUSDT"], FactorError)
        assert clock.now_ms() >= T0 + 100_000  # waited for GONEUSDT until the deadline
        specs = load_factors(cfgs, bmac_style_package)
        for row in result.iter_rows(named=True):
            want = apply_single(frames[row.pop("symbol")], specs).row(-1, named=True)
            assert row == want

        bmac = bmac_kit.bmac.BmacAllMarketCalculator(
            exginfo, reader, cfgs, bmac_style_package, 0.5, clock=clock
        )
        df = await bmac.calc_all_factors(T0)
        assert df.index.name == "symbol"
        assert list(df.index) == ["AUSDT", "BUSDT", "LATEUSDT"]
        assert_bmac_dtypes(df, ["PctChg_3", "TrdNumMeanV1_5", "PennyGuard_4"])
        assert "candle_end_time" not in df.columns  # it was each history's index in BMAC
        assert df["PctChg_3"].tolist() == result.get_column("PctChg_3").to_list()
        assert bmac.missing == ("GONEUSDT", "PENNYUSDT")

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_next_run_time_and_sleep_until_run_time(backend) -> None:
    async def main() -> int:
        clock = clock_at(T0 - 2_000)
        run_time = next_run_time("5m", clock=clock)
        assert run_time.timestamp() * 1000 == T0
        await sleep_until_run_time(run_time, clock=clock)
        return clock.now_ms()

    woke = anyio.run(main, backend=backend)
    assert T0 <= woke < T0 + 1_000


@pytest.mark.parametrize("backend", BACKENDS)
def test_hourly_live_job(backend, datadir, make_candles, caplog) -> None:
    from bmac_kit._hourly import HourlyJob, run_hourly_live

    five = 300_000
    # data for 20 periods ahead: whichever the live loop picks after its catch-up (which
    # takes real time) is ready at once; 1000x, so waiting for a boundary takes < 0.3 s
    last = T0 + 20 * five
    for i, symbol in enumerate(["AUSDT", "BUSDT"]):
        datadir.write_symbol(symbol, make_candles(60, end_ms=last, seed=i))
    job = HourlyJob.from_base(datadir.base, datadir.base / "out", durable=False)

    async def main() -> None:
        with anyio.fail_after(30):
            clock = ScaledWallClock(T0 + five - 1_000, 1000.0, time.time())
            await run_hourly_live(job, clock=clock, periods=1)

    caplog.set_level("INFO", logger="bmac_kit.hourly")
    anyio.run(main, backend=backend)
    live = [r.getMessage() for r in caplog.records if "offset" in r.getMessage()]
    assert len(live) == 1
    assert ": 2/2 symbols" in live[0]
    assert "missing" not in live[0]
    import pandas as pd

    hourly = pd.read_parquet(job.offset_dir(last // 60_000 % 60) / "AUSDT.pqt")
    assert hourly.index.name == "candle_end_time"
    assert hourly.index[-1].value // 1_000_000 == last
