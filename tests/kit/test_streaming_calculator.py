"""BmacStreamingCalculator over a replayed market, under trio and asyncio (AnyIO).

The window is filled from a recorder-written directory; each period's candles are written to
the files *and* replayed to the market, so the batch calculator reading the files is the
reference for every period: a healed late symbol, a listing, user polars and pandas factors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import sys
from collections.abc import Iterator
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bmac_kit import AllMarketResult, BmacAllMarketCalculator, CandleFileReader
from bmac_kit._factors import apply_all_market, load_factors
from bmac_kit._reader import read_market
from bmac_kit.streaming import BmacStreamingCalculator, ReplayMarket, ReplayPeriod
from bmac_kit.window import MarketWindow
from bmac_trio.clock import TrioClock

T0 = 1_721_216_400_000
#: Where a formula cancels (Bias = close / mean - 1 near 0, Cci and ZScore near 0), the two
#: summation orders differ by ~1e-16 of the operands, which is more than 1e-9 of a result
#: near zero: there the values must agree to 1e-10 absolute instead.
ABS_TOL = 1e-10
FIVE_MIN = 300_000
CFGS = [
    ("PctChg", 5),
    ("TrdNumMeanV1", 4),
    ("Rsi", 6),
    ("Ema", 8),
    ("Cci", 3),
    ("BollingerWidth", 5),
]
USER_FACTORS = {
    "Spread.py": (
        "import polars as pl\n\n"
        "def expr(n):\n"
        "    return ((pl.col('high') - pl.col('low')) / pl.col('close')).rolling_mean(n)\n\n"
        "def lookback(n):\n"
        "    return n\n"
    ),
    "Trend.py": (  # no lookback: evaluated on the whole window
        "import polars as pl\n\n"
        "def expr(n):\n"
        "    return pl.col('close').ewm_mean(span=n) / pl.col('close').first()\n"
    ),
    "Ema.py": "from bmac_kit.factors.Ema import expr  # noqa: F401\n",  # bundled: a kernel
    "Momentum.py": (  # a bundled factor's name, the user's own formula: no kernel
        "import polars as pl\n\n"
        "def expr(n):\n"
        "    return pl.col('close').log().diff(n)\n\n"
        "def lookback(n):\n"
        "    return n + 1\n"
    ),
    "PandasPct.py": (
        "def signal(df, n, factor_name):\n"
        "    df[factor_name] = df['close'].pct_change(n)\n"
        "    return df\n"
    ),
}
USER_CFGS = [("Spread", 3), ("Trend", 4), ("Ema", 5), ("Momentum", 3), ("PandasPct", 2)]


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    package = tmp_path / "pkgs" / "user_factors"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, source in USER_FACTORS.items():
        (package / name).write_text(source)
    monkeypatch.syspath_prepend(str(package.parent))
    yield "user_factors"
    for name in [m for m in sys.modules if m.startswith("user_factors")]:
        del sys.modules[name]


def scenario(datadir: Any, make_candles: Any) -> Iterator[pl.DataFrame]:
    """History on disk, then four periods (each written to the files, then yielded).

    Period 1: BUSDT is late (missing). Period 2: BUSDT's two candles (healed) and CUSDT listed
    with 4 candles (its whole history). Period 3: everyone on time.
    """
    full = {
        "AUSDT": make_candles(30, end_ms=T0 + 4 * FIVE_MIN, seed=1),
        "BUSDT": make_candles(30, end_ms=T0 + 4 * FIVE_MIN, seed=2),
        "CUSDT": make_candles(5, end_ms=T0 + 4 * FIVE_MIN, seed=3),
    }
    for symbol in ("AUSDT", "BUSDT"):
        datadir.write_symbol(symbol, full[symbol].head(26))  # up to T0

    def upto(symbol: str, end_ms: int, count: int | None = None) -> pl.DataFrame:
        frame = full[symbol].filter(pl.col("candle_end_time").dt.epoch("ms") <= end_ms)
        return frame if count is None else frame.tail(count)

    plan = [
        {"AUSDT": 1, "BUSDT": 1},
        {"AUSDT": 1},
        {"AUSDT": 1, "BUSDT": 2, "CUSDT": 4},
        {"AUSDT": 1, "BUSDT": 1, "CUSDT": 1},
    ]

    def periods() -> Iterator[pl.DataFrame]:
        for period, new in enumerate(plan, start=1):
            end_ms = T0 + period * FIVE_MIN
            for symbol in new:
                datadir.write_symbol(symbol, upto(symbol, end_ms))
            yield pl.concat(
                upto(s, end_ms, count).select(pl.lit(s).alias("symbol"), pl.all())
                for s, count in new.items()
            )

    return periods()


def batch_frame(out: Any) -> pl.DataFrame:
    """apply_all_market's frame (since issue 13 it returns (frame, errors))."""
    return out[0] if isinstance(out, tuple) else out


