"""Benchmark streaming factors against the polars-from-disk calculator and BMAC's pandas way.

500 symbols x 1500 candles x 10 factors by default, on one data directory written by the
recorder's own storage. For each way, the time from the period's message to the all-market
factor frame:

* streaming: as on the live bus, the period's candles come first (applied to the in-memory
  ``MarketWindow`` in batches of 25, as the market finds them waiting; timed apart), then the
  period message: its frame (``symbol`` + candle columns, held already) is applied and
  ``BmacStreamingCalculator.calc_period`` computes the frame (what ``results()`` yields);
* polars from disk: every file of the period is on disk; ``BmacAllMarketCalculator.calc_all``
  from the call to the result (reads all 500 files, polars factors);
* pandas: BMAC's kit way on the same files: ``pd.read_parquet`` and each pandas ``signal()``
  per symbol, the last row of each.

Checks streaming equals polars-from-disk (relative 1e-9, NaN where null) at every compared
period, and prints medians, p99 and the ratios.

    python scripts/bench_factors.py [--symbols 500] [--candles 1500] [--periods 300]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import trio

from bmac_kit import BmacAllMarketCalculator, CandleFileReader
from bmac_kit.streaming import BmacStreamingCalculator, ReplayPeriod
from bmac_kit.window import MarketWindow
from bmac_trio.binance.intervals import parse_interval
from bmac_trio.clock import TrioClock
from bmac_trio.store.candles import CandleStore
from bmac_trio.store.layout import CANDLE_SCHEMA, DEFAULT_TIMEZONE

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "kit"))  # the BMAC-style pandas factor modules

FACTORS = [
    ("PctChg", 100),
    ("TrdNumMeanV1", 80),
    ("Rsi", 14),
    ("Ema", 20),
    ("Cci", 20),
    ("BollingerWidth", 20),
    ("Bias", 20),
    ("Ma", 20),
    ("Volatility", 20),
    ("ZScore", 20),
]
FIVE_MIN = 300_000
#: Candle messages the live market applies at once (those waiting when it looks).
CANDLE_BATCH = 25
START_MS = 1_721_216_400_000
_TIME = pl.Datetime("ms", "UTC")


def make_market(symbols: int, candles: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Every column as a ``(symbols, candles)`` array: random walks, plausible volumes."""
    rng = np.random.default_rng(seed)
    shape = (symbols, candles)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, shape), axis=1))
    open_ = close * (1 + rng.normal(0, 0.002, shape))
    volume = rng.gamma(2.0, 50.0, shape)
    taker = rng.random(shape)
    end = START_MS + FIVE_MIN * np.arange(1, candles + 1, dtype=np.int64)
    return {
        "candle_begin_time": np.broadcast_to(end - FIVE_MIN, shape),
        "candle_end_time": np.broadcast_to(end, shape),
        "open": open_,
        "high": np.maximum(open_, close) * 1.002,
        "low": np.minimum(open_, close) * 0.998,
        "close": close,
        "volume": volume,
        "quote_volume": volume * close,
        "trade_num": np.floor(rng.gamma(2.0, 100.0, shape)),
        "taker_buy_base_asset_volume": volume * taker,
        "taker_buy_quote_asset_volume": volume * close * taker,
    }


def frame_of(columns: dict[str, np.ndarray], rows: tuple | slice) -> pl.DataFrame:
    """Candles from ``columns[...][rows]``: one symbol's history or one period of everyone."""
    data = {}
    for name in CANDLE_SCHEMA.names():
        values = np.ascontiguousarray(columns[name][rows])
        series = pl.Series(name, values)
        data[name] = series.cast(_TIME) if name.endswith("_time") else series
    return pl.DataFrame(data)


def period_message(columns: dict[str, np.ndarray], names: list[str], k: int) -> pl.DataFrame:
    """Period ``k``'s candles of every symbol: what the bus delivers."""
    frame = frame_of({c: a[:, k] for c, a in columns.items()}, slice(None))
    return frame.select(pl.Series("symbol", names), pl.all())


def pandas_way(reader: CandleFileReader, symbols: list[str]) -> pd.DataFrame:
    """A BMAC-kit user's loop: read each file with pandas, apply each signal, keep the last row."""
    modules = [importlib.import_module(f"bmac_style_factors.{n}") for n, _ in FACTORS]
    rows = {}
    for symbol in symbols:
        df = pd.read_parquet(reader.symbol_path(symbol))
        if df.index.name != "candle_end_time":  # the recorder's files restore the index
            df = df.set_index("candle_end_time")
        for module, (name, n) in zip(modules, FACTORS, strict=True):
            df = module.signal(df, n, f"{name}_{n}")
        rows[symbol] = df.iloc[-1]
    return pd.DataFrame.from_dict(rows, orient="index")


def worst_difference(got: pl.DataFrame, want: pl.DataFrame) -> float:
    """Largest relative difference over every factor and symbol; NaN/null must coincide."""
    assert got.get_column("symbol").to_list() == want.get_column("symbol").to_list()
    worst = 0.0
    for name, n in FACTORS:
        a = got.get_column(f"{name}_{n}").to_numpy().astype(float)
        b = want.get_column(f"{name}_{n}").fill_null(np.nan).to_numpy().astype(float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        ok = ~np.isnan(b)
        rel = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300)
        worst = max(worst, float(rel.max(initial=0.0)))
    return worst


