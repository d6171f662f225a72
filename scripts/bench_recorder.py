"""Benchmark the recorder against the simulator: period lag, history, CPU, memory.

The simulator (``bmac-trio sim``, USDⓈ-M, 500 symbols) runs in its own process; each save type
is recorded by ``run_recorder`` in a fresh child process (so CPU time and peak RSS are the
recorder's alone), on a clock shared with the simulator (``--speed``; 1 is real time, where
the closing pushes are spread 0.2-2 s after each boundary, as on Binance). For each save type
it prints:

* period lag: from the arrival of a period's last closing kline to the period complete on
  disk (every symbol's file written with that candle), median and p99 over ``--periods``;
* history: real seconds and request weight to fetch ``--candles`` candles for every symbol;
* CPU seconds (user + system, all threads) per live period, and peak RSS.

Usage::

    python scripts/bench_recorder.py                      # 500 symbols, 1500 candles, 10 periods
    python scripts/bench_recorder.py --speed 4 --periods 12 --save-types parquet
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_MS = 1_767_225_600_000 + 30_000  # 2026-01-01 00:00:30 UTC


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


async def _record(args: argparse.Namespace) -> dict[str, object]:
    import logging
    from functools import partial

    import orjson
    import trio

    from bmac_trio.clock import parse_clock_spec
    from bmac_trio.recorder.service import RecorderOptions, run_recorder
    from bmac_trio.store.config import load_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    clock = parse_clock_spec(args.clock)
    base = trio.Path(args.base)
    await base.mkdir(parents=True, exist_ok=True)
    config_keys = {
        "interval": "1m",
        "trade_type": "usdt_perp",
        "num_candles": args.candles,
        "save_type": args.one,
        "rest_url": args.rest_url,
        "ws_url": args.ws_url,
    }
    await (base / "config.json").write_bytes(orjson.dumps(config_keys))
    config = load_config(Path(base))
    options = RecorderOptions(write_threads=args.write_threads)
    result: dict[str, object] = {"save_type": args.one}
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(run_recorder, config, clock=clock, options=options))
        await handle.wait_until(lambda h: h.stats.history_finished is not None)
        stats = handle.stats
        assert stats.history_started is not None
        assert stats.history_finished is not None
        result["symbols"] = len(handle.symbols)
        result["history_s"] = stats.history_finished - stats.history_started
        result["history_weight"] = handle.weight_spent
        # live periods: those that start after the history is on disk
        first = config.interval.add(config.interval.floor(clock.now_ms()), 1)
        await clock.sleep_until_ms(first)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        wanted = [config.interval.add(first, i + 1) for i in range(args.periods)]
        await handle.wait_until(lambda h: all(r in h.stats.completed for r in wanted))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        lags = [stats.lags[r] for r in wanted if r in stats.lags]
        result["lags_ms"] = [round(x * 1000, 2) for x in lags]
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        result["cpu_s_per_period"] = cpu / args.periods
        result["writes"] = stats.writes
        handle.stop()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _child(args: argparse.Namespace) -> None:
    import trio

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(trio.run, _record, args)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        result = trio.run(_record, args)
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--candles", type=int, default=1500)
    parser.add_argument("--periods", type=int, default=10)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--write-threads", type=int, default=4)
    parser.add_argument("--save-types", default="parquet,feather")
    parser.add_argument("--profile", action="store_true", help="cProfile the recorder (stderr)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--clock", help=argparse.SUPPRESS)
    parser.add_argument("--rest-url", help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _child(args)
        return

    spec = f"{START_MS}:{args.speed}:{time.time()!r}"
    sim_cmd = [
        sys.executable, "-c", "from bmac_trio.cli import main; main()", "sim",
        "--market", "um", "--symbols", str(args.symbols), "--clock", spec,
        "--history-candles", str(args.candles + 200),
    ]  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="bench_recorder_") as tmp,
        subprocess.Popen(sim_cmd, stdout=subprocess.PIPE, text=True) as sim,
    ):
        assert sim.stdout is not None
        words = sim.stdout.readline().split()  # REST http://... WS ws://...
        rest_url, ws_url = words[words.index("REST") + 1], words[words.index("WS") + 1]
        print(
            f"simulator: {args.symbols} UM symbols at {rest_url}, speed {args.speed}x; "
            f"recorder: {args.candles} candles, 1m, {args.periods} live periods"
        )
        try:
            for save_type in args.save_types.split(","):
                cmd = [
                    sys.executable, __file__, "--one", save_type, "--base",
                    str(Path(tmp) / save_type), "--clock", spec, "--rest-url", rest_url,
                    "--ws-url", ws_url, "--candles", str(args.candles),
                    "--periods", str(args.periods), "--write-threads", str(args.write_threads),
                    *(["--profile"] if args.profile else []),
                ]  # fmt: skip
                out = subprocess.run(cmd, check=True, capture_output=True, text=True)
                if args.profile:
                    print(out.stderr[-6000:])
                lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
                r = json.loads(lines[-1])
                lags = r["lags_ms"]
                print(
                    f"{save_type:8s} {r['symbols']} symbols | period lag median "
                    f"{statistics.median(lags):.1f} ms, p99 {_percentile(lags, 0.99):.1f} ms, "
                    f"max {max(lags):.1f} ms over {len(lags)} periods | history "
                    f"{r['history_s']:.1f} s, {r['history_weight']} weight | "
                    f"CPU {r['cpu_s_per_period']:.2f} s/period | peak RSS "
                    f"{r['peak_rss_mb']:.0f} MB"
                )
                print(f"         lags (ms): {lags}")
        finally:
            sim.terminate()


if __name__ == "__main__":
    main()
