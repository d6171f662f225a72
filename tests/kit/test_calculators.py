"""The calculators on a synthetic data directory, on a fake clock (MockClock autojump).

A late symbol is written by a concurrent task once the calculator has demonstrably processed
the others (an event set from its progress hook), never after a sleep; a symbol that never
arrives lets the 40 s deadline pass instantly under autojump.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
import trio
from polars.testing import assert_frame_equal

from bmac_kit import (
    BmacAllMarketCalculator,
    BmacSingleSymbolCalculator,
    CandleFileReader,
    PeriodNotReady,
)
from bmac_kit._factors import apply_single, load_factors
from bmac_trio.clock import TrioClock
from bmac_trio.errors import UnsafeSymbol

T0 = 1_721_216_400_000
CFGS = [("PctChg", 3), ("TrdNumMeanV1", 5), ("Rsi", 6)]
DEADLINE = T0 + 40_000


def _expected_last_row(frame: pl.DataFrame) -> dict:
    return apply_single(frame, load_factors(CFGS)).row(-1, named=True)


class ObservedReader(CandleFileReader):
    """A candle reader that signals once the calculator has polled ``after`` times."""

    def __init__(self, directory, after: int) -> None:
        super().__init__(directory)
        self.polls = 0
        self.after = after
        self.polled = trio.Event()

    def read_manifest(self, run_time):
        self.polls += 1
        if self.polls == self.after:
            trio.from_thread.run_sync(self.polled.set)
        return super().read_manifest(run_time)


async def test_single_symbol_ready(datadir, make_candles, autojump_clock) -> None:
    frame = make_candles(40, end_ms=T0)
    datadir.write_symbol("BTCUSDT", frame)
    clock = TrioClock(start_ms=T0 + 500)
    calc = BmacSingleSymbolCalculator(
        "BTCUSDT", CandleFileReader(datadir.candles), CFGS, clock=clock
    )
    result = await calc.calc_factors(T0)
    assert result.columns == [*frame.columns, "PctChg_3", "TrdNumMeanV1_5", "Rsi_6"]
    assert result.height == 40
    assert_frame_equal(result, apply_single(frame, load_factors(CFGS)))
    assert clock.now_ms() < T0 + 1_000  # did not wait


async def test_single_symbol_history_ends_at_run_time_and_pandas_shape(
    datadir, make_candles, autojump_clock
) -> None:
    datadir.write_symbol("BTCUSDT", make_candles(40, end_ms=T0 + 300_000))  # already advanced
    calc = BmacSingleSymbolCalculator(
        "ETHUSDT",
        CandleFileReader(datadir.candles),
        CFGS,
        output="pandas",
        clock=TrioClock(start_ms=T0 + 400_000),
    )
    df = await calc.calc_factors(datetime(2024, 7, 17, 19, 40), symbol="BTCUSDT")  # naive = HK
    assert df.index.name == "candle_end_time"
    assert df.index[-1] == datetime(2024, 7, 17, 11, 40, tzinfo=UTC)
    assert len(df) == 39
    assert list(df.columns[-3:]) == ["PctChg_3", "TrdNumMeanV1_5", "Rsi_6"]


async def test_single_symbol_late_then_ready(datadir, make_candles, autojump_clock) -> None:
    frame = make_candles(40, end_ms=T0)
    reader = ObservedReader(datadir.candles, after=3)
    clock = TrioClock(start_ms=T0 - 10_000)
    calc = BmacSingleSymbolCalculator("BTCUSDT", reader, CFGS, clock=clock)
    async with trio.open_nursery() as nursery:

        async def write_late() -> None:
            await reader.polled.wait()  # the calculator is waiting and found nothing
            datadir.write_symbol("BTCUSDT", frame)

        nursery.start_soon(write_late)
        result = await calc.calc_factors(T0)
    assert reader.polls >= 4
    assert result.row(-1, named=True) == _expected_last_row(frame)
    assert T0 < clock.now_ms() < DEADLINE


async def test_single_symbol_missing_raises_at_the_deadline(datadir, autojump_clock) -> None:
    reader = ObservedReader(datadir.candles, after=0)
    clock = TrioClock(start_ms=T0)
    calc = BmacSingleSymbolCalculator("BTCUSDT", reader, CFGS, clock=clock)
    with pytest.raises(PeriodNotReady, match="BTCUSDT not ready") as info:
        await calc.calc_factors(T0)
    assert isinstance(info.value, RuntimeError)  # what BMAC v1 raised
    with pytest.raises(UnsafeSymbol):
        await calc.calc_factors(T0, symbol="../x")
    assert clock.now_ms() >= DEADLINE
    # polled with backoff, not hundreds of times a second: at most ~10/s once backed off
    assert reader.polls <= 40 * 10 + 10


@pytest.mark.parametrize("save_type", ["parquet", "feather"])
async def test_all_market_late_symbol_and_missing_one(
    datadir, make_candles, autojump_clock, save_type: str
) -> None:
    datadir.save_type = save_type
    datadir.write_meta()
    symbols = ["AUSDT", "BUSDT", "CUSDT", "LATEUSDT", "GONEUSDT"]
    frames = {s: make_candles(50 + i, end_ms=T0, seed=i) for i, s in enumerate(symbols)}
    datadir.write_exginfo(symbols, T0)
    for s in ["AUSDT", "BUSDT", "CUSDT"]:
        datadir.write_symbol(s, frames[s])
    datadir.write_symbol("GONEUSDT", make_candles(50, end_ms=T0 - 300_000))  # stale: not ready
    batches: list[frozenset[str]] = []
    first_batch = trio.Event()

    def on_batch(batch: frozenset[str]) -> None:
        batches.append(batch)
        first_batch.set()

    clock = TrioClock(start_ms=T0)
    calc = BmacAllMarketCalculator(
        CandleFileReader(datadir.exginfo),
        CandleFileReader(datadir.candles),
        CFGS,
        clock=clock,
        on_batch=on_batch,
    )
    late_written_at = []
    async with trio.open_nursery() as nursery:

        async def write_late() -> None:
            await first_batch.wait()
            datadir.write_symbol("LATEUSDT", frames["LATEUSDT"])
            late_written_at.append(clock.now_ms())

        nursery.start_soon(write_late)
        result = await calc.calc_all_factors(T0)
    assert batches == [frozenset({"AUSDT", "BUSDT", "CUSDT"}), frozenset({"LATEUSDT"})]
    assert result.get_column("symbol").to_list() == ["AUSDT", "BUSDT", "CUSDT", "LATEUSDT"]
    assert calc.missing == ("GONEUSDT",)
    assert clock.now_ms() >= DEADLINE
    assert late_written_at[0] < DEADLINE
    for row in result.iter_rows(named=True):
        symbol = row.pop("symbol")
        assert row == _expected_last_row(frames[symbol])


async def test_all_market_for_a_past_period(datadir, make_candles, autojump_clock) -> None:
    """The recorder has moved on a period: older ready files are gone, the candles are not."""
    frames = {s: make_candles(30, end_ms=T0 + 300_000, seed=i) for i, s in enumerate("AB")}
    for s, f in frames.items():
        datadir.write_symbol(f"{s}USDT", f)
    datadir.write_exginfo(["AUSDT", "BUSDT"], T0 + 300_000)
    clock = TrioClock(start_ms=T0 + 310_000)  # before this period's deadline
    readers = CandleFileReader(datadir.exginfo), CandleFileReader(datadir.candles)
    calc = BmacAllMarketCalculator(*readers, CFGS, clock=clock)
    result = await calc.calc_all(T0)
    assert result.missing == ()
    assert clock.now_ms() == T0 + 310_000  # nothing to wait for
    for row in result.frame.iter_rows(named=True):
        frame = frames[row.pop("symbol")[0]].head(29)
        assert row == _expected_last_row(frame)


async def test_all_market_returns_on_final_manifest(datadir, make_candles, autojump_clock) -> None:
    frames = {s: make_candles(30, end_ms=T0, seed=i) for i, s in enumerate(["AUSDT", "BUSDT"])}
    for s, f in frames.items():
        datadir.write_symbol(s, f, ready=False)  # only the manifest says they are complete
    datadir.write_manifest(T0, complete=["AUSDT", "BUSDT"], missing=["CUSDT"], final=True)
    clock = TrioClock(start_ms=T0 + 2_000)
    calc = BmacAllMarketCalculator(None, CandleFileReader(datadir.candles), CFGS, clock=clock)
    result = await calc.calc_all(T0)
    assert result.frame.get_column("symbol").to_list() == ["AUSDT", "BUSDT"]
    assert result.missing == ("CUSDT",)
    assert clock.now_ms() == T0 + 2_000  # one poll, no waiting


async def test_all_market_pandas_output_and_empty_period(
    datadir, make_candles, autojump_clock
) -> None:
    datadir.write_symbol("AUSDT", make_candles(30, end_ms=T0))
    datadir.write_exginfo(["AUSDT"], T0)
    readers = CandleFileReader(datadir.exginfo), CandleFileReader(datadir.candles)
    clock = TrioClock(start_ms=T0)
    calc = BmacAllMarketCalculator(*readers, CFGS, clock=clock, output="pandas")
    df = await calc.calc_all_factors(T0)
    assert df.index.name == "symbol"
    assert list(df.index) == ["AUSDT"]
    assert "PctChg_3" in df.columns
    empty = await calc.calc_all_factors(T0 + 300_000)  # nothing ready for the next period
    assert len(empty) == 0
    assert calc.missing == ("AUSDT",)
    assert list(empty.columns[-3:]) == ["PctChg_3", "TrdNumMeanV1_5", "Rsi_6"]


async def test_pandas_style_modules_in_calculators(
    datadir, make_candles, bmac_style_package, autojump_clock
) -> None:
    frames = {s: make_candles(60, end_ms=T0, seed=i) for i, s in enumerate(["AUSDT", "BUSDT"])}
    for s, f in frames.items():
        datadir.write_symbol(s, f)
    datadir.write_exginfo(frames, T0)
    cfgs = [("PctChg", 3), ("TrdNumMeanV1", 5), ("Cci", 4)]
    readers = CandleFileReader(datadir.exginfo), CandleFileReader(datadir.candles)
    calc = BmacAllMarketCalculator(
        *readers, cfgs, package=bmac_style_package, clock=TrioClock(start_ms=T0)
    )
    result = await calc.calc_all_factors(T0)
    single = BmacSingleSymbolCalculator(
        "AUSDT", readers[1], cfgs, package=bmac_style_package, clock=TrioClock(start_ms=T0)
    )
    history = await single.calc_factors(T0)
    import bmac_style_factors.Cci
    import bmac_style_factors.PctChg
    import bmac_style_factors.TrdNumMeanV1

    for symbol, frame in frames.items():
        pdf = frame.to_pandas().set_index("candle_end_time")
        pdf = bmac_style_factors.PctChg.signal(pdf, 3, "PctChg_3")
        pdf = bmac_style_factors.TrdNumMeanV1.signal(pdf, 5, "TrdNumMeanV1_5")
        pdf = bmac_style_factors.Cci.signal(pdf, 4, "Cci_4")
        row = result.filter(pl.col("symbol") == symbol).row(0, named=True)
        for column in ("PctChg_3", "TrdNumMeanV1_5", "Cci_4"):
            assert row[column] == pytest.approx(pdf[column].iloc[-1], rel=1e-12)
        if symbol == "AUSDT":
            for column in ("PctChg_3", "TrdNumMeanV1_5", "Cci_4"):
                got = history.get_column(column).to_numpy()
                assert got == pytest.approx(pdf[column].to_numpy(), rel=1e-12, nan_ok=True)
    # the pandas module and the polars module agree
    polars_calc = BmacAllMarketCalculator(*readers, cfgs, clock=TrioClock(start_ms=T0))
    polars_result = await polars_calc.calc_all_factors(T0)
    for column in ("PctChg_3", "TrdNumMeanV1_5", "Cci_4"):
        assert polars_result.get_column(column).to_list() == pytest.approx(
            result.get_column(column).to_list(), rel=1e-9
        )


async def test_one_failing_factor_fails_one_symbol(
    datadir, make_candles, bmac_style_package, autojump_clock
) -> None:
    """Issue 13: a factor raising for one symbol left the whole period unreported."""
    frames = {s: make_candles(30, end_ms=T0, seed=i) for i, s in enumerate(["AUSDT", "BUSDT"])}
    penny = make_candles(30, end_ms=T0, seed=9)
    frames["PENNYUSDT"] = penny.with_columns(pl.col(*penny.columns[2:7]) / 10_000)
    for s, f in frames.items():
        datadir.write_symbol(s, f)
    datadir.write_exginfo(frames, T0)
    cfgs = [("PctChg", 3), ("PennyGuard", 4)]
    readers = CandleFileReader(datadir.exginfo), CandleFileReader(datadir.candles)
    calc = BmacAllMarketCalculator(
        *readers, cfgs, package=bmac_style_package, clock=TrioClock(start_ms=T0)
    )
    result = await calc.calc_all_factors(T0)
    assert result.get_column("symbol").to_list() == ["AUSDT", "BUSDT"]
    assert calc.missing == ("PENNYUSDT",)
    error = calc.errors["PENNYUSDT"]
    assert (error.symbol, error.factor) == ("PENNYUSDT", "PennyGuard_4")
    assert isinstance(error.error, ValueError)
    assert "penny stock" in str(error)
    single = BmacSingleSymbolCalculator(
        "PENNYUSDT", readers[1], cfgs, package=bmac_style_package, clock=TrioClock(start_ms=T0)
    )
    with pytest.raises(RuntimeError, match=r"PennyGuard_4 failed for PENNYUSDT.*penny stock"):
        await single.calc_factors(T0)
    # a polars factor failing for one symbol: the market query fails, each symbol is retried
    polars_failing = BmacAllMarketCalculator(
        *readers,
        [("PctChg", 3), ("PennyCast", 1)],
        bmac_style_package,
        clock=TrioClock(start_ms=T0),
    )
    rows = await polars_failing.calc_all_factors(T0)
    assert rows.get_column("symbol").to_list() == ["AUSDT", "BUSDT"]
    assert rows.select("PctChg_3").equals(result.select("PctChg_3"))
    assert polars_failing.missing == ("PENNYUSDT",)
    assert polars_failing.errors["PENNYUSDT"].factor == "PennyCast_1"


@pytest.mark.parametrize("stale", ["older candle", "other format"])
async def test_stale_data_is_never_returned(
    datadir, make_candles, autojump_clock, stale, caplog
) -> None:
    """Issue 13 / issue 11: a ready file (or a later one) without run_time's candle in the file
    the reader reads (e.g. a parquet reader after the recorder switched to feather)."""
    old = make_candles(30, end_ms=T0 - 300_000, seed=1)
    datadir.write_symbol("AUSDT", old)  # AUSDT.pqt ends one period early
    if stale == "older candle":
        datadir.store._mark_ready("AUSDT", T0)  # a ready file that lies
    else:
        datadir.save_type = "feather"  # the recorder now writes AUSDT.fea, up to T0
        datadir.write_meta()
        datadir.write_symbol("AUSDT", make_candles(31, end_ms=T0, seed=1))
    datadir.write_exginfo(["AUSDT"], T0)
    datadir.write_manifest(T0, complete=["AUSDT"], final=True)  # the recorder is done with it
    candles = CandleFileReader(datadir.candles, "parquet")
    switched = "reading parquet files, but the recorder writes feather" in caplog.text
    assert switched is (stale == "other format")
    clock = TrioClock(start_ms=T0)
    # 5 s, not 40: the stale file is read again at every poll until the deadline
    single = BmacSingleSymbolCalculator("AUSDT", candles, CFGS, bmac_expire_sec=5, clock=clock)
    with pytest.raises(PeriodNotReady):
        await single.calc_factors(T0)
    assert clock.now_ms() >= T0 + 5_000  # waited for the period's candle until the deadline
    clock = TrioClock(start_ms=T0)
    exginfo = CandleFileReader(datadir.exginfo)
    calc = BmacAllMarketCalculator(exginfo, candles, CFGS, bmac_expire_sec=5, clock=clock)
    frame = await calc.calc_all_factors(T0)
    assert frame.height == 0
    assert calc.missing == ("AUSDT",)
    assert clock.now_ms() >= T0 + 5_000
