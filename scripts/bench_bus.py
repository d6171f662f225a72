"""Benchmark the live bus: how soon a subscriber in another process has each candle and each
period, against the disk path, and what subscribers cost the recorder.

The simulator (``bmac-trio sim``, USDⓈ-M, ``--symbols``) and the recorder (``run_recorder``,
publishing on ``ipc://<dir>/bmac.sock``) run in their own processes on one shared clock. The
recorder's periods are measured in three phases: no subscriber, one subscriber (the measuring
one: ``bmac_kit.subscribe`` under trio, plus the kit's ready-file wait on the same periods), and
16 subscribers (15 more plain ZeroMQ subscribers decoding every message). It prints:

* candle: the recorder received the closing kline frame → the candle's callback ran in the
  subscriber process (p50, p99; both stamps are the same host's Unix clock);
* period: the period's last closing frame reached the recorder → the ``period`` message was
  yielded by ``market.periods()`` in the subscriber (p50, p99);
* disk path: the same moment → the kit's ready-file wait (``wait_for_period``) saw every symbol
  ready (p50, p99), and the ratio disk / bus;
* recorder CPU seconds per period and period lag (median, p99) with 0, 1 and 16 subscribers.

Usage::

    python scripts/bench_bus.py                  # 500 symbols, speed 4, 4 periods per phase
"""

from __future__ import annotations

import argparse
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bmac_trio.recorder.service import RecorderOptions

START_MS = 1_767_225_600_000 + 30_000  # 2026-01-01 00:00:30 UTC
MINUTE = 60_000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _line(data: dict[str, object]) -> None:
    print(json.dumps(data), flush=True)


# --------------------------------------------------------------------------- the recorder


def _options(args: argparse.Namespace) -> RecorderOptions:
    """What ``bmac-trio run`` uses, with ``--switch-interval`` if given."""
    from bmac_trio.recorder.service import RecorderOptions

    switch = {} if args.switch_interval is None else {"switch_interval_s": args.switch_interval}
    return RecorderOptions.standalone(**switch)


async def _recorder(args: argparse.Namespace) -> None:
    import logging
    from functools import partial

    import orjson
    import trio

    from bmac_trio.clock import parse_clock_spec
    from bmac_trio.recorder.service import run_recorder
    from bmac_trio.store.config import load_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    clock = parse_clock_spec(args.clock)
    base = Path(args.base)
    keys = {
        "interval": "1m",
        "trade_type": "usdt_perp",
        "num_candles": args.candles,
        "rest_url": args.rest_url,
        "ws_url": args.ws_url,
        "candle_close_timeout_sec": 40,
    }
    await trio.Path(base).mkdir(parents=True, exist_ok=True)
    await trio.Path(base / "config.json").write_bytes(orjson.dumps(keys))
    config = load_config(base)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(
            partial(run_recorder, config, clock=clock, options=_options(args))
        )
        await handle.wait_until(lambda h: h.stats.history_finished is not None)
        _line({"event": "history", "symbols": len(handle.symbols)})
        seen = len(handle.stats.completed)
        while True:
            await handle.wait_until(lambda h, seen=seen: len(h.stats.completed) > seen)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            for run_time in handle.stats.completed[seen:]:
                lag = handle.stats.lags.get(run_time)
                _line(
                    {
                        "event": "period",
                        "run_time_ms": run_time,
                        "lag_ms": None if lag is None else lag * 1000,
                        "cpu_s": usage.ru_utime + usage.ru_stime,
                        "dropped": handle.bus.stats.dropped if handle.bus else 0,
                    }
                )
            seen = len(handle.stats.completed)


# --------------------------------------------------------------------------- subscribers


async def _measuring_subscriber(args: argparse.Namespace) -> None:
    import trio

    import bmac_kit
    from bmac_kit._reader import CandleFileReader
    from bmac_kit._waiting import PeriodWatcher, wait_for_period
    from bmac_kit.window import candle_dir_of
    from bmac_trio.clock import parse_clock_spec, unix_us

    clock = parse_clock_spec(args.clock)
    candle_lat: list[float] = []
    disk_at: dict[int, int] = {}
    disk_done: dict[int, trio.Event] = {}

    def done_event(run_time: int) -> trio.Event:
        return disk_done.setdefault(run_time, trio.Event())

    def on_candle(event) -> None:
        if event.received_us is not None and event.source == "ws":
            candle_lat.append(unix_us() - event.received_us)

    async with bmac_kit.subscribe(args.base) as market, trio.open_nursery() as nursery:
        reader = CandleFileReader(candle_dir_of(Path(args.base)))
        universe = frozenset(market.window.symbols())

        async def disk_path() -> None:
            run_time = clock.now_ms() // MINUTE * MINUTE + MINUTE
            while True:
                watcher = PeriodWatcher(
                    reader=reader,
                    run_time_ms=run_time,
                    universe=lambda: universe,
                    fallback=lambda: universe,
                )

                async def take_all(ready: frozenset[str]) -> frozenset[str]:
                    return ready  # a ready file is enough here: the wait is what is timed

                await wait_for_period(
                    watcher, deadline_ms=run_time + 40_000, on_ready=take_all, clock=clock
                )
                disk_at[run_time] = unix_us()
                done_event(run_time).set()
                run_time += MINUTE

        nursery.start_soon(disk_path)
        market.on_candle(on_candle)
        _line({"event": "ready", "symbols": len(universe)})
        async for period in market.periods():
            now = unix_us()
            received = period.candles.height
            last = period.last_received_us if period.complete else None
            with trio.move_on_after(5):
                await done_event(period.run_time_ms).wait()
            _line(
                {
                    "event": "period",
                    "run_time_ms": period.run_time_ms,
                    "rows": received,
                    "complete": period.complete,
                    "period_us": None if last is None else now - last,
                    "disk_us": None
                    if last is None or period.run_time_ms not in disk_at
                    else disk_at[period.run_time_ms] - last,
                    "candle_us": candle_lat,
                }
            )
            candle_lat = []


