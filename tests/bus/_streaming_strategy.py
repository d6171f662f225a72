"""A streaming strategy process for the integration tests: ``python _streaming_strategy.py
SOURCE OUT``.

Runs ``BmacStreamingCalculator`` over ``bmac_kit.subscribe(SOURCE)``; for each period it writes
the factor frame to ``OUT/<run_time_ms>.parquet`` (atomically) and prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from contextlib import aclosing
from pathlib import Path

import orjson

import bmac_kit
from bmac_kit.streaming import BmacStreamingCalculator

#: Factors whose value needs only the last few candles: the files, which keep the last 60,
#: still hold them when the test computes the batch reference afterwards.
FACTORS = [("PctChg", 5), ("TrdNumMeanV1", 4), ("Rsi", 6), ("Cci", 3), ("BollingerWidth", 5)]


def exit_with_parent() -> None:
    """The test holds our stdin: when it dies (or closes it) we exit too."""

    def watch() -> None:
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


async def main(out: Path, source: str) -> None:
    async with bmac_kit.subscribe(source) as market:
        calc = BmacStreamingCalculator(market, FACTORS)
        async with aclosing(calc.results()) as results:
            async for result in results:
                tmp = out / f"{result.run_time_ms}.tmp"
                result.frame.write_parquet(tmp)
                os.replace(tmp, out / f"{result.run_time_ms}.parquet")
                line = {
                    "event": "period",
                    "run_time_ms": result.run_time_ms,
                    "rows": result.frame.height,
                    "missing": list(result.missing),
                    "epochs": market.stats.epochs,
                }
                print(orjson.dumps(line).decode(), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("out")
    ns = parser.parse_args()
    exit_with_parent()
    import trio

    Path(ns.out).mkdir(parents=True, exist_ok=True)
    trio.run(main, Path(ns.out), ns.source)
    sys.exit(0)
