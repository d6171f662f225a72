"""Benchmark the all-market calculator against the BMAC-kit (pandas) way, in the same run.

Builds a data directory with the recorder's own storage (500 symbols x 1500 candles by
default), then, for several periods:

* streaming: the calculator is already waiting when the period's files land (written through
  ``CandleStore.write`` in batches spread over ``--spread`` seconds, as closing candles arrive,
  then the final manifest); measured from the moment the last symbol's file and ready file
  are on disk (the period is complete; the manifest follows) to the all-market result.
* cold: everything is already on disk; from the call to the result (all 500 files read after
  the call).
* pandas: the same work BMAC-kit style: for each symbol ``pd.read_parquet`` /
  ``pd.read_feather`` and each pandas ``signal(df, n, name)``, then the last row of each.

Streaming and cold are measured for three calculators: the polars-first one
(``bmac_kit.BmacAllMarketCalculator``), and the pandas-compatible one
(``bmac_kit.bmac.BmacAllMarketCalculator``, BMAC's pandas frame out) with the bundled polars
factors and with BMAC users' pandas ``signal`` modules (``tests/kit/bmac_style_factors``).

Prints medians (and max) in milliseconds and the ratios; checks all give the same numbers.

    python scripts/bench_kit.py [--symbols 500] [--candles 1500] [--runs 5] [--save-type parquet]
"""

from __future__ import annotations

import argparse
import logging
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

import bmac_kit.bmac
from bmac_kit import BmacAllMarketCalculator, CandleFileReader
from bmac_trio.binance.intervals import parse_interval
from bmac_trio.clock import TrioClock
from bmac_trio.store.candles import CandleStore, ExginfoStore
from bmac_trio.store.layout import CANDLE_SCHEMA, DEFAULT_TIMEZONE

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "kit"))  # the BMAC-style pandas factor modules

FACTORS = [
    ("PctChg", 100),
    ("TrdNumMeanV1", 80),
    ("Bias", 20),
    ("Cci", 20),
    ("Rsi", 14),
    ("Ma", 20),
    ("Ema", 20),
    ("Volatility", 20),
    ("QuoteVolumeMean", 20),
    ("ZScore", 20),
]
FIVE_MIN = 300_000
START_MS = 1_721_216_400_000


def make_history(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    begin = START_MS + FIVE_MIN * np.arange(n, dtype=np.int64)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    volume = rng.gamma(2.0, 50.0, n)
    taker = rng.random(n)
    frame = pl.DataFrame(
        {
            "candle_begin_time": begin,
            "candle_end_time": begin + FIVE_MIN,
            "open": close * (1 + rng.normal(0, 0.002, n)),
            "high": close * 1.004,
            "low": close * 0.996,
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trade_num": np.floor(rng.gamma(2.0, 100.0, n)),
            "taker_buy_base_asset_volume": volume * taker,
            "taker_buy_quote_asset_volume": volume * close * taker,
        }
    )
    times = pl.col("candle_begin_time", "candle_end_time").cast(pl.Datetime("ms", "UTC"))
    return frame.with_columns(times).cast(dict(CANDLE_SCHEMA))  # type: ignore[arg-type]


def pandas_way(reader: CandleFileReader, symbols: list[str]) -> pd.DataFrame:
    """What a BMAC-kit user's loop does: read each file with pandas, apply each signal."""
    import importlib

    modules = [importlib.import_module(f"bmac_style_factors.{n}") for n, _ in FACTORS]
    rows = {}
    for symbol in symbols:
        path = reader.symbol_path(symbol)
        df = pd.read_parquet(path) if reader.save_type == "parquet" else pd.read_feather(path)
        if df.index.name != "candle_end_time":  # the files restore it; BMAC's feather did not
            df = df.set_index("candle_end_time")
        for module, (name, n) in zip(modules, FACTORS, strict=True):
            df = module.signal(df, n, f"{name}_{n}")
        rows[symbol] = df.iloc[-1]
    return pd.DataFrame.from_dict(rows, orient="index")


#: name -> (calculator class, factor package)
VARIANTS = {
    "polars": (BmacAllMarketCalculator, "factor"),
    "bmac.py, bundled polars factors": (bmac_kit.bmac.BmacAllMarketCalculator, "factor"),
    "bmac.py, pandas signal modules": (bmac_kit.bmac.BmacAllMarketCalculator, "bmac_style_factors"),
}


def check_same(result: pl.DataFrame | pd.DataFrame, pandas_frame: pd.DataFrame) -> float:
    """Largest relative difference between the two ways, over every factor and symbol."""
    got = result if isinstance(result, pd.DataFrame) else result.to_pandas().set_index("symbol")
    got = got.sort_index()
    want = pandas_frame.sort_index()
    worst = 0.0
    for name, n in FACTORS:
        col = f"{name}_{n}"
        a, b = got[col].to_numpy(float), want[col].to_numpy(float)
        worst = max(worst, float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))))
    return worst


