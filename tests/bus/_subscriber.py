"""A bus subscriber process for the integration tests: ``python _subscriber.py SOURCE OUT [opts]``.

Runs ``bmac_kit.subscribe(SOURCE)``; after each period it writes its whole window to
``OUT/window.parquet`` (atomically) and prints one JSON line (run time, stats). ``--stall-until
FILE`` blocks its event loop after the first period until FILE exists (a subscriber that stops
reading: its queues fill up and the publisher drops messages for it); the test creates FILE once
the publisher has counted a drop, so the loss does not depend on how much the kernel buffers.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import orjson
import polars as pl

import bmac_kit


def dump(window: object, out: Path) -> int:
    frames = [
        window.frame(s).with_columns(pl.lit(s).alias("symbol"))  # type: ignore[attr-defined]
        for s in window.symbols()  # type: ignore[attr-defined]
    ]
    frame = pl.concat(frames) if frames else pl.DataFrame()
    tmp = out / "window.parquet.tmp"
    frame.write_parquet(tmp)
    os.replace(tmp, out / "window.parquet")
    return frame.height


def exit_with_parent() -> None:
    """The test holds our stdin: when it dies (or closes it) we exit too."""

    def watch() -> None:
        sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


async def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    async with bmac_kit.subscribe(args.source, rcvhwm=args.rcvhwm) as market:
        print(orjson.dumps({"event": "ready", "symbols": len(market.window)}).decode(), flush=True)
        stall = Path(args.stall_until) if args.stall_until else None
        async for period in market.periods():
            rows = dump(market.window, out)
            line = {
                "event": "period",
                "run_time_ms": period.run_time_ms,
                "ready": len(period.ready),
                "period_rows": period.candles.height,
                "healed": period.healed,
                "rows": rows,
                "epoch": market.epoch,
                "gaps": market.stats.gaps,
                "lost": market.stats.lost,
                "epochs": market.stats.epochs,
                "heals": market.stats.heals,
            }
            print(orjson.dumps(line).decode(), flush=True)
            if stall is not None:
                print(orjson.dumps({"event": "stalled"}).decode(), flush=True)
                while not stall.exists():  # blocks the loop: nothing is read meanwhile
                    time.sleep(0.01)  # noqa: ASYNC251
                stall = None


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--stall-until", default="")
    parser.add_argument("--rcvhwm", type=int, default=100_000)
    parser.add_argument("--backend", default="trio", choices=("trio", "asyncio"))
    ns = parser.parse_args()
    exit_with_parent()
    if ns.backend == "trio":
        import trio

        trio.run(main, ns)
    else:
        import asyncio

        asyncio.run(main(ns))
    sys.exit(0)
