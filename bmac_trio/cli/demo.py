"""``bmac-trio demo``: the simulator and the recorder in one process, on a fast clock.

A new user's first command. Both share one :class:`~bmac_trio.clock.ScaledWallClock` (exchange
time = now, running ``speed`` times faster), so a 1m period passes in two seconds at 30x: the
user sees the history download, then period after period complete with its lag, and finally
where the files are and how to read them with ``bmac_kit`` (the snippet printed is run, and its
real output shown). The clock is recorded in the status file, so ``bmac-trio status DIR`` in
another terminal judges the demo on the demo's time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import trio

from bmac_trio.clock import ScaledWallClock, SystemClock

__all__ = ["DemoOptions", "run_demo"]

log = logging.getLogger("bmac_trio.demo")

#: Marks a directory as the demo's own, so a rerun may clear it (and nothing else is cleared).
MARKER: Final = ".bmac-demo"
MARKETS: Final = {"um": "usdt_perp", "cm": "coin_perp", "spot": "usdt_spot"}


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What the demo records and for how long."""

    directory: Path
    periods: int = 5
    symbols: int = 30
    candles: int = 1500
    speed: float = 30.0
    market: str = "um"
    interval: str = "1m"
    save_type: str = "parquet"


class DemoError(Exception):
    """The demo cannot start (the directory belongs to someone else)."""


def prepare_directory(directory: Path) -> None:
    """Create the demo directory, or clear a previous demo's; refuse anything else.

    Raises:
        DemoError: ``directory`` exists, is not empty and is not a previous demo's.
    """
    if directory.exists() and not directory.is_dir():
        raise DemoError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise DemoError(
                f"{directory} is not empty and was not made by bmac-trio demo; "
                "give the demo an empty or new directory"
            )
        for child in directory.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("made by bmac-trio demo; a rerun clears this directory\n")


def _snippet(candle_dir: Path, symbol: str) -> str:
    return (
        "from bmac_kit import CandleFileReader\n"
        f'reader = CandleFileReader("{candle_dir}")\n'
        'print(len(reader.get_all_symbols()), "symbols")\n'
        f'df = reader.read_candle("{symbol}")  # a polars DataFrame; pandas=True for pandas\n'
        'print(df.select("candle_end_time", "open", "high", "low", "close", "volume").tail(3))\n'
    )


def _say(text: str = "") -> None:
    print(text, flush=True)


async def run_demo(options: DemoOptions) -> int:
    """Run the demo; returns the exit status."""
    from bmac_trio.ops.status import StatusReport, StatusTracker
    from bmac_trio.recorder.service import RecorderOptions, run_recorder
    from bmac_trio.sim import SimConfig, open_simulator
    from bmac_trio.store.config import load_config

    base = options.directory
    trade_type = MARKETS[options.market]
    real_now_ms = SystemClock().now_ms()
    clock = ScaledWallClock(real_now_ms, options.speed, real_now_ms / 1000)
    sim_config = SimConfig(
        market=options.market,  # type: ignore[arg-type]
        symbols=options.symbols,
        seed=7,
        interval_hint=options.interval,
        history_candles=options.candles + 100,
    )
    async with open_simulator(sim_config, clock=clock) as sim:
        config_data = {
            "interval": options.interval,
            "trade_type": trade_type,
            "num_candles": options.candles,
            "save_type": options.save_type,
            "candle_close_timeout_sec": 15,
            "rest_url": sim.rest_url,
            "ws_url": sim.ws_url,
        }
        (base / "config.json").write_bytes(orjson.dumps(config_data, option=orjson.OPT_INDENT_2))
        config = load_config(base)
        _say(
            f"Simulated {options.market.upper()} market on {sim.rest_url}: "
            f"{len(sim.trading_symbols())} symbols trading, {options.interval} candles, "
            f"clock {options.speed:g}x (a {options.interval} period every "
            f"{clock.to_real(config.interval.seconds):g} s)"
        )
        _say(f"Recording into {base}/ (config.json written there); history first:")
        report = StatusReport.for_config(
            config,
            pid=os.getpid(),
            now_ms=clock.now_ms(),
            clock_speed=clock.speed,
            clock=clock.spec(),
        )
        status = StatusTracker(base, report, clock)
        recorder_options = RecorderOptions(handle_signals=False, restart_backoff_s=1.0)
        stop = _Stop()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_interrupt, stop)
            with stop.scope:
                stop.handle = await nursery.start(
                    lambda task_status: run_recorder(
                        config,
                        clock=clock,
                        status=status,
                        options=recorder_options,
                        task_status=task_status,
                    )
                )
                await _watch_periods(stop.handle, trade_type, options)
            stop.stop(interrupted=stop.interrupted)
        status.update(state="stopped")
        await status.save()
    if stop.interrupted:
        _say(f"Interrupted (Ctrl-C); the recorder stopped cleanly. Data so far: {base}/")
        return 130
    _finish(base, config.candle_dir, options)
    return 0


