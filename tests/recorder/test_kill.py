"""SIGKILL during writes, SIGTERM, and a second copy, with the real ``bmac-trio run`` process.

The simulator runs in this process on a :class:`ScaledWallClock`; ``bmac-trio run --clock``
shares it. A reader thread reads every candle file over and over (one handle per read, as
``bmac_kit`` does) while the recorder is killed in the middle of a period's writes: it must
never see a torn or unreadable file.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import trio

from bmac_trio.clock import ScaledWallClock
from bmac_trio.ops.status import read_status
from bmac_trio.sim import SimConfig, open_simulator
from bmac_trio.store.config import load_config
from bmac_trio.store.layout import EXTENSIONS

from .conftest import START_MS, Env, assert_matches_truth, write_config

SPEED = 120.0
CLI = [sys.executable, "-c", "from bmac_trio.cli import main; main()"]


class Reader(threading.Thread):
    """Reads every candle file in a loop; counts reads and failures."""

    def __init__(self, directory: Path, save_type: str) -> None:
        super().__init__(daemon=True)
        self.directory = directory
        self.extension = EXTENSIONS[save_type]
        self.parquet = save_type == "parquet"
        self.stop = threading.Event()
        self.reads = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for path in sorted(self.directory.glob(f"*{self.extension}")):
                try:
                    with path.open("rb") as f:
                        data = io.BytesIO(f.read())
                    frame = pl.read_parquet(data) if self.parquet else pl.read_ipc(data)
                    assert frame.height > 0
                    self.reads += 1
                except FileNotFoundError:
                    continue
                except Exception as exc:
                    self.failures.append(f"{path.name}: {exc!r}")


class Recorder:
    """``bmac-trio run`` as a child process; its log lines arrive on a channel."""

    def __init__(self, base: Path, spec: str) -> None:
        self.base, self.spec = base, spec
        self.process: trio.Process | None = None
        self.lines: list[str] = []
        self.changed = trio.Event()

    async def start(self, nursery: trio.Nursery) -> None:
        cmd = [*CLI, "run", str(self.base), "--clock", self.spec]
        self.process = await trio.lowlevel.open_process(
            cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        nursery.start_soon(self._pump)

    async def _pump(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        buffer = b""
        async for chunk in self.process.stderr:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in lines)
            self.changed.set()
            self.changed = trio.Event()

    async def wait_for(self, text: str, count: int = 1) -> None:
        while sum(text in line for line in self.lines) < count:
            await self.changed.wait()


async def test_sigkill_mid_write_never_tears_a_file_and_restart_heals(tmp_path: Path) -> None:
    clock = ScaledWallClock(START_MS, SPEED, time.time())
    base = tmp_path / "data"
    with trio.fail_after(60):
        async with open_simulator(SimConfig(market="um", symbols=30, seed=31), clock=clock) as sim:
            write_config(
                base,
                interval="1m",
                trade_type="usdt_perp",
                num_candles=300,
                num_socket_listeners=2,
                rest_url=sim.rest_url,
                ws_url=sim.ws_url,
            )
            config = load_config(base)
            reader = Reader(config.candle_dir, config.save_type)
            async with trio.open_nursery() as nursery:
                first = Recorder(base, clock.spec())
                await first.start(nursery)
                await first.wait_for("all symbols ready")
                reader.start()
                # the next period's closing pushes arrive 0.2-2 s after the boundary and each
                # symbol is written as its push arrives: kill in the middle of those writes
                await first.wait_for("update Runtime", 2)
                await clock.sleep_until_ms(clock.now_ms() + 700)
                assert first.process is not None
                first.process.send_signal(signal.SIGKILL)
                assert await first.process.wait() == -signal.SIGKILL
                # a second copy while the first is dead: the lock was freed by the kernel
                second = Recorder(base, clock.spec())
                await second.start(nursery)
                await second.wait_for("all symbols ready", 2)
                # SIGTERM: finish the write in progress, exit 0
                assert second.process is not None
                stopped_ms = clock.now_ms()
                second.process.send_signal(signal.SIGTERM)
                assert await second.process.wait() == 0
                reader.stop.set()
            await trio.to_thread.run_sync(reader.join)
            print(f"reader: {reader.reads} reads, {len(reader.failures)} failures")
            status = read_status(base)
            assert status is not None
            assert status.periods_completed >= 1
            assert status.last_period_ms is not None
            assert status.rest_weight_spent > 0
            assert reader.failures == []
            assert reader.reads > 100
            leftovers = await trio.to_thread.run_sync(
                lambda: [p.name for p in config.candle_dir.rglob("*.tmp")]
            )
            assert leftovers == []
            env = Env(sim=sim, clock=clock, base=base, config=config, handle=None)  # type: ignore[arg-type]
            symbols = sorted(
                p.stem for p in config.candle_dir.glob("*.pqt") if not p.name.startswith(".")
            )
            assert len(symbols) >= 20
            last_period = config.interval.floor(stopped_ms) - 60_000
            assert_matches_truth(env, symbols, through_ms=last_period)


def test_sigterm_before_any_data_exits_zero(tmp_path: Path) -> None:
    # nothing listens on the port: the recorder keeps retrying exchangeInfo; SIGTERM still
    # stops it at once with status 0
    base = tmp_path / "data"
    write_config(base, interval="1m", trade_type="usdt_perp", rest_url="http://127.0.0.1:9")
    with subprocess.Popen([*CLI, "run", str(base)], stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None
        for line in process.stderr:
            if "exchangeInfo" in line:
                break
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_sigterm_during_start_up_exits_zero(tmp_path: Path) -> None:
    # cron or systemd may stop the recorder while it is still importing and loading: the
    # lock is taken right after the handlers are installed, so a SIGTERM as soon as the lock
    # exists lands before trio, the config, the logging and the recorder's own receiver
    base = tmp_path / "data"
    write_config(base, interval="1m", trade_type="usdt_perp", rest_url="http://127.0.0.1:9")
    lock = base / ".bmac.lock"
    with subprocess.Popen([*CLI, "run", str(base)], stderr=subprocess.PIPE, text=True) as process:
        deadline = time.monotonic() + 20
        while not lock.exists():  # another process: nothing to wait on but the file
            assert process.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert process.stderr is not None
        err = process.stderr.read()
    assert "SIGTERM received" in err
    assert "exchangeInfo" not in err  # stopped before it asked anything
