"""Harness for the NATS tests: real ``nats-server`` processes, a follower process, the stream.

Servers listen on free 127.0.0.1 ports with JetStream storage under the test's tmp_path and
are stopped by PID when the test ends. The recorder runs in the test's trio loop against the
simulator (``tests/recorder/conftest.py``); ``bmac-trio follow`` runs as a child process whose
log lines arrive here, so a test waits for "period ... complete" instead of sleeping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from bmac_trio.bus import nats_codec as codec
from bmac_trio.bus.aio_bridge import AsyncioThread
from bmac_trio.bus.nats_link import JetStreamLink, Received, StreamSettings
from bmac_trio.bus.nats_server import NatsServer, nats_server_binary
from bmac_trio.store.config import Config
from bmac_trio.store.layout import run_time_label

from ..recorder.conftest import Env, assert_matches_truth, read_candles

CLI = [sys.executable, "-c", "from bmac_trio.cli import main; main()"]


@pytest.fixture
def nats_binary() -> str:
    try:
        return nats_server_binary()
    except FileNotFoundError as exc:  # the test extra installs it
        pytest.fail(str(exc))


@pytest.fixture
def nats_server(tmp_path: Path, nats_binary: str) -> Iterator[NatsServer]:
    server = NatsServer(store_dir=tmp_path / "jetstream").start()
    try:
        yield server
    finally:
        server.stop()


#: Every child started by a test, killed (by PID) at its end if still running.
_CHILDREN: list[ChildProcess] = []


@pytest.fixture(autouse=True)
def _kill_children() -> Iterator[None]:
    yield
    while _CHILDREN:
        child = _CHILDREN.pop()
        if child.process is not None:
            # by PID: the trio run is over here, so trio.Process's own accessors cannot be used
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGKILL)


class ChildProcess:
    """A ``bmac-trio`` child process; its stderr lines are kept and waited on."""

    def __init__(self, args: list[str]) -> None:
        _CHILDREN.append(self)
        self.args = args
        self.process: trio.Process | None = None
        self.lines: list[str] = []
        self.changed = trio.Event()

    async def start(self, nursery: trio.Nursery) -> None:
        self.lines = []
        self.process = await trio.lowlevel.open_process(
            [*CLI, *self.args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        nursery.start_soon(self._pump, self.process)

    async def _pump(self, process: trio.Process) -> None:
        assert process.stderr is not None
        buffer = b""
        async for chunk in process.stderr:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in lines)
            self.changed.set()
            self.changed = trio.Event()

    async def wait_for(self, text: str) -> None:
        while not any(text in line for line in self.lines):
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(
                    f"exited {self.process.returncode}:\n" + "\n".join(self.lines[-30:])
                )
            await self.changed.wait()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()

    async def stop(self) -> int:
        """SIGTERM by PID; the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.terminate()
        return await self.process.wait()


def follower_process(url: str, base: Path) -> ChildProcess:
    return ChildProcess(["follow", url, str(base), "--no-fsync"])


async def wait_period(follower: ChildProcess, config: Config, run_time_ms: int) -> None:
    """Until the follower logged the period ending at ``run_time_ms`` complete on its disk."""
    await follower.wait_for(f"period {run_time_label(run_time_ms, config.timezone)} complete")


def follower_config(config: Config, base: Path) -> Config:
    return dataclasses.replace(config, base_dir=base)


def assert_follower_equals(env: Env, base: Path, through_ms: int) -> int:
    """The follower's files equal the ground truth and the recorder's files, candle for candle,
    up to the period ending at ``through_ms``; the same ready file and manifest for it."""
    config = follower_config(env.config, base)
    twin = Env(sim=env.sim, clock=env.clock, base=base, config=config, handle=env.handle)
    symbols = sorted(env.handle.symbols)
    compared = assert_matches_truth(twin, symbols, through_ms=through_ms)
    for symbol in symbols:
        mine = read_candles(env.config, symbol)
        theirs = read_candles(config, symbol)
        # the recorder may be periods ahead: its window has moved on; compare the overlap
        begin = max(mine["candle_begin_time"][0], theirs["candle_begin_time"][0])
        cut = [
            f.filter(
                (f["candle_begin_time"] >= begin)
                & (f["candle_end_time"].dt.epoch("ms") <= through_ms)
            )
            for f in (mine, theirs)
        ]
        assert cut[0].height >= 10, symbol
        assert cut[1].equals(cut[0]), symbol
    label = run_time_label(through_ms, env.config.timezone)
    manifest = f"_periods/{label}.json"
    import orjson

    ours = orjson.loads((env.config.candle_dir / manifest).read_bytes())
    theirs_m = orjson.loads((config.candle_dir / manifest).read_bytes())
    for key in ("run_time_ms", "complete", "missing", "final", "interval", "trade_type"):
        assert theirs_m[key] == ours[key], key
    return compared


async def read_stream(servers: list[str], stream: str, prefix: str) -> list[Received]:
    """Every message the stream holds, in order."""
    link = JetStreamLink(servers, StreamSettings(name=stream, prefix=prefix, max_age_s=1.0))
    async with AsyncioThread("test-reader") as aio:
        await aio.run(link.connect)
        try:
            state = await aio.run(link.stream_state)
            sub = await aio.run(link.subscribe_from, 1)
            out: list[Received] = []
            while not out or out[-1].seq < state["last_seq"]:
                batch = await aio.run(link.take, sub, 10_000, 5.0)
                assert batch, f"stream ended at {out[-1].seq if out else 0} < {state}"
                out.extend(batch)
            return out
        finally:
            await aio.run(link.close)


def stream_candles(messages: list[Received]) -> list[tuple[str, int]]:
    """(symbol, open time) of every candle message, in stream order (duplicates kept)."""
    out = []
    for m in messages:
        if m.suffix.startswith("candle."):
            c = codec.decode(m.suffix, m.headers, m.body).value.candle
            out.append((c.symbol, c.open_ms))
    return out


def nats_key(*servers: NatsServer, replicas: int = 1) -> dict[str, Any]:
    return {"servers": [s.url for s in servers], "replicas": replicas}


async def started(server: NatsServer) -> NatsServer:
    return await trio.to_thread.run_sync(server.start)
