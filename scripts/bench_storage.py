"""Storage figures: one symbol's read / merge / write (+ ready file) and a restart scan.

Usage: python scripts/bench_storage.py [--symbols 500] [--candles 1500] [--no-durable]
Prints medians and p99 in milliseconds for parquet and feather; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.binance.protocol import Candle, candles_to_frame
from bmac_trio.store.candles import CandleStore


def candles(symbol: str, first: int, n: int, step: int) -> list[Candle]:
    return [
        Candle(
            symbol=symbol,
            open_ms=first + i * step,
            open=100.0 + i * 0.01,
            high=101.0 + i * 0.01,
            low=99.0 + i * 0.01,
            close=100.5 + i * 0.01,
            volume=1234.5 + i,
            quote_volume=123456.7 + i,
            trade_num=float(100 + i),
            taker_buy_base_asset_volume=600.0 + i,
            taker_buy_quote_asset_volume=60000.0 + i,
        )
        for i in range(n)
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--candles", type=int, default=1500)
    parser.add_argument("--no-durable", action="store_true")
    args = parser.parse_args()
    iv = parse_interval("5m")
    first = iv.floor(1_700_000_000_000)
    symbols = [f"SYM{i:04d}USDT" for i in range(args.symbols)]
    for save_type in ("parquet", "feather"):
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            store = CandleStore(
                Path(tmp), save_type, ZoneInfo("Asia/Hong_Kong"), args.candles, iv,
                trade_type="usdt_perp", durable=not args.no_durable,
            )  # fmt: skip
            t0 = time.perf_counter()
            for s in symbols:
                frame = candles_to_frame(candles(s, first, args.candles, iv.ms), iv)
                store.write(s, frame, iv.end(iv.add(first, args.candles - 1)))
            initial = time.perf_counter() - t0
            t0 = time.perf_counter()
            last = store.last_open_times()
            scan = time.perf_counter() - t0
            assert len(last) == len(symbols)
            cached = {s: store.read(s) for s in symbols}
            reads, merges, writes, totals = [], [], [], []
            for period in range(3):
                open_ms = iv.add(first, args.candles + period)
                for s in symbols:
                    new = candles_to_frame(candles(s, open_ms, 1, iv.ms), iv)
                    a = time.perf_counter()
                    old = store.read(s)
                    b = time.perf_counter()
                    merged = store.merge(cached[s], new)
                    c = time.perf_counter()
                    store.write(s, merged, iv.end(open_ms))
                    d = time.perf_counter()
                    cached[s] = merged
                    assert old is not None
                    reads.append(b - a)
                    merges.append(c - b)
                    writes.append(d - c)
                    totals.append(d - b)
            # a burst: every symbol's closing candle at once, through write_many's thread pool
            open_ms = iv.add(first, args.candles + 3)
            burst = {
                s: store.merge(cached[s], candles_to_frame(candles(s, open_ms, 1, iv.ms), iv))
                for s in symbols
            }
            t0 = time.perf_counter()
            results = store.write_many(burst, iv.end(open_ms), max_workers=8)
            burst_s = time.perf_counter() - t0
            assert all(r is True for r in results.values())
            ms = 1000
            print(
                f"{save_type:8s} {args.symbols} symbols x {args.candles} candles"
                f" (durable={not args.no_durable}):\n"
                f"  initial write of all files  {initial:7.3f} s\n"
                f"  restart scan last_open_times {scan * ms:7.1f} ms\n"
                f"  read       median {statistics.median(reads) * ms:6.3f} ms"
                f"  p99 {pct(reads, 0.99) * ms:6.3f} ms\n"
                f"  merge      median {statistics.median(merges) * ms:6.3f} ms"
                f"  p99 {pct(merges, 0.99) * ms:6.3f} ms\n"
                f"  write+ready median {statistics.median(writes) * ms:6.3f} ms"
                f"  p99 {pct(writes, 0.99) * ms:6.3f} ms\n"
                f"  merge+write per symbol median {statistics.median(totals) * ms:6.3f} ms,"
                f" one period of {args.symbols} symbols serially"
                f" ~{sum(totals) / 3:6.3f} s\n"
                f"  burst of {args.symbols} writes via write_many(8 threads) {burst_s:6.3f} s"
            )


if __name__ == "__main__":
    main()