class WindowOnly:
    """The part of a market ``calc_period`` reads (the periods are handed over here)."""

    def __init__(self, window: MarketWindow) -> None:
        self.window = window


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def bench(args: argparse.Namespace) -> None:
    tz = ZoneInfo(DEFAULT_TIMEZONE)
    base = Path(tempfile.mkdtemp(prefix="bench_factors_"))
    store = CandleStore(
        base / "usdt_perp_5m", "parquet", tz, args.candles, parse_interval("5m"),
        trade_type="usdt_perp", durable=False,
    )  # fmt: skip
    store.write_meta(
        {"format_version": 1, "interval": "5m", "trade_type": "usdt_perp",
         "save_type": "parquet", "timezone": DEFAULT_TIMEZONE, "num_candles": args.candles,
         "candle_dir": "usdt_perp_5m", "exginfo_dir": "exginfo_5m"}
    )  # fmt: skip
    names = [f"S{i:03d}USDT" for i in range(args.symbols)]
    t = time.perf_counter()
    columns = make_market(args.symbols, args.candles + args.periods)

    def files_at(k: int) -> dict[str, pl.DataFrame]:
        """Each symbol's file once period ``k`` (0-based after the history) is recorded."""
        rows = slice(k + 1, k + 1 + args.candles)
        return {s: frame_of(columns, (i, rows)) for i, s in enumerate(names)}

    def end_of(k: int) -> int:
        return START_MS + FIVE_MIN * (args.candles + k + 1)

    store.write_many(files_at(-1), end_of(-1))
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} at start")
    print(f"data: {args.symbols} symbols x {args.candles} candles written in "
          f"{time.perf_counter() - t:.1f}s under {base}")  # fmt: skip

    t = time.perf_counter()
    window = MarketWindow.from_directory(base)
    print(f"window: filled from the files in {time.perf_counter() - t:.2f}s, "
          f"{window.nbytes / 1e6:.1f} MB ({window.num_candles} candles + {window.mirror} "
          f"mirrored, {window.used_slots} slots)")  # fmt: skip
    calc = BmacStreamingCalculator(WindowOnly(window), FACTORS)  # type: ignore[arg-type]
    reader = CandleFileReader(store.directory)
    compare_at = set(np.linspace(0, args.periods - 1, args.disk_runs).astype(int).tolist())
    pandas_at = sorted(compare_at)[: args.pandas_runs]
    candles_applied: list[float] = []
    streaming, applying, streaming_cpu, disk, disk_cpu, pandas_ms, worst = (
        [],
        [],
        [],
        [],
        [],
        [],
        0.0,
    )
    offset = args.candles  # period k's candle is column candles + k of the arrays
    for k in range(args.periods):
        message = period_message(columns, names, offset + k)
        run_time = pl.select(pl.lit(end_of(k)).cast(_TIME)).item()
        # the bus sends each candle the moment the recorder accepts it, before the period:
        # the market applies them in the batches it finds waiting (here CANDLE_BATCH rows)
        t0 = time.perf_counter()
        for batch in message.iter_slices(CANDLE_BATCH):
            window.apply(batch)
        candles_applied.append((time.perf_counter() - t0) * 1000)
        # the period message: its frame (held already) applied, then the factors
        c0, t0 = time.process_time(), time.perf_counter()
        window.apply(message)
        t1 = time.perf_counter()
        result = calc.calc_period(ReplayPeriod(run_time, message, tuple(names), ()))
        t2, c2 = time.perf_counter(), time.process_time()
        streaming.append((t2 - t0) * 1000)
        streaming_cpu.append((c2 - c0) * 1000)
        applying.append((t1 - t0) * 1000)
        assert result.frame.height == args.symbols
        if k not in compare_at:
            continue
        store.write_many(files_at(k), end_of(k))
        store.write_manifest(end_of(k), complete=names, missing=(), final=True)
        gc.collect()
        batch = BmacAllMarketCalculator(None, reader, FACTORS, clock=TrioClock(start_ms=end_of(k)))
        c0, t0 = time.process_time(), time.perf_counter()
        expected = await batch.calc_all(end_of(k))
        disk.append((time.perf_counter() - t0) * 1000)
        disk_cpu.append((time.process_time() - c0) * 1000)
        assert expected.frame.height == args.symbols, expected.missing
        worst = max(worst, worst_difference(result.frame, expected.frame))
        if k in pandas_at:
            t0 = time.perf_counter()
            pandas_way(reader, names)
            pandas_ms.append((time.perf_counter() - t0) * 1000)

    def show(name: str, values: list[float]) -> tuple[float, float]:
        if not values:
            return math.nan, math.nan
        med, p99 = statistics.median(values), percentile(values, 99)
        print(f"{name:<44} median {med:9.2f} ms   p99 {p99:9.2f} ms   periods {len(values)}")
        return med, p99

    print(f"{len(FACTORS)} factors: {', '.join(f'{n}_{p}' for n, p in FACTORS)}")
    s_med, s_p99 = show("streaming: period message -> frame", streaming)
    show("  of which window.apply (held already)", applying)
    show("  CPU time (all threads)", streaming_cpu)
    show(f"  before it: candles applied ({CANDLE_BATCH}/batch)", candles_applied)
    d_med, d_p99 = show("polars from disk: call -> frame", disk)
    show("  CPU time (all threads)", disk_cpu)
    p_med, _ = show("BMAC pandas way: read + signal per symbol", pandas_ms)
    print(f"ratio polars-from-disk / streaming: median {d_med / s_med:6.1f}x  p99 "
          f"{d_p99 / s_p99:6.1f}x")  # fmt: skip
    print(f"ratio pandas / streaming:           median {p_med / s_med:6.0f}x")
    print(f"largest relative difference streaming vs polars-from-disk: {worst:.1e}")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--candles", type=int, default=1500)
    parser.add_argument("--periods", type=int, default=300, help="streaming periods timed")
    parser.add_argument("--disk-runs", type=int, default=10, help="periods also read from disk")
    parser.add_argument("--pandas-runs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    trio.run(bench, args)


if __name__ == "__main__":
    main()