class _Stop:
    """Ends the demo: after the last period, or at Ctrl-C (then the recorder still stops
    cleanly, finishing the writes in progress)."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.handle: Any = None
        self.interrupted = False
        self.watcher = trio.CancelScope()

    def stop(self, *, interrupted: bool) -> None:
        self.interrupted = interrupted
        self.scope.cancel()
        self.watcher.cancel()
        if self.handle is not None:
            self.handle.stop()


async def _watch_interrupt(stop: _Stop) -> None:
    with stop.watcher, trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.stop(interrupted=True)  # also cancels a recorder that is still starting
            return


async def _watch_periods(handle: Any, trade_type: str, options: DemoOptions) -> None:
    await handle.wait_until(lambda h: h.stats.history_finished is not None)
    _say(
        f"History of {handle.stats.history_symbols} {trade_type} symbols on disk; "
        f"now live, watching {options.periods} periods:"
    )
    shown = set(handle.stats.completed)
    live = 0
    while live < options.periods:
        await handle.wait_until(lambda h: not set(h.stats.completed) <= shown)
        for run_time_ms in handle.stats.completed:
            if run_time_ms in shown or live >= options.periods:
                continue
            shown.add(run_time_ms)
            live += 1
            lag = handle.stats.lags.get(run_time_ms)
            lag_text = "n/a" if lag is None else f"{lag * 1000:.0f} ms"
            _say(
                f"  period {live}/{options.periods} ending "
                f"{_utc(run_time_ms)} complete on disk, lag {lag_text}"
            )


def _utc(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M UTC")


def _finish(base: Path, candle_dir: Path, options: DemoOptions) -> None:
    from bmac_kit import CandleFileReader

    reader = CandleFileReader(candle_dir)
    symbols = reader.get_all_symbols()
    symbol = "BTCUSDT" if "BTCUSDT" in symbols else symbols[0]
    try:
        shown = candle_dir.relative_to(Path.cwd())
    except ValueError:
        shown = candle_dir
    snippet = _snippet(shown, symbol)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "<demo snippet>", "exec"), {})  # the snippet we print, run as is
    _say()
    _say(
        f"Done: {len(symbols)} symbols x {options.candles} candles of {options.interval}, one "
        f"{options.save_type} file per symbol, in {candle_dir}/"
    )
    _say(f"Ready files (<SYMBOL>_<time>.ready) and period manifests ({candle_dir.name}/_periods/)")
    _say("tell readers when a period is complete. Read the files with bmac_kit:")
    _say()
    for line in snippet.splitlines():
        _say(f"    {line}")
    _say()
    _say("which prints, right now:")
    _say()
    for line in out.getvalue().splitlines():
        _say(f"    {line}")
    _say()
    _say(f"See the recorder's last status with: bmac-trio status {base}")
    sys.stdout.flush()
