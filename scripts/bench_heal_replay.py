"""What a subscriber's heal costs its event loop for replaying the last periods' live candles.

``bmac_kit.subscribe`` rebuilds its window from the truth and then applies again the live
frames of the last three periods (the truth may lack the newest: the recorder publishes a
candle before its write lands). This builds a whole market's window (``--symbols`` x
``--candles``), the frames the bus brings in three periods (batches of candles as the socket
drains, then each period's all-market frame), and times applying them all to a window whose
truth holds every period, or lacks the newest one.

Prints the median and max in milliseconds over ``--runs`` windows.

    python scripts/bench_heal_replay.py [--symbols 447] [--candles 1500] [--batch 22] [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import polars as pl

from bmac_kit.window import MarketWindow
from bmac_trio.binance.candles import CANDLE_SCHEMA, FLOAT_COLUMNS

MINUTE = 60_000
END_MS = 1_767_225_600_000
PERIODS = 3


def market(symbols: list[str], candles: int) -> pl.DataFrame:
    """Every symbol's candles up to ``END_MS`` (values do not matter here, only the shape)."""
    rng = np.random.default_rng(0)
    rows = len(symbols) * candles
    begin = np.tile(END_MS - MINUTE * np.arange(candles, 0, -1, dtype=np.int64), len(symbols))
    columns: dict[str, object] = {
        "symbol": np.repeat(symbols, candles),
        "candle_begin_time": begin,
        "candle_end_time": begin + MINUTE,
    }
    columns.update({name: rng.random(rows) for name in FLOAT_COLUMNS})
    times = pl.col("candle_begin_time", "candle_end_time").cast(pl.Datetime("ms", "UTC"))
    return pl.DataFrame(columns).with_columns(times).select("symbol", *CANDLE_SCHEMA.names())


def bus_frames(full: pl.DataFrame, batch: int) -> list[pl.DataFrame]:
    """The last ``PERIODS`` periods as the subscriber applied them."""
    ends = full["candle_end_time"].dt.epoch("ms")
    frames = []
    for back in range(PERIODS - 1, -1, -1):
        period = full.filter(ends == END_MS - back * MINUTE)
        frames += [period.slice(i, batch) for i in range(0, period.height, batch)]
        frames.append(period)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=447)
    parser.add_argument("--candles", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=22, help="candles a drain of the socket")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    symbols = [f"S{i:04d}USDT" for i in range(args.symbols)]
    full = market(symbols, args.candles)
    frames = bus_frames(full, args.batch)
    ends = full["candle_end_time"].dt.epoch("ms")
    print(f"{args.symbols} symbols x {args.candles} candles; {len(frames)} frames replayed")
    for lacking in (0, 1):
        truth = full.filter(ends <= END_MS - lacking * MINUTE)
        times = []
        for _ in range(args.runs):
            window = MarketWindow(args.candles, "1m")
            window.apply(truth)
            started = time.perf_counter()
            for frame in frames:
                window.apply(frame)
            times.append((time.perf_counter() - started) * 1000)
            assert window.period_frame(END_MS).height == args.symbols
        print(
            f"truth lacking the newest {lacking} period(s): replay median "
            f"{statistics.median(times):.1f} ms, max {max(times):.1f} ms"
        )


if __name__ == "__main__":
    main()
