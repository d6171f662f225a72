"""Benchmark the recorder against the simulator: period lag, history, CPU, memory.

The simulator (``bmac-trio sim``, USDⓈ-M, 500 symbols) runs in its own process; each save type
is recorded by ``run_recorder`` in a fresh child process (so CPU time and peak RSS are the
recorder's alone), on a clock shared with the simulator (``--speed``; 1 is real time, where
the closing pushes are spread 0.2-2 s after each boundary, as on Binance). For each save type
it prints:

* period lag: from the arrival of a period's last closing kline to the period complete on
  disk (every symbol's file written with that candle), median and p99 over ``--periods``;
* history: real seconds and request weight to fetch ``--candles`` candles for every symbol;
* CPU seconds (user + system, all threads) per live period, and peak RSS;
* the stage breakdown of each period's critical path (the write that completed it): inbox
  (closing frame received → handed to the writer), queued (waiting for a worker thread),
  merge, encode, fsync, rename, ready file, loop (back on the event loop), and the
  manifest written after.

``--load`` runs the same measurement twice, idle and then on a busy desk, and prints both side
by side: beside the measured recorder, a second recorder of another market (USDT spot, its own
simulator), ``--strategies`` processes that at every boundary wait for the period the kit's way
(``BmacAllMarketCalculator.calc_all_factors``, which reads every symbol's file) and a process
that burns one core; the load averages are printed with the figures.

Usage::

    python scripts/bench_recorder.py                      # 500 symbols, 1500 candles, 10 periods
    python scripts/bench_recorder.py --speed 4 --periods 12 --save-types parquet
    python scripts/bench_recorder.py --load --save-types parquet   # idle, then the busy desk
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_MS = 1_767_225_600_000 + 30_000  # 2026-01-01 00:00:30 UTC
#: Stages of a period's critical path, in the order the write goes through them.
STAGES = (
    "inbox", "queued", "merge", "encode", "fsync", "rename", "ready", "loop",
    "manifest",
)  # fmt: skip


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


class _GcPauses:
    """The garbage collector's pauses per generation (a gc.callbacks hook): every thread of
    the recorder waits while one runs."""

    def __init__(self) -> None:
        self.started = 0.0
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self.started)

    def summary(self, periods: int) -> dict[str, object]:
        return {
            f"gen{g}": {
                "per_period": round(len(p) / periods, 1),
                "max_ms": round(max(p, default=0.0) * 1000, 2),
                "total_ms_per_period": round(sum(p) * 1000 / periods, 1),
            }
            for g, p in self.pauses.items()
        }


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
    switch = {} if args.switch_interval is None else {"switch_interval_s": args.switch_interval}
    options = RecorderOptions.standalone(
        write_threads=args.write_threads, freeze_gc=not args.no_freeze_gc, **switch
    )
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
        pauses = _GcPauses()
        gc.callbacks.append(pauses)
        wanted = [config.interval.add(first, i + 1) for i in range(args.periods)]
        await handle.wait_until(lambda h: all(r in h.stats.completed for r in wanted))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        lags = [stats.lags[r] for r in wanted if r in stats.lags]
        result["lags_ms"] = [round(x * 1000, 2) for x in lags]
        await trio.sleep(0.5)  # the last manifest lands after the period completes
        result["stages_ms"] = [
            {k: round(v * 1000, 3) for k, v in stats.stages.get(r, {}).items()} for r in wanted
        ]
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        result["cpu_s_per_period"] = cpu / args.periods
        result["writes"] = stats.writes
        gc.callbacks.remove(pauses)
        result["gc"] = pauses.summary(args.periods)
        result["gc_objects"] = len(gc.get_objects())
        handle.stop()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


async def _strategy(args: argparse.Namespace) -> None:
    """A strategy process of the busy desk: every period, the kit's wait, then every file."""

    from bmac_kit import (
        BmacAllMarketCalculator,
        CandleFileReader,
        PeriodNotReady,
        next_run_time,
        set_default_clock,
        sleep_until_run_time,
    )
    from bmac_trio.clock import parse_clock_spec

    set_default_clock(parse_clock_spec(args.clock))
    base = Path(args.base)
    candles_dir, exginfo_dir = base / "usdt_perp_1m", base / "exginfo_1m"
    calc = None
    while True:
        run_time = next_run_time("1m")
        await sleep_until_run_time(run_time)
        if calc is None:
            if not (candles_dir / "bmac_meta.json").exists() or not exginfo_dir.is_dir():
                continue  # the recorder has not written anything yet
            calc = BmacAllMarketCalculator(
                CandleFileReader(exginfo_dir),
                CandleFileReader(candles_dir),
                [("PctChg", 100), ("Ema", 20), ("Rsi", 14)],
            )
        with contextlib.suppress(PeriodNotReady):
            await calc.calc_all_factors(run_time)


