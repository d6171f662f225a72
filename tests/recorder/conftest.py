"""Harness for recorder integration tests: the real simulator, real sockets, a shared clock.

``recording(...)`` starts the simulator on 127.0.0.1 port 0 and the real recorder against it,
both on one accelerated :class:`TrioClock`, and stops the recorder gracefully on exit.
``assert_matches_truth`` compares every candle on disk with the simulator's ground truth:
nothing missing, nothing extra, every value equal.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import trio

from bmac_trio.clock import TrioClock
from bmac_trio.recorder.service import RecorderHandle, RecorderOptions, run_recorder
from bmac_trio.sim import SimConfig, open_simulator
from bmac_trio.store.config import Config, load_config
from bmac_trio.store.layout import FLOAT_COLUMNS, data_file

#: 2026-01-01 00:00 UTC plus 40 s: the first boundary comes 20 exchange seconds after start.
START_MS = 1_767_225_600_000 + 40_000
#: REST row index of each float column of a candle file.
ROW_INDEX = {
    "open": 1,
    "high": 2,
    "low": 3,
    "close": 4,
    "volume": 5,
    "quote_volume": 7,
    "trade_num": 8,
    "taker_buy_base_asset_volume": 9,
    "taker_buy_quote_asset_volume": 10,
}
FAST_OPTIONS = RecorderOptions(
    ws_probe_after_s=0.5, ws_probe_timeout_s=0.5, restart_backoff_s=0.2, durable=False
)


def write_config(base: Path, **keys: Any) -> Path:
    """Write ``<base>/config.json`` with ``keys`` (``None`` values are written as null)."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / "config.json"
    path.write_bytes(orjson.dumps(keys))
    return path


@dataclass(slots=True)
class Env:
    """A running simulator + recorder."""

    sim: Any
    clock: TrioClock
    base: Path
    config: Config
    handle: RecorderHandle

    async def periods(self, n: int) -> list[int]:
        """Wait until ``n`` periods are complete on disk; their run times."""
        await self.handle.wait_until(lambda h: len(h.stats.completed) >= n)
        return self.handle.stats.completed[:n]

    async def history(self) -> None:
        """Wait until the start-up history is on disk."""
        await self.handle.wait_until(lambda h: h.stats.history_finished is not None)


@asynccontextmanager
async def simulator(sim_cfg: SimConfig, *, speed: float, start_ms: int = START_MS) -> Any:
    clock = TrioClock(start_ms=start_ms, speed=speed)
    async with open_simulator(sim_cfg, clock=clock) as sim:
        yield sim, clock


@asynccontextmanager
async def run_against(
    sim: Any,
    clock: TrioClock,
    base: Path,
    *,
    options: RecorderOptions = FAST_OPTIONS,
    **config: Any,
) -> AsyncIterator[Env]:
    """Run the recorder on ``base`` against ``sim`` until the block exits (graceful stop)."""
    config.setdefault("num_socket_listeners", 2)
    # 30 exchange seconds (0.25 s real at 120x): room for a loaded CI machine
    config.setdefault("candle_close_timeout_sec", 30)
    write_config(base, rest_url=sim.rest_url, ws_url=sim.ws_url, **config)
    cfg = load_config(base)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(partial(run_recorder, cfg, clock=clock, options=options))
        try:
            yield Env(sim=sim, clock=clock, base=base, config=cfg, handle=handle)
        finally:
            handle.stop()


@asynccontextmanager
async def recording(
    tmp_path: Path,
    sim_cfg: SimConfig,
    *,
    speed: float = 120,
    start_ms: int = START_MS,
    options: RecorderOptions = FAST_OPTIONS,
    **config: Any,
) -> AsyncIterator[Env]:
    """Simulator and recorder on one clock (see the module docstring)."""
    async with (
        simulator(sim_cfg, speed=speed, start_ms=start_ms) as (sim, clock),
        run_against(sim, clock, tmp_path / "data", options=options, **config) as env,
    ):
        yield env


def read_candles(config: Config, symbol: str) -> pl.DataFrame:
    """Read a candle file through ONE open file handle.

    ``pl.read_parquet(path)`` may open the path twice (metadata, then pages): if the recorder
    replaces the file in between, the two halves belong to different files. A handle pins one
    inode, which atomic replacement keeps intact.
    """
    path = data_file(config.candle_dir, symbol, config.save_type)
    with path.open("rb") as f:
        data = io.BytesIO(f.read())
    if config.save_type == "parquet":
        return pl.read_parquet(data)
    return pl.read_ipc(data)


def assert_matches_truth(env: Env, symbols: list[str] | None = None, *, through_ms: int) -> int:
    """Every selected symbol's file equals the exchange's last ``num_candles`` candles up to its
    newest one, which must reach ``through_ms`` (a period end). Returns candles compared."""
    config = env.config
    interval = config.interval
    symbols = symbols if symbols is not None else sorted(env.handle.symbols)
    assert symbols, "no symbols to compare"
    compared = 0
    for symbol in symbols:
        frame = read_candles(config, symbol)
        opens = frame["candle_begin_time"].dt.epoch("ms").to_list()
        assert opens, symbol
        last = opens[-1]
        assert interval.end(last) >= through_ms, (symbol, last, through_ms)
        # from well before the file's first candle, so a missing head would show
        since = interval.add(opens[0], -config.num_candles)
        truth = [
            row
            for row in env.sim.ground_truth(symbol, interval.name, since_ms=since)
            if row[0] <= last
        ][-config.num_candles :]
        want = [row[0] for row in truth]
        if opens != want:
            lost, extra = sorted(set(want) - set(opens)), sorted(set(opens) - set(want))
            raise AssertionError(
                f"{symbol}: missing {lost[:5]}..{lost[-2:]} ({len(lost)}), "
                f"extra {extra[:5]}..{extra[-2:]} ({len(extra)})"
            )
        ends = frame["candle_end_time"].dt.epoch("ms").to_list()
        assert ends == [interval.end(t) for t in opens], symbol
        for name in FLOAT_COLUMNS:
            want = [float(row[ROW_INDEX[name]]) for row in truth]
            assert frame[name].to_list() == want, f"{symbol}.{name} differs"
        compared += len(opens)
    return compared
