"""The live bus end to end: the recorder against the simulator, subscribers in other processes.

Every candle a subscriber holds must equal the exchange's ground truth, nothing missing and
nothing duplicated, across a WebSocket drop, a subscriber killed and restarted, a subscriber too
slow to read (dropped at the high-water mark, then healed), and a recorder SIGKILLed and
restarted (a new publisher epoch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
import trio

from bmac_trio.clock import ScaledWallClock
from bmac_trio.sim import SimConfig, open_simulator
from bmac_trio.store.config import load_config
from bmac_trio.store.layout import FLOAT_COLUMNS

from ..recorder.conftest import FAST_OPTIONS, ROW_INDEX, START_MS, recording, write_config
from ._procs import reap_all

SUBSCRIBER = Path(__file__).with_name("_subscriber.py")
CLI = [sys.executable, "-c", "from bmac_trio.cli import main; main()"]
UM = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 60}
MINUTE = 60_000


#: Every child started by a test, killed when the test ends however it ends.
RUNNING: list[trio.Process] = []


@pytest.fixture(autouse=True)
async def _kill_children():
    yield
    await reap_all(RUNNING)


class Process:
    """A child process whose stdout (or stderr) lines arrive as they are written."""

    def __init__(self, cmd: list[str], *, lines_on: str = "stdout") -> None:
        self.cmd = cmd
        self.lines_on = lines_on
        self.process: trio.Process | None = None
        self.lines: list[str] = []
        self.changed = trio.Event()

    async def start(self, nursery: trio.Nursery) -> None:
        pipe: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        log = getattr(self, "stderr", None)
        with contextlib.ExitStack() as files:
            if log is not None:
                pipe["stderr"] = files.enter_context(log.open("wb"))
            pipe[self.lines_on] = subprocess.PIPE
            # stdin is a pipe the child watches: it exits when this process dies
            self.process = await trio.lowlevel.open_process(self.cmd, stdin=subprocess.PIPE, **pipe)
        RUNNING.append(self.process)
        nursery.start_soon(self._pump)

    async def _pump(self) -> None:
        assert self.process is not None
        stream = getattr(self.process, self.lines_on)
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in lines)
            self.changed.set()
            self.changed = trio.Event()
        await self.process.wait()  # ended: wake the waiters, who check the return code
        self.changed.set()

    async def wait_for(self, predicate: Callable[[list[str]], bool]) -> None:
        while not predicate(self.lines):
            assert self.process is not None
            assert self.process.returncode is None, (self.cmd, self.lines[-20:])
            await self.changed.wait()

    async def kill(self, signum: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        return await self.process.wait()


class Subscriber(Process):
    """``_subscriber.py`` as a child process; its JSON lines parsed."""

    def __init__(self, source: Path | str, out: Path, *extra: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        super().__init__([sys.executable, str(SUBSCRIBER), str(source), str(out), *extra])
        self.stderr = out / "stderr.log"  # read when the test fails

    @property
    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.lines if line.startswith("{")]

    @property
    def periods(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "period"]

    async def wait_until(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        await self.wait_for(lambda lines: predicate(self.periods))

    async def wait_period(self, run_time_ms: int) -> dict[str, Any]:
        print(f"{self.out.name}: waiting for period {run_time_ms}; last {self.periods[-1:]}")
        await self.wait_until(lambda ps: any(p["run_time_ms"] >= run_time_ms for p in ps))
        return self.periods[-1]

    def window(self) -> pl.DataFrame:
        return pl.read_parquet(self.out / "window.parquet")

    def log_tail(self, lines: int = 8) -> list[str]:
        """The last lines the subscriber logged (its heals), shown when a check fails."""
        return self.stderr.read_text(errors="replace").splitlines()[-lines:]


def assert_window_is_truth(sim: Any, window: pl.DataFrame, symbols: set[str], through_ms: int):
    """Each symbol's candles in the window are the exchange's, consecutive, none twice, up to
    ``through_ms`` (a period end) at least. Returns the number of candles compared."""
    assert set(window["symbol"].unique().to_list()) == symbols
    compared = 0
    for (symbol,), frame in window.group_by("symbol"):
        opens = frame["candle_begin_time"].dt.epoch("ms").to_list()
        assert len(opens) == len(set(opens)), f"{symbol}: duplicated candles"
        assert opens == sorted(opens), symbol
        assert opens[-1] + MINUTE >= through_ms, (symbol, opens[-1], through_ms)
        truth = [
            row
            for row in sim.ground_truth(symbol, "1m", since_ms=opens[0] - 10 * MINUTE)
            if opens[0] <= row[0] <= opens[-1]
        ]
        want = [row[0] for row in truth]
        if opens != want:
            lost = sorted(set(want) - set(opens))
            raise AssertionError(f"{symbol}: missing {lost[:5]} ({len(lost)})")
        assert frame["candle_end_time"].dt.epoch("ms").to_list() == [t + MINUTE for t in opens]
        for name in FLOAT_COLUMNS:
            assert frame[name].to_list() == [float(r[ROW_INDEX[name]]) for r in truth], name
        compared += len(opens)
    return compared


@pytest.mark.slow
async def test_subscribers_hold_the_truth_across_ws_drop_restart_and_slowness(tmp_path: Path):
    # a tiny HWM and kernel buffer: a subscriber that stops reading for a while is dropped from
    options = dataclasses.replace(FAST_OPTIONS, bus_hwm=10, bus_sndbuf=4096)
    sim_cfg = SimConfig(market="um", symbols=20, seed=41)
    with trio.fail_after(120):
        async with (
            recording(tmp_path, sim_cfg, speed=20, options=options, **UM) as env,
            trio.open_nursery() as nursery,
        ):
            await env.history()
            symbols = set(env.handle.symbols)
            dropped = trio.Event()  # set when the publisher first drops for a full subscriber
            bus = env.handle.bus
            assert bus is not None
            count_drop = bus._on_drop
            bus._on_drop = lambda n: (count_drop(n), dropped.set())
            steady = Subscriber(env.base, tmp_path / "steady")
            killed = Subscriber(env.base, tmp_path / "killed", "--backend", "asyncio")
            unstall = tmp_path / "unstall"
            slow = Subscriber(
                env.base, tmp_path / "slow", "--stall-until", str(unstall), "--rcvhwm", "5"
            )
            for sub in (steady, killed, slow):
                await sub.start(nursery)
            first = (await steady.wait_period(0))["run_time_ms"]
            await killed.wait_period(first)
            # the WebSocket drops: the recorder reconnects and refills the gap over REST
            env.sim.faults.drop_connections()
            assert await killed.kill() == -signal.SIGKILL
            await steady.wait_period(first + 2 * MINUTE)
            restarted = Subscriber(env.base, tmp_path / "restarted", "--backend", "asyncio")
            await restarted.start(nursery)
            # the slow one stopped reading after its first period: the publisher drops for it
            await slow.wait_for(lambda lines: '{"event":"stalled"}' in lines)
            await dropped.wait()
            unstall.touch()
            # it lost messages and healed
            await slow.wait_until(
                lambda ps: bool(ps) and ps[-1]["lost"] > 0 and ps[-1]["heals"] >= 1
            )
            last = (await slow.wait_period(slow.periods[-1]["run_time_ms"] + MINUTE))["run_time_ms"]
            for sub in (steady, restarted):
                await sub.wait_period(last)
            assert env.handle.bus is not None
            assert env.handle.bus.stats.dropped > 0  # counted by the publisher
            assert env.handle.listeners.connects >= 3  # two listeners, then a replacement
            for sub in (steady, restarted, slow):
                print(f"{sub.out.name}: checking; its log ends {sub.log_tail()!r}")
                period = sub.periods[-1]
                assert period["ready"] == len(symbols)
                assert period["period_rows"] == len(symbols)
                compared = assert_window_is_truth(env.sim, sub.window(), symbols, last)
                assert compared >= len(symbols) * UM["num_candles"] * 0.9
            # every period once, in order, none skipped
            runs = [p["run_time_ms"] for p in steady.periods]
            assert runs == list(range(runs[0], runs[-1] + 1, MINUTE))
            runs = [p["run_time_ms"] for p in slow.periods]
            assert runs == list(range(runs[0], runs[-1] + 1, MINUTE))
            for sub in (steady, restarted, slow):
                await sub.kill()
            nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_subscriber_heals_across_a_recorder_sigkill_and_restart(tmp_path: Path):
    speed = 20.0
    clock = ScaledWallClock(START_MS, speed, time.time())
    base = tmp_path / "data"
    with trio.fail_after(120):
        async with open_simulator(SimConfig(market="um", symbols=15, seed=43), clock=clock) as sim:
            write_config(
                base, **UM, num_socket_listeners=2, rest_url=sim.rest_url, ws_url=sim.ws_url
            )
            config = load_config(base)
            async with trio.open_nursery() as nursery:
                first = Process(
                    [*CLI, "run", str(base), "--clock", clock.spec()], lines_on="stderr"
                )
                await first.start(nursery)
                await first.wait_for(lambda ls: any("all symbols ready" in s for s in ls))
                sub = Subscriber(base, tmp_path / "sub")
                await sub.start(nursery)
                before = (await sub.wait_period(0))["run_time_ms"]
                epoch = sub.periods[-1]["epoch"]
                await sub.wait_period(before + MINUTE)
                assert await first.kill() == -signal.SIGKILL
                # down for about two periods, then cron starts it again
                await trio.sleep(2 * MINUTE / 1000 / speed)
                second = Process(
                    [*CLI, "run", str(base), "--clock", clock.spec()], lines_on="stderr"
                )
                await second.start(nursery)
                await sub.wait_until(lambda ps: bool(ps) and ps[-1]["epochs"] >= 1)
                last = (await sub.wait_period(sub.periods[-1]["run_time_ms"] + MINUTE))[
                    "run_time_ms"
                ]
                assert sub.periods[-1]["epoch"] != epoch
                symbols = {p.stem for p in config.candle_dir.glob("*.pqt")}
                assert_window_is_truth(sim, sub.window(), symbols, last)
                runs = [p["run_time_ms"] for p in sub.periods]
                assert runs == list(range(runs[0], runs[-1] + 1, MINUTE))  # none skipped
                assert await second.kill(signal.SIGTERM) == 0
                await sub.kill()
                nursery.cancel_scope.cancel()