async def _bus_strategy(args: argparse.Namespace) -> None:
    """A strategy process of a desk on the live bus (v3): the window filled from disk once,
    then every period's factors from memory (``bmac_kit.subscribe`` + the streaming
    calculator), no file read at the boundary."""
    import trio

    from bmac_kit import subscribe
    from bmac_kit.streaming import BmacStreamingCalculator
    from bmac_trio.store.layout import MANIFEST_DIR

    manifests = Path(args.base) / "usdt_perp_1m" / MANIFEST_DIR
    while not manifests.is_dir() or not any(manifests.iterdir()):  # noqa: ASYNC110
        # the history is not on disk yet (the first manifest follows it); another process's
        # files: nothing to wait on but the directory itself
        await trio.sleep(2)
    async with subscribe(args.base) as market:
        calc = BmacStreamingCalculator(market, [("PctChg", 100), ("Ema", 20), ("Rsi", 14)])
        async for _ in calc.results():
            pass


def _burn() -> None:
    """Keep one core busy until killed."""
    while True:
        pass


@contextlib.contextmanager
def _processes(commands: list[list[str]]):  # type: ignore[no-untyped-def]
    """Start the load's processes; stop every one of them by PID on the way out."""
    started = [
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for cmd in commands
    ]
    try:
        yield started
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _sim_command(market: str, symbols: int, spec: str, candles: int, nice: int = 0) -> list[str]:
    return [
        *(["nice", "-n", str(nice)] if nice else []),
        sys.executable, "-c", "from bmac_trio.cli import main; main()", "sim",
        "--market", market, "--symbols", str(symbols), "--clock", spec,
        "--history-candles", str(candles + 200),
    ]  # fmt: skip


def _start_sim(cmd: list[str]) -> tuple[subprocess.Popen[str], str, str]:
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert sim.stdout is not None
    words = sim.stdout.readline().split()  # REST http://... WS ws://...
    return sim, words[words.index("REST") + 1], words[words.index("WS") + 1]


def _desk_load(args: argparse.Namespace, spec: str, tmp: Path, base: Path) -> list[list[str]]:
    """The busy desk's processes beside the measured recorder (whose base dir is ``base``)."""
    me = [
        *(["nice", "-n", str(args.nice_load)] if args.nice_load else []),
        sys.executable,
        __file__,
    ]
    strategy = [*me, "--strategy", "--base", str(base), "--clock", spec]
    if args.strategies_on_bus:
        strategy.append("--strategies-on-bus")
    commands = [strategy for _ in range(args.strategies)]
    commands.append([*me, "--burn"])
    if args.second_recorder:
        other = tmp / "second_recorder"
        other.mkdir(exist_ok=True)
        commands.append([
            sys.executable, "-c", "from bmac_trio.cli import main; main()", "run", str(other),
            "--clock", spec,
        ])  # fmt: skip
    return commands


def _print_stages(label: str, stages: list[dict[str, float]], lags: list[float]) -> None:
    print(f"  {label}: stage breakdown of each period's critical path (ms)")
    header = "    lag    " + " ".join(f"{s:>9s}" for s in STAGES)
    print(header)
    for lag, row in zip(lags, stages, strict=False):
        cells = " ".join(f"{row.get(s, float('nan')):9.2f}" for s in STAGES)
        print(f"    {lag:7.2f} {cells}")
    medians = [
        statistics.median([row[s] for row in stages if s in row] or [math.nan]) for s in STAGES
    ]
    print(f"    median  {' '.join(f'{m:9.2f}' for m in medians)}")