async def bench(args: argparse.Namespace) -> None:
    tz = ZoneInfo(DEFAULT_TIMEZONE)
    interval = parse_interval("5m")
    base = Path(tempfile.mkdtemp(prefix="bench_kit_"))
    store = CandleStore(
        base / "usdt_perp_5m", args.save_type, tz, args.candles, interval,
        trade_type="usdt_perp", durable=False,
    )  # fmt: skip
    exginfo = ExginfoStore(base / "exginfo_5m", tz, durable=False)
    meta = {"format_version": 1, "interval": "5m", "trade_type": "usdt_perp",
            "save_type": args.save_type, "timezone": DEFAULT_TIMEZONE}  # fmt: skip
    store.write_meta(meta)
    exginfo.write_meta(meta)
    symbols = [f"S{i:03d}USDT" for i in range(args.symbols)]
    periods = (len(VARIANTS) + 1) * args.runs + 1
    results: dict[str, pl.DataFrame | pd.DataFrame] = {}
    t = time.perf_counter()
    history = {s: make_history(args.candles + periods, i) for i, s in enumerate(symbols)}
    first_end = START_MS + FIVE_MIN * args.candles

    def frames_for(k: int) -> dict[str, pl.DataFrame]:
        return {s: f.slice(k, args.candles) for s, f in history.items()}

    store.write_many(frames_for(0), first_end)
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} at start")
    print(
        f"data: {args.symbols} symbols x {args.candles} candles ({args.save_type}) "
        f"written in {time.perf_counter() - t:.1f}s under {base}"
    )
    candles = CandleFileReader(store.directory)
    exg = CandleFileReader(exginfo.directory)
    exg_frame = pl.DataFrame({"symbol": symbols, "status": ["TRADING"] * len(symbols)})
    streaming: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cold: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cold_cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}  # all threads: robust to load
    pandas_ms: list[float] = []
    pandas_cpu: list[float] = []
    worst = 0.0
    k = 0

    for _ in range(args.runs):
        # --- streaming: the calculator waits while the period lands ----------------------
        for variant, (cls, package) in VARIANTS.items():
            k += 1
            run_time = first_end + k * FIVE_MIN
            clock = TrioClock(start_ms=run_time - 200)
            calc = cls(exg, candles, FACTORS, package, clock=clock)
            frames = frames_for(k)
            complete_at: list[float] = []

            async def land_period(
                frames=frames, run_time=run_time, clock=clock, complete_at=complete_at
            ):
                await clock.sleep_until_ms(run_time)
                await trio.to_thread.run_sync(exginfo.write_exginfo, exg_frame, run_time)
                batch = max(1, len(symbols) // args.batches)
                for i in range(0, len(symbols), batch):
                    if i:
                        await trio.sleep(args.spread / args.batches)
                    part = {s: frames[s] for s in symbols[i : i + batch]}
                    await trio.to_thread.run_sync(store.write_many, part, run_time)
                complete_at.append(time.perf_counter())  # every file and ready file on disk
                await trio.to_thread.run_sync(
                    lambda: store.write_manifest(run_time, complete=symbols, missing=(), final=True)
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(land_period)
                result = await calc.calc_all_factors(run_time)
                done_at = time.perf_counter()
            assert len(result) == len(symbols), (len(result), calc.missing)
            streaming[variant].append((done_at - complete_at[0]) * 1000)

        # --- cold: everything already on disk --------------------------------------------
        k += 1
        run_time = first_end + k * FIVE_MIN
        store.write_many(frames_for(k), run_time)
        exginfo.write_exginfo(exg_frame, run_time)
        store.write_manifest(run_time, complete=symbols, missing=(), final=True)
        await trio.sleep(args.settle)  # let the burst of writes settle before timing reads
        for variant, (cls, package) in VARIANTS.items():
            calc = cls(exg, candles, FACTORS, package, clock=TrioClock(start_ms=run_time))
            t, cpu = time.perf_counter(), time.process_time()
            result = await calc.calc_all_factors(run_time)
            cold[variant].append((time.perf_counter() - t) * 1000)
            cold_cpu[variant].append((time.process_time() - cpu) * 1000)
            assert len(result) == len(symbols)
            results[variant] = result

        # --- the BMAC-kit (pandas) way, same files -----------------------------------------
        t, cpu = time.perf_counter(), time.process_time()
        expected = pandas_way(candles, symbols)
        pandas_ms.append((time.perf_counter() - t) * 1000)
        pandas_cpu.append((time.process_time() - cpu) * 1000)
        worst = max(worst, *(check_same(r, expected) for r in results.values()))

    def show(name: str, values: list[float]) -> float:
        med = statistics.median(values)
        print(f"{name:<48} median {med:8.1f} ms   max {max(values):8.1f} ms   runs {len(values)}")
        return med

    print(f"{len(FACTORS)} factors: {', '.join(f'{n}_{p}' for n, p in FACTORS)}")
    medians = {}
    for variant in VARIANTS:
        print(f"-- {variant}")
        s = show("streaming: period complete -> all-market result", streaming[variant])
        c = show("cold: call -> all-market result (all on disk)", cold[variant])
        show("cold, CPU time (all threads)", cold_cpu[variant])
        medians[variant] = (s, c)
    print("-- BMAC-kit style, by hand")
    p = show("BMAC-kit style pandas (read + signal per symbol)", pandas_ms)
    show("BMAC-kit style pandas, CPU time", pandas_cpu)
    for variant, (s, c) in medians.items():
        print(f"ratio pandas / cold      ({variant}): {p / c:6.1f}x")
        print(f"ratio pandas / streaming ({variant}): {p / s:6.1f}x")
    print(f"largest relative difference kit vs pandas: {worst:.1e}")
    shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--candles", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--save-type", choices=["parquet", "feather"], default="parquet")
    parser.add_argument(
        "--spread", type=float, default=1.0, help="seconds the period takes to land"
    )
    parser.add_argument("--batches", type=int, default=20, help="write batches per period")
    parser.add_argument("--settle", type=float, default=1.0, help="pause after writing (cold)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    trio.run(bench, args)


if __name__ == "__main__":
    main()
