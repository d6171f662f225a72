"""Benchmark the market on NATS JetStream: follower latency, recorder CPU, catch-up rate.

One run, against the simulator (``bmac-trio sim``, USDⓈ-M, ``--symbols``, 1m candles, at
``--speed``) and a local ``nats-server -js`` (127.0.0.1, free port, temp storage):

1. the recorder alone (no ``nats`` key): its period lag and CPU seconds per period;
2. the recorder publishing to JetStream with 1 follower, then with 8 followers
   (``bmac-trio follow`` processes): the period's last closing frame (arrival at the recorder,
   its wall clock) → the period complete on each follower's disk (manifest written), p50 and
   p99 over every follower and period, beside the recorder's own period lag and CPU per period;
3. one follower killed for ``--down-minutes`` simulated minutes, then restarted: the candles
   per second of its catch-up batches (and of its first sync of the history).

The recorder runs in a child process (its CPU time is its own); each run uses its own stream.
The machine's load average is printed: other processes share these cores.

Usage::

    python scripts/bench_nats.py                    # 500 symbols, speed 10, 6 periods per run
    python scripts/bench_nats.py --symbols 100 --speed 20 --periods 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

START_MS = 1_767_225_600_000 + 30_000  # 2026-01-01 00:00:30 UTC
CLI = [sys.executable, "-c", "from bmac_trio.cli import main; main()"]
_PERIOD = re.compile(r"period \S+ complete \(.*\), ([\d.]+) ms after its last closing frame")
_CATCH = re.compile(r"caught up \d+ messages \((\d+) candles\) to sequence \d+ in ([\d.]+) s")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --------------------------------------------------------------------------- the recorder child


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
    base = Path(args.base)
    base.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before anything runs
    keys: dict[str, object] = {
        "interval": "1m",
        "trade_type": "usdt_perp",
        "num_candles": args.candles,
        "rest_url": args.rest_url,
        "ws_url": args.ws_url,
        "publish": False,
        # a loaded machine at --speed must not send periods to REST at the deadline
        "candle_close_timeout_sec": 60,
    }
    if args.nats:
        # one stream per run, on its own subjects (streams may not overlap)
        keys["nats"] = {
            "servers": [args.nats],
            "stream": args.stream,
            "subject_prefix": f"bench.{args.stream.lower()}",
        }
    (base / "config.json").write_bytes(orjson.dumps(keys))
    config = load_config(base)
    result: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(
            partial(run_recorder, config, clock=clock, options=RecorderOptions.standalone())
        )
        await handle.wait_until(lambda h: h.stats.history_finished is not None)
        if handle.nats is not None:
            await handle.nats.wait_until(lambda p: p.backlog == 0)
        print("READY", flush=True)
        first = config.interval.add(config.interval.floor(clock.now_ms()), 1)
        await clock.sleep_until_ms(first)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        wanted = [config.interval.add(first, i + 1) for i in range(args.periods)]
        await handle.wait_until(lambda h: all(r in h.stats.completed for r in wanted))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        if handle.nats is not None:
            await handle.nats.wait_until(lambda p: p.backlog == 0)
        lags = [handle.stats.lags[r] * 1000 for r in wanted if r in handle.stats.lags]
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        result = {
            "symbols": len(handle.symbols),
            "lags_ms": [round(x, 2) for x in lags],
            "cpu_s_per_period": cpu / args.periods,
            "last_run_time": wanted[-1],
        }
        print(json.dumps(result), flush=True)
        if args.hold:  # keep publishing while the driver measures a catch-up
            await trio.to_thread.run_sync(sys.stdin.readline)
        handle.stop()
    return result


# --------------------------------------------------------------------------- the driver


class Follower:
    """A ``bmac-trio follow`` process; its log is parsed for period lags and catch-up rates."""

    def __init__(self, url: str, base: Path) -> None:
        self.url, self.base = url, base
        self.lags: list[float] = []
        self.catch_ups: list[tuple[int, float]] = []
        self.process: subprocess.Popen[str] | None = None

    def start(self, stream: str) -> None:
        self.lags, self.catch_ups = [], []
        self.process = subprocess.Popen(
            [*CLI, "follow", self.url, str(self.base), "--stream", stream],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                if m := _PERIOD.search(line):
                    self.lags.append(float(m[1]))
                elif m := _CATCH.search(line):
                    self.catch_ups.append((int(m[1]), float(m[2])))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(30)


def _poll(done: object, timeout_s: float) -> None:
    """Wait for a child's log to show something (a benchmark may poll its children)."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def _recorder(
    args: argparse.Namespace,
    spec: str,
    urls: tuple[str, str],
    base: Path,
    nats: str | None,
    stream: str,
    hold: bool = False,
) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, __file__, "--one", "--base", str(base), "--clock", spec,
        "--rest-url", urls[0], "--ws-url", urls[1], "--candles", str(args.candles),
        "--periods", str(args.periods), "--stream", stream,
        *(["--nats", nats] if nats else []), *(["--hold"] if hold else []),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _result(recorder: subprocess.Popen[str]) -> dict[str, object]:
    assert recorder.stdout is not None
    for line in recorder.stdout:
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"recorder exited {recorder.wait()} without a result")