def _plain_subscriber(args: argparse.Namespace) -> None:
    import zmq

    from bmac_trio.bus.messages import decode, decode_body
    from bmac_trio.store.config import load_config

    endpoint = load_config(Path(args.base)).publish_endpoints[0]
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    while True:
        decode_body(decode(sock.recv_multipart()))


# --------------------------------------------------------------------------- orchestration


class Child:
    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        self.cmd = cmd

    def events(self, kind: str, n: int) -> list[dict]:
        assert self.proc.stdout is not None
        got = []
        while len(got) < n:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"child {self.cmd[2:4]} ended: exit status {self.proc.wait()}")
            if line.startswith("{"):
                data = json.loads(line)
                if data["event"] == kind:
                    got.append(data)
        return got

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--candles", type=int, default=100)
    parser.add_argument("--periods", type=int, default=4, help="measured periods per phase")
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="the recorder's sys.setswitchinterval (bmac-trio run's: 0.0005 s)",
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--clock", help=argparse.SUPPRESS)
    parser.add_argument("--rest-url", help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        import threading

        import trio

        def exit_with_parent() -> None:
            sys.stdin.read()
            os._exit(0)

        threading.Thread(target=exit_with_parent, daemon=True).start()
        if args.role == "recorder":
            trio.run(_recorder, args)
        elif args.role == "measure":
            trio.run(_measuring_subscriber, args)
        else:
            _plain_subscriber(args)
        return

    spec = f"{START_MS}:{args.speed}:{time.time()!r}"
    sim_cmd = [
        sys.executable, "-c", "from bmac_trio.cli import main; main()", "sim",
        "--market", "um", "--symbols", str(args.symbols), "--clock", spec,
        "--history-candles", str(args.candles + 200),
    ]  # fmt: skip
    children: list[Child] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench_bus_") as tmp,
        subprocess.Popen(sim_cmd, stdout=subprocess.PIPE, text=True) as sim,
    ):
        try:
            assert sim.stdout is not None
            words = sim.stdout.readline().split()
            rest_url, ws_url = words[words.index("REST") + 1], words[words.index("WS") + 1]
            base = str(Path(tmp) / "data")
            common = ["--base", base, "--clock", spec]
            me = [sys.executable, __file__]
            recorder = Child(
                [*me, "--role", "recorder", *common, "--rest-url", rest_url, "--ws-url", ws_url,
                 "--candles", str(args.candles),
                 *([] if args.switch_interval is None
                   else ["--switch-interval", str(args.switch_interval)])]
            )  # fmt: skip
            children.append(recorder)
            [history] = recorder.events("history", 1)
            print(
                f"simulator: {history['symbols']} UM symbols, speed {args.speed}x, 1m; "
                f"{args.periods} periods per phase; {os.cpu_count()} CPUs, "
                f"load {os.getloadavg()[0]:.1f}"
            )
            phases: dict[int, tuple[dict, list[dict]]] = {}
            # the first live period may overlap the history; each phase's CPU counts from the
            # period before it
            [before] = recorder.events("period", 1)
            phases[0] = (before, recorder.events("period", args.periods))
            measure = Child([*me, "--role", "measure", *common])
            children.append(measure)
            measure.events("ready", 1)
            [before] = recorder.events("period", 1)
            phases[1] = (before, recorder.events("period", args.periods))
            measured = measure.events("period", args.periods + 1)
            for _ in range(15):
                children.append(Child([*me, "--role", "plain", *common]))
            [before] = recorder.events("period", 1)
            phases[16] = (before, recorder.events("period", args.periods))
            measured += measure.events("period", args.periods + 1)
        finally:
            for child in children:
                child.stop()
            sim.terminate()
    candles = [x / 1000 for m in measured for x in m["candle_us"]]
    periods = [m["period_us"] / 1000 for m in measured if m["period_us"] is not None]
    disks = [m["disk_us"] / 1000 for m in measured if m["disk_us"] is not None]
    print(
        f"candle  frame received by the recorder -> callback in the subscriber: "
        f"p50 {_pct(candles, 0.5):.3f} ms, p99 {_pct(candles, 0.99):.3f} ms "
        f"({len(candles)} candles)"
    )
    print(
        f"period  last closing frame -> period message in the subscriber:      "
        f"p50 {_pct(periods, 0.5):.2f} ms, p99 {_pct(periods, 0.99):.2f} ms "
        f"({len(periods)} periods)"
    )
    if disks:
        print(
            f"disk    last closing frame -> kit ready-file wait done:             "
            f"p50 {_pct(disks, 0.5):.2f} ms, p99 {_pct(disks, 0.99):.2f} ms; "
            f"disk/bus median ratio {statistics.median(disks) / statistics.median(periods):.1f}x"
        )
    for subs, (before, rows) in phases.items():
        lags = [r["lag_ms"] for r in rows if r["lag_ms"] is not None]
        cpu = (rows[-1]["cpu_s"] - before["cpu_s"]) / len(rows)
        print(
            f"recorder with {subs:2d} subscribers: CPU {cpu:.3f} s/period, period lag median "
            f"{statistics.median(lags):.1f} ms, p99 {_pct(lags, 0.99):.1f} ms, "
            f"dropped {rows[-1]['dropped']}"
        )


if __name__ == "__main__":
    main()