def _child(args: argparse.Namespace) -> None:
    import trio

    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

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
    parser.add_argument(
        "--no-freeze-gc",
        action="store_true",
        help="leave the collector as it is after the history (bmac-trio run freezes it)",
    )
    parser.add_argument(
        "--load", action="store_true", help="measure idle, then on a busy desk, side by side"
    )
    parser.add_argument("--strategies", type=int, default=3, help="strategy processes (--load)")
    parser.add_argument("--skip-idle", action="store_true", help="--load without the idle run")
    parser.add_argument(
        "--no-second-recorder",
        dest="second_recorder",
        action="store_false",
        help="--load without the second recorder (spot)",
    )
    parser.add_argument(
        "--nice-load",
        type=int,
        default=0,
        help="run the busy desk's strategies and burner under this niceness (--load)",
    )
    parser.add_argument(
        "--strategies-on-bus",
        action="store_true",
        help="--load: the strategies take each period from the live bus, not the files",
    )
    parser.add_argument(
        "--nice-sims",
        type=int,
        default=0,
        help="run the simulators (Binance's stand-ins, not on a desk's machine) at this niceness",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="the recorder's sys.setswitchinterval (GIL hand-off), seconds",
    )
    parser.add_argument("--strategy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--burn", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--clock", help=argparse.SUPPRESS)
    parser.add_argument("--rest-url", help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _child(args)
        return
    if args.strategy:
        import trio

        trio.run(_bus_strategy if args.strategies_on_bus else _strategy, args)
        return
    if args.burn:
        _burn()
        return

    spec = f"{START_MS}:{args.speed}:{time.time()!r}"
    modes = (["load"] if args.skip_idle else ["idle", "load"]) if args.load else ["idle"]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_recorder_")))
        sim, rest_url, ws_url = _start_sim(
            _sim_command("um", args.symbols, spec, args.candles, args.nice_sims)
        )
        stack.callback(sim.wait)
        stack.callback(sim.terminate)
        print(
            f"simulator: {args.symbols} UM symbols at {rest_url}, speed {args.speed}x; "
            f"recorder: {args.candles} candles, 1m, {args.periods} live periods"
        )
        if args.load and args.second_recorder:
            spot, spot_rest, spot_ws = _start_sim(
                _sim_command("spot", args.symbols, spec, args.candles, args.nice_sims)
            )
            stack.callback(spot.wait)
            stack.callback(spot.terminate)
            other = tmp / "second_recorder"
            other.mkdir()
            (other / "config.json").write_text(
                json.dumps({
                    "interval": "1m", "trade_type": "usdt_spot", "num_candles": args.candles,
                    "rest_url": spot_rest, "ws_url": spot_ws,
                })
            )  # fmt: skip
        summary: list[str] = []
        for save_type in args.save_types.split(","):
            for mode in modes:
                base = tmp / f"{save_type}_{mode}"
                load = _desk_load(args, spec, tmp, base) if mode == "load" else []
                with _processes(load):
                    before = os.getloadavg()
                    cmd = [
                        sys.executable, __file__, "--one", save_type, "--base", str(base),
                        "--clock", spec, "--rest-url", rest_url, "--ws-url", ws_url,
                        "--candles", str(args.candles), "--periods", str(args.periods),
                        "--write-threads", str(args.write_threads),
                        *(["--profile"] if args.profile else []),
                        *(["--no-freeze-gc"] if args.no_freeze_gc else []),
                        *(
                            ["--switch-interval", str(args.switch_interval)]
                            if args.switch_interval is not None
                            else []
                        ),
                    ]  # fmt: skip
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
                    after = os.getloadavg()
                if args.profile:
                    print(out.stderr[-6000:])
                lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
                r = json.loads(lines[-1])
                lags = r["lags_ms"]
                line = (
                    f"{save_type:8s} {mode:4s} {r['symbols']} symbols | period lag median "
                    f"{statistics.median(lags):.1f} ms, p99 {_percentile(lags, 0.99):.1f} ms, "
                    f"max {max(lags):.1f} ms over {len(lags)} periods | history "
                    f"{r['history_s']:.1f} s, {r['history_weight']} weight | "
                    f"CPU {r['cpu_s_per_period']:.2f} s/period | peak RSS "
                    f"{r['peak_rss_mb']:.0f} MB | load avg {before[0]:.2f} -> {after[0]:.2f}"
                )
                print(line)
                print(f"         lags (ms): {lags}")
                print(f"         gc pauses: {r['gc']}, objects tracked {r['gc_objects']}")
                _print_stages(f"{save_type} {mode}", r.get("stages_ms", []), lags)
                summary.append(line)
        if len(summary) > 1:
            print("\nside by side:")
            for line in summary:
                print(f"  {line}")


if __name__ == "__main__":
    main()
