"""Benchmark the live bus: how soon a subscriber in another process has each candle and each
period, against the disk path, and what subscribers cost the recorder.

The simulator (``bmac-trio sim``, USDⓈ-M, ``--symbols``) and the recorder (``run_recorder``,
publishing on ``ipc://<dir>/bmac.sock``) run in their own processes on one shared clock. The
recorder's periods are measured in three phases: no subscriber, one subscriber (the measuring
one: ``bmac_kit.subscribe`` under trio; the kit's ready-file wait on the same periods runs in a
process of its own), and 16 subscribers (15 more plain ZeroMQ subscribers decoding every
message). For the 1- and 16-subscriber phases, and both together, it prints:

* candle: the recorder received the closing kline frame → the candle's callback ran in the
  subscriber process (p50, p99; both stamps are the same host's Unix clock), split at the
  header's ``sent_us``: the recorder's share (received → sent) and the rest (ZeroMQ, the
  subscriber's wake-up and decoding);
* period: the period's last closing frame reached the recorder → the ``period`` message was
  yielded by ``market.periods()`` in the subscriber (p50, p99), and the recorder's share;
* disk path: the same moment → the kit's ready-file wait (``wait_for_period``) saw every symbol
  ready (p50, p99), and the ratio disk / bus (in a process of its own, as a strategy on the
  files would be, so that its polling threads cannot delay the bus messages it is compared
  with);
* recorder CPU seconds per period and period lag (median, p99) with 0, 1 and 16 subscribers.

Usage::

    python scripts/bench_bus.py                  # 500 symbols, speed 4, 4 periods per phase
    python scripts/bench_bus.py --speed 1 --nice-sims 10   # real time, simulator niced

``scripts/bench_bus_floor.py`` measures what is under all of this: PUB → SUB between two
trio processes with nothing else running.
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
    import bmac_kit
    from bmac_trio.clock import unix_us

    candle_lat: list[float] = []
    #: the same candles split at the publisher's send stamp: recorder side, wire + subscriber
    candle_split: list[tuple[int, int]] = []

    def on_candle(event) -> None:
        if event.received_us is not None and event.source == "ws":
            now = unix_us()
            candle_lat.append(now - event.received_us)
            sent = market.stats.last_header.sent_us  # the message being handled
            candle_split.append((sent - event.received_us, now - sent))

    async with bmac_kit.subscribe(args.base) as market:
        market.on_candle(on_candle)
        _line({"event": "ready", "symbols": len(market.window.symbols())})
        async for period in market.periods():
            now = unix_us()
            header = market.stats.last_header  # the period's, unless a message came since
            sent = header.sent_us if header is not None and header.kind == "period" else None
            _line(
                {
                    "event": "period",
                    "run_time_ms": period.run_time_ms,
                    "rows": period.candles.height,
                    "complete": period.complete,
                    "last_received_us": period.last_received_us if period.complete else None,
                    "period_us": None
                    if period.last_received_us is None or not period.complete
                    else now - period.last_received_us,
                    "sent_us": sent,
                    "candle_us": candle_lat,
                    "split_us": candle_split,
                }
            )
            candle_lat, candle_split = [], []


async def _disk_strategy(args: argparse.Namespace) -> None:
    """The disk path, in a process of its own as a strategy on the files would be (so that its
    polling threads cannot delay the bus messages it is compared with)."""
    from bmac_kit._reader import CandleFileReader
    from bmac_kit._waiting import PeriodWatcher, wait_for_period
    from bmac_kit.window import candle_dir_of
    from bmac_trio.clock import parse_clock_spec, unix_us

    clock = parse_clock_spec(args.clock)
    reader = CandleFileReader(candle_dir_of(Path(args.base)))
    universe = frozenset(reader.get_all_symbols())
    _line({"event": "ready", "symbols": len(universe)})
    run_time = clock.now_ms() // MINUTE * MINUTE + MINUTE

    async def take_all(ready: frozenset[str]) -> frozenset[str]:
        return ready  # a ready file is enough here: the wait is what is timed

    while True:
        watcher = PeriodWatcher(
            reader=reader,
            run_time_ms=run_time,
            universe=lambda: universe,
            fallback=lambda: universe,
        )
        await wait_for_period(
            watcher, deadline_ms=run_time + 40_000, on_ready=take_all, clock=clock
        )
        _line({"event": "disk", "run_time_ms": run_time, "at_us": unix_us()})
        run_time += MINUTE


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


def _print_latencies(label: str, measured: list[dict], disk_at: dict[int, int]) -> None:
    """The bus and disk latencies of the measuring subscriber's periods ``measured``."""
    candles = [x / 1000 for m in measured for x in m["candle_us"]]
    in_recorder = [r / 1000 for m in measured for r, _ in m["split_us"]]
    after_send = [w / 1000 for m in measured for _, w in m["split_us"]]
    periods = [m["period_us"] / 1000 for m in measured if m["period_us"] is not None]
    timed = [m for m in measured if m["period_us"] is not None and m.get("sent_us")]
    period_in_recorder = [(m["sent_us"] - m["last_received_us"]) / 1000 for m in timed]
    disks = [
        (disk_at[m["run_time_ms"]] - m["last_received_us"]) / 1000
        for m in measured
        if m["period_us"] is not None and m["run_time_ms"] in disk_at
    ]
    print(f"{label}:")
    print(
        f"  candle  frame received by the recorder -> callback in the subscriber: "
        f"p50 {_pct(candles, 0.5):.3f} ms, p99 {_pct(candles, 0.99):.3f} ms "
        f"({len(candles)} candles)"
    )
    print(
        f"          of which received -> sent by the recorder p50 {_pct(in_recorder, 0.5):.3f} "
        f"ms, p99 {_pct(in_recorder, 0.99):.3f} ms; sent -> callback p50 "
        f"{_pct(after_send, 0.5):.3f} ms, p99 {_pct(after_send, 0.99):.3f} ms"
    )
    print(
        f"  period  last closing frame -> period message in the subscriber:      "
        f"p50 {_pct(periods, 0.5):.2f} ms, p99 {_pct(periods, 0.99):.2f} ms "
        f"({len(periods)} periods)"
    )
    if timed:
        print(
            f"          of which last frame -> sent by the recorder p50 "
            f"{_pct(period_in_recorder, 0.5):.2f} ms, p99 {_pct(period_in_recorder, 0.99):.2f} ms"
        )
    if disks:
        print(
            f"  disk    last closing frame -> kit ready-file wait done:             "
            f"p50 {_pct(disks, 0.5):.2f} ms, p99 {_pct(disks, 0.99):.2f} ms; "
            f"disk/bus median ratio {statistics.median(disks) / statistics.median(periods):.1f}x"
        )


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
    parser.add_argument(
        "--nice-sims",
        type=int,
        default=0,
        help="run the simulator (Binance's stand-in, not on a desk's machine) at this niceness",
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
        elif args.role == "disk":
            trio.run(_disk_strategy, args)
        else:
            _plain_subscriber(args)
        return

    spec = f"{START_MS}:{args.speed}:{time.time()!r}"
    sim_cmd = [
        *(["nice", "-n", str(args.nice_sims)] if args.nice_sims else []),
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
            disk = Child([*me, "--role", "disk", *common])
            children.append(disk)
            disk.events("ready", 1)
            [before] = recorder.events("period", 1)
            phases[1] = (before, recorder.events("period", args.periods))
            measured = measure.events("period", args.periods + 1)
            for _ in range(15):
                children.append(Child([*me, "--role", "plain", *common]))
            [before] = recorder.events("period", 1)
            phases[16] = (before, recorder.events("period", args.periods))
            measured += measure.events("period", args.periods + 1)
            last_run_time = max(m["run_time_ms"] for m in measured)
            disk_at: dict[int, int] = {}
            while last_run_time not in disk_at:
                [seen] = disk.events("disk", 1)
                disk_at[seen["run_time_ms"]] = seen["at_us"]
        finally:
            for child in children:
                child.stop()
            sim.terminate()
    first = args.periods + 1  # the measuring subscriber's periods of the 1-subscriber phase
    for label, rows in (
        ("1 subscriber", measured[:first]),
        ("16 subscribers", measured[first:]),
        ("both phases", measured),
    ):
        _print_latencies(label, rows, disk_at)
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