def assert_same(streamed: pl.DataFrame, batch: pl.DataFrame, columns: list[str]) -> None:
    assert streamed.columns == batch.columns
    assert streamed.drop(columns).equals(batch.drop(columns))
    for column in columns:
        for got, want in zip(streamed[column], batch[column], strict=True):
            if want is None or math.isnan(want):
                assert math.isnan(got), column
            else:
                assert math.isclose(got, want, rel_tol=1e-9, abs_tol=ABS_TOL), (column, got, want)


def batch_from_files(datadir: Any, cfgs: list, package: str, run_ms: int) -> pl.DataFrame:
    reader = CandleFileReader(datadir.candles)
    ready = sorted(reader.ready_symbols(run_ms))
    market = read_market({s: reader.symbol_path(s) for s in ready})
    return batch_frame(apply_all_market(market, load_factors(cfgs, package), run_ms))


async def test_every_period_equals_the_batch_calculator_under_trio(
    datadir: Any, make_candles: Any, autojump_clock: Any
) -> None:
    frames = scenario(datadir, make_candles)
    window = MarketWindow.from_directory(datadir.base)
    calc = BmacStreamingCalculator(ReplayMarket(window, frames), CFGS)
    columns = [f"{n}_{p}" for n, p in CFGS]
    seen = []
    async with aclosing(calc.results()) as results:
        async for result in results:
            assert isinstance(result, AllMarketResult)
            batch = BmacAllMarketCalculator(
                None, CandleFileReader(datadir.candles), CFGS, clock=TrioClock(start_ms=T0)
            )
            expected = await batch.calc_all(result.run_time_ms)
            assert_same(result.frame, expected.frame, columns)
            assert result.missing == expected.missing
            seen.append((result.frame.get_column("symbol").to_list(), result.missing))
    assert seen == [
        (["AUSDT", "BUSDT"], ()),
        (["AUSDT"], ("BUSDT",)),
        (["AUSDT", "BUSDT", "CUSDT"], ()),
        (["AUSDT", "BUSDT", "CUSDT"], ()),
    ]
    # CUSDT holds 5 candles: PctChg_5 needs 6, so NaN (null in batch); Rsi_6 too
    row = result.frame.filter(symbol="CUSDT")
    assert math.isnan(row.item(0, "PctChg_5"))
    assert not math.isnan(row.item(0, "Ema_8"))


async def _user_results(window: MarketWindow, frames: Any, package: str) -> list[Any]:
    calc = BmacStreamingCalculator(ReplayMarket(window, frames), USER_CFGS, package)
    assert set(calc._kernels) == {"Ema_5"}  # the re-exported bundled factor gets its kernel
    async with aclosing(calc.results()) as results:
        return [result async for result in results]


