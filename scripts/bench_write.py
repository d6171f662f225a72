"""Benchmark one live write, the recorder's per-symbol work at every boundary, in CPU time.

At each boundary the recorder writes every symbol's file once (merge the closing candle, encode
the whole window, fsync, rename, renew the ready file): ~450 writes that must fit into the
~2 s over which the closing pushes arrive, on a machine it shares. This replays that path
(``candles_to_frame`` → ``CandleStore.merge`` → ``CandleStore.write``, fsync on) over
``--symbols`` files of ``--candles`` candles for ``--periods`` periods, in the data directory's
file system (``--dir``), and prints the median CPU of each step and of the whole write.
CPU, not wall time: the fsync's wait for the disk is not CPU taken from anyone. The process's
CPU, not the calling thread's: polars runs part of a merge on its own thread pool (the merge
measured 0.15-0.18 ms of the thread's CPU and 0.30 ms of the process's).

Usage::

    python scripts/bench_write.py                       # 447 symbols x 1500 candles, 5 periods
    python scripts/bench_write.py --dir /data/bmac      # on the disk the recorder writes to
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.binance.protocol import Candle, candles_to_frame
from bmac_trio.store.candles import CandleStore

INTERVAL = parse_interval("1m")
START_MS = 1_767_225_600_000


def _candle(symbol: str, open_ms: int, rng: random.Random) -> Candle:
    price = 100 + rng.random()
    return Candle(
        symbol=symbol,
        open_ms=open_ms,
        open=price,
        high=price * 1.001,
        low=price * 0.999,
        close=price + rng.random() / 10,
        volume=round(rng.random() * 1e4, 3),
        quote_volume=rng.random() * 1e6,
        trade_num=float(rng.randint(1, 5000)),
        taker_buy_base_asset_volume=round(rng.random() * 5e3, 3),
        taker_buy_quote_asset_volume=rng.random() * 5e5,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=447)
    parser.add_argument("--candles", type=int, default=1500)
    parser.add_argument("--periods", type=int, default=5)
    parser.add_argument("--save-type", default="parquet", choices=("parquet", "feather"))
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temp dir)")
    args = parser.parse_args()
    rng = random.Random(8)
    with tempfile.TemporaryDirectory(prefix="bench_write_", dir=args.dir) as tmp:
        store = CandleStore(
            Path(tmp) / "usdt_perp_1m", args.save_type, ZoneInfo("UTC"), args.candles, INTERVAL
        )
        symbols = [f"S{i:03d}USDT" for i in range(args.symbols)]
        frames = {
            s: candles_to_frame(
                [_candle(s, INTERVAL.add(START_MS, k), rng) for k in range(args.candles)],
                INTERVAL,
            )
            for s in symbols
        }
        steps: dict[str, list[float]] = {"frame": [], "merge": [], "write": [], "total": []}
        clock = time.process_time
        for period in range(args.periods):
            open_ms = INTERVAL.add(START_MS, args.candles + period)
            for symbol in symbols:
                candle = _candle(symbol, open_ms, rng)
                t0 = clock()
                new = candles_to_frame([candle], INTERVAL)
                t1 = clock()
                merged = store.merge(frames[symbol], new)
                if merged.n_chunks() > 1:  # as the recorder's writer does
                    merged = merged.rechunk()
                t2 = clock()
                store.write(symbol, merged, INTERVAL.end(open_ms))
                t3 = clock()
                frames[symbol] = merged
                for name, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                    steps[name].append(seconds * 1000)
    cells = ", ".join(f"{name} {statistics.median(v):.3f}" for name, v in steps.items())
    print(
        f"{args.symbols} symbols x {args.candles} candles, {args.save_type}, {args.periods} "
        f"periods: median process CPU per write (ms): {cells}; per boundary "
        f"{statistics.mean(steps['total']) * args.symbols / 1000:.2f} s"
    )


if __name__ == "__main__":
    main()