def _wait_ready(recorder: subprocess.Popen[str]) -> None:
    assert recorder.stdout is not None
    for line in recorder.stdout:
        if line.startswith("READY"):
            return
    raise RuntimeError(f"recorder exited {recorder.wait()} before its history was in")


def _say(text: str) -> None:
    print(text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--candles", type=int, default=100)
    parser.add_argument("--periods", type=int, default=6)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--down-minutes", type=int, default=10)
    parser.add_argument("--followers", default="1,8", help="follower counts, comma-separated")
    parser.add_argument("--no-alone", action="store_true", help="skip the run without NATS")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--clock", help=argparse.SUPPRESS)
    parser.add_argument("--rest-url", help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    parser.add_argument("--nats", help=argparse.SUPPRESS)
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import trio

        trio.run(_record, args)
        return

    from bmac_trio.bus.nats_server import NatsServer

    spec = f"{START_MS}:{args.speed}:{time.time()!r}"
    sim_cmd = [
        *CLI, "sim", "--market", "um", "--symbols", str(args.symbols), "--clock", spec,
        "--history-candles", str(args.candles + 200),
    ]  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="bench_nats_") as tmp_name,
        subprocess.Popen(sim_cmd, stdout=subprocess.PIPE, text=True) as sim,
    ):
        tmp = Path(tmp_name)
        server = NatsServer(store_dir=tmp / "jetstream").start()
        followers: list[Follower] = []
        try:
            assert sim.stdout is not None
            words = sim.stdout.readline().split()
            urls = (words[words.index("REST") + 1], words[words.index("WS") + 1])
            _say(
                f"simulator: {args.symbols} UM symbols, 1m, speed {args.speed}x; recorder: "
                f"{args.candles} candles; nats-server {server.url}; {args.periods} periods/run; "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
            )
            # 1. the recorder alone
            if not args.no_alone:
                alone = _recorder(args, spec, urls, tmp / "alone", None, "BMAC_alone")
                r0 = _result(alone)
                alone.communicate()
                lags0 = r0["lags_ms"]
                _say(
                    f"recorder alone       | period lag p50 {statistics.median(lags0):7.1f} ms, "
                    f"p99 {_pct(lags0, 0.99):7.1f} ms | CPU {r0['cpu_s_per_period']:.3f} s/period"
                )
            # 2. with 1 and 8 followers
            for n in (int(x) for x in args.followers.split(",")):
                stream = f"BMAC_f{n}"
                followers = [
                    Follower(server.url, tmp / f"f{n}_{i}") for i in range(n)
                ]  # fmt: skip
                hold = n == 1
                rec = _recorder(args, spec, urls, tmp / f"rec{n}", server.url, stream, hold)
                _wait_ready(rec)
                print(f"[{n} follower(s): history published, starting them]", file=sys.stderr)
                for f in followers:  # once the stream exists
                    f.start(stream)
                r = _result(rec)
                _poll(lambda fs=followers: all(len(f.lags) >= args.periods for f in fs), 60)
                lags = [x for f in followers for x in f.lags[-args.periods :]]
                rl = r["lags_ms"]
                _say(
                    f"JetStream, {n} follower{'s' if n > 1 else ' '} | recorder lag p50 "
                    f"{statistics.median(rl):7.1f} ms, p99 {_pct(rl, 0.99):7.1f} ms | CPU "
                    f"{r['cpu_s_per_period']:.3f} s/period | last frame -> follower period on "
                    f"disk p50 {statistics.median(lags):7.1f} ms, p99 {_pct(lags, 0.99):7.1f} ms "
                    f"({len(lags)} samples)"
                )
                first_sync = [c for f in followers for c in f.catch_ups]
                if first_sync:
                    candles = sum(c for c, _ in first_sync)
                    seconds = sum(s for _, s in first_sync)
                    _say(
                        f"    first sync of the history: {candles} candles in {seconds:.2f} s "
                        f"of batch work = {candles / seconds:,.0f} candles/s per follower"
                    )
                if hold:
                    # 3. a follower down for --down-minutes simulated minutes, then restarted
                    victim = followers[0]
                    victim.stop(signal.SIGKILL)
                    time.sleep(args.down_minutes * 60 / args.speed)
                    restarted = time.monotonic()
                    victim.start(stream)
                    live_s = 60 / args.speed * 1000  # a lag below one period: live again
                    _poll(lambda v=victim, s=live_s: any(x < s for x in v.lags), 120)
                    wall = time.monotonic() - restarted
                    candles = sum(c for c, _ in victim.catch_ups)
                    seconds = sum(s for _, s in victim.catch_ups) or float("nan")
                    _say(
                        f"catch-up after {args.down_minutes} simulated minutes down: {candles} "
                        f"candles in {seconds:.3f} s of batch work = {candles / seconds:,.0f} "
                        f"candles/s; restart to first live period on disk {wall:.1f} s "
                        f"(process start included)"
                    )
                    assert rec.stdin is not None
                    rec.stdin.write("\n")
                    rec.stdin.flush()
                rec.communicate()
                for f in followers:
                    f.stop()
            _say(f"load average at the end: {os.getloadavg()[0]:.1f}")
        finally:
            for f in followers:
                f.stop()
            server.stop()
            sim.terminate()


if __name__ == "__main__":
    main()