def test_user_factors_under_asyncio_from_memory_only(
    datadir: Any, make_candles: Any, user_package: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Polars user factors, a bundled re-export and a pandas one, under asyncio."""
    periods = scenario(datadir, make_candles)
    window = MarketWindow.from_directory(datadir.base)
    frames = list(periods)  # every period on disk now: the batch reference
    expected = [
        batch_from_files(datadir, USER_CFGS, user_package, T0 + p * FIVE_MIN) for p in (3, 4)
    ]
    shutil.rmtree(datadir.base)  # from here on, memory only
    with caplog.at_level(logging.INFO, logger="bmac_kit.streaming"):
        results = asyncio.run(_user_results(window, frames, user_package))
    assert [r.run_time_ms for r in results] == [T0 + p * FIVE_MIN for p in range(1, 5)]
    columns = [f"{n}_{p}" for n, p in USER_CFGS]
    for result, batch in zip(results[2:], expected, strict=True):
        assert_same(result.frame, batch, columns)
    slow = [r.getMessage() for r in caplog.records if "slow path" in r.getMessage()]
    assert len(slow) == 1
    assert "PandasPct_2" in slow[0]


async def test_user_factors_under_trio(datadir: Any, make_candles: Any, user_package: str) -> None:
    periods = scenario(datadir, make_candles)
    window = MarketWindow.from_directory(datadir.base)
    results = await _user_results(window, periods, user_package)
    last = batch_from_files(datadir, USER_CFGS, user_package, T0 + 4 * FIVE_MIN)
    assert_same(results[-1].frame, last, [f"{n}_{p}" for n, p in USER_CFGS])


def test_pandas_output_is_bmacs_shape(datadir: Any, make_candles: Any) -> None:
    periods = scenario(datadir, make_candles)
    market = ReplayMarket(MarketWindow.from_directory(datadir.base), periods)
    calc = BmacStreamingCalculator(market, CFGS, output="pandas")

    async def first() -> Any:
        async with aclosing(calc.results()) as results:
            async for result in results:
                return result.frame
        return None

    frame = asyncio.run(first())
    assert frame.index.name == "symbol"
    assert list(frame.index) == ["AUSDT", "BUSDT"]
    assert "Ema_8" in frame.columns


async def test_a_period_the_window_has_moved_past_is_cut_from_the_window(
    datadir: Any, make_candles: Any
) -> None:
    """calc_period for an older period: the symbols holding it are computed like the batch."""
    frames = scenario(datadir, make_candles)
    window = MarketWindow.from_directory(datadir.base)
    market = ReplayMarket(window, frames)
    calc = BmacStreamingCalculator(market, CFGS)
    async with aclosing(calc.results()) as results:
        periods = [result async for result in results]
    assert len(periods) == 4
    third = T0 + 3 * FIVE_MIN
    assert market.period_of(window.period_frame(third)).ready == ()  # no newest ends then
    period = ReplayPeriod(
        run_time=datetime.fromtimestamp(third / 1000, UTC),
        candles=window.period_frame(third),
        ready=("AUSDT", "BUSDT", "CUSDT", "DUSDT"),
        missing=(),
    )
    late = calc.calc_period(period)
    batch = batch_from_files(datadir, CFGS, "factor", third)
    assert_same(late.frame, batch, [f"{n}_{p}" for n, p in CFGS])
    assert late.frame.get_column("symbol").to_list() == ["AUSDT", "BUSDT", "CUSDT"]
    assert late.missing == ("DUSDT",)


class ClosingMarket(ReplayMarket):
    """Records whether its period stream was closed."""

    closed = False

    async def periods(self) -> Any:
        try:
            async with aclosing(super().periods()) as periods:
                async for period in periods:
                    yield period
        finally:
            self.closed = True


async def test_leaving_early_closes_the_markets_period_stream(
    datadir: Any, make_candles: Any
) -> None:
    frames = scenario(datadir, make_candles)
    market = ClosingMarket(MarketWindow.from_directory(datadir.base), frames)
    calc = BmacStreamingCalculator(market, CFGS)
    async with aclosing(calc.results()) as results:
        async for result in results:
            assert result.run_time_ms == T0 + FIVE_MIN
            break
    assert market.closed


def test_the_period_frame_itself_heads_the_result_when_it_matches(
    datadir: Any, make_candles: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bus sends the period's candles sorted by symbol, one per symbol: the result is
    built on that frame instead of gathering the rows out of the window again. Any other
    frame (another order, more rows) goes the window's way; both give the same result."""
    for seed, symbol in enumerate(("AUSDT", "BUSDT", "CUSDT"), start=1):
        datadir.write_symbol(symbol, make_candles(30, end_ms=T0, seed=seed))
    window = MarketWindow.from_directory(datadir.base)
    calc = BmacStreamingCalculator(ReplayMarket(window, []), CFGS)
    frame = window.period_frame(T0)
    assert frame.get_column("symbol").to_list() == ["AUSDT", "BUSDT", "CUSDT"]
    run_time = datetime.fromtimestamp(T0 / 1000, UTC)
    gathered = []
    rows_at = window.rows_at
    monkeypatch.setattr(window, "rows_at", lambda *a: gathered.append(a) or rows_at(*a))

    def result_of(candles: pl.DataFrame) -> pl.DataFrame:
        period = ReplayPeriod(run_time, candles, ("AUSDT", "BUSDT", "CUSDT"), ())
        return calc.calc_period(period).frame

    reused = result_of(frame)
    assert gathered == []
    rebuilt = result_of(frame.reverse())
    assert len(gathered) == 1
    assert reused.equals(rebuilt)
    assert reused.columns == ["symbol", *frame.columns[1:], *(f"{n}_{p}" for n, p in CFGS)]
