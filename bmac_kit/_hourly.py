"""The all-offset hourly job: 1h candles at each five-minute offset, from a 5m data directory.

Output: ``<out>/<trade_type>_1h_resample/<k>m/<SYMBOL>.<ext>`` for k = 0, 5, ..., 55, in the
candle schema and the source's save type, each file written atomically
(:func:`bmac_trio.store.candles.write_frame_atomic`) and indexed by ``candle_end_time`` for
plain pandas readers, like the 5m files. New hours are merged into what is already
there (newest copy of an hour wins), so the output keeps growing after the 5m window rolls on,
and a gap the recorder refills later is filled here on the next rebuild of that offset.

* :meth:`HourlyJob.run_once`: every offset, from everything on disk.
* :func:`run_hourly_live`: once, then after each 5m period lands (the manifest or the ready
  files, until ``run_time + expire``) rebuilds the offset whose hour just closed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import polars as pl

from bmac_kit._reader import CandleFileReader, read_frame
from bmac_kit._resample import OFFSETS, offset_dir_name, offset_of, resample_hourly
from bmac_kit._waiting import PeriodWatcher, wait_for_period
from bmac_trio.binance.intervals import parse_interval
from bmac_trio.clock import Clock
from bmac_trio.errors import ConfigError
from bmac_trio.store.candles import PANDAS_INDEX, write_frame_atomic
from bmac_trio.store.layout import META_FILE, data_file

__all__ = ["HourlyJob", "HourlyReport", "find_source", "run_hourly_live"]

LOGGER = logging.getLogger("bmac_kit.hourly")
SOURCE_INTERVAL = "5m"
_WRITE_THREADS = 4


def find_source(base_dir: Path) -> CandleFileReader:
    """The 5m candle directory: ``base_dir`` itself, or the one ``<trade_type>_5m`` under it.

    Raises:
        ConfigError: no (or more than one) 5m candle directory with a ``bmac_meta.json``.
    """
    base_dir = Path(base_dir).expanduser()
    if (base_dir / META_FILE).is_file():
        candidates = [base_dir]
    else:
        try:
            children = sorted(p for p in base_dir.iterdir() if p.is_dir())
        except FileNotFoundError:
            raise ConfigError(f"{base_dir}: no such directory") from None
        candidates = [
            p for p in children if (p / META_FILE).is_file() and not p.name.startswith("exginfo_")
        ]
    readers = [CandleFileReader(p) for p in candidates]
    fives = [r for r in readers if r.interval == SOURCE_INTERVAL]
    if len(fives) != 1:
        found = ", ".join(f"{r.dir.name} ({r.interval})" for r in readers) or "none"
        msg = (
            f"{base_dir}: the hourly job needs exactly one 5m candle directory with a "
            f"{META_FILE} (written by `bmac-trio run`); found: {found}"
        )
        raise ConfigError(msg)
    return fives[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class HourlyReport:
    """What one update did."""

    symbols: int
    #: offset (minutes) -> number of symbol files (re)written
    written: dict[int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class HourlyJob:
    """Where the 5m candles come from and where the hourly ones go."""

    source: CandleFileReader
    out_dir: Path
    durable: bool = True

    @classmethod
    def from_base(
        cls, base_dir: Path, out: Path | None = None, *, durable: bool = True
    ) -> HourlyJob:
        """The job for ``bmac-trio hourly base_dir [--out out]``."""
        source = find_source(base_dir)
        root = Path(out).expanduser() if out is not None else source.dir.parent
        trade_type = source.trade_type or source.dir.name.rsplit("_", 1)[0]
        return cls(source=source, out_dir=root / f"{trade_type}_1h_resample", durable=durable)

    def offset_dir(self, offset: int) -> Path:
        """``<out_dir>/<offset>m``."""
        return self.out_dir / offset_dir_name(offset)

    def update(self, symbols: Iterable[str] | None, offsets: Iterable[int]) -> HourlyReport:
        """Rebuild ``offsets`` for ``symbols`` (None: every symbol on disk) and merge them in."""
        names = sorted(self.source.get_all_symbols() if symbols is None else symbols)
        offsets = list(offsets)
        frame = self.source.read_symbols(names) if names else pl.DataFrame()
        if frame.is_empty():
            return HourlyReport(symbols=0, written=dict.fromkeys(offsets, 0))
        hourly = pl.collect_all([resample_hourly(frame, k) for k in offsets])
        written = {k: self._write_offset(k, h) for k, h in zip(offsets, hourly, strict=True)}
        return HourlyReport(symbols=frame.get_column("symbol").n_unique(), written=written)

    def run_once(self) -> HourlyReport:
        """Every offset for every symbol, from what is on disk."""
        return self.update(None, OFFSETS)

    def _write_offset(self, offset: int, hourly: pl.DataFrame) -> int:
        directory = self.offset_dir(offset)
        directory.mkdir(parents=True, exist_ok=True)
        parts = hourly.partition_by("symbol", as_dict=True, include_key=False)
        items = [(str(key[0]), part) for key, part in parts.items()]
        with ThreadPoolExecutor(_WRITE_THREADS) as pool:
            return sum(pool.map(lambda item: self._merge_write(directory, *item), items))

    def _merge_write(self, directory: Path, symbol: str, new: pl.DataFrame) -> bool:
        path = data_file(directory, symbol, self.source.save_type)
        try:
            old = read_frame(path)
        except FileNotFoundError:
            old = None
        merged = new
        if old is not None:
            merged = (
                pl.concat([old, new], how="vertical_relaxed")
                .unique(subset="candle_begin_time", keep="last", maintain_order=True)
                .sort("candle_begin_time")
            )
            if merged.equals(old):
                return False
        write_frame_atomic(
            merged, path, self.source.save_type, durable=self.durable, pandas_index=PANDAS_INDEX
        )
        return True


async def _take_all(symbols: frozenset[str]) -> frozenset[str]:
    return symbols


async def run_hourly_live(
    job: HourlyJob,
    *,
    clock: Clock,
    expire_sec: float = 40.0,
    periods: int | None = None,
    task_status: anyio.abc.TaskStatus[HourlyReport] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Catch up once over what is on disk, then rebuild each hour's offset as it closes.

    For each 5m period end ``R`` it waits (via the manifest or the ready files, polling with
    backoff on ``clock``) until every symbol is in or ``R + expire_sec``, then rebuilds
    offset ``R``'s UTC minute for the symbols that are ready. ``task_status.started`` gets
    the catch-up report. Stops after ``periods`` periods (None: never).

    Runs under trio or asyncio (AnyIO).

    Cancellation:
        Safe between periods; a write in progress runs to completion in its thread (files
        are replaced atomically, so a reader never sees a partial one).
    """
    first = await anyio.to_thread.run_sync(job.run_once)
    LOGGER.info("hourly: caught up, %d symbols, files written %s", first.symbols, first.written)
    task_status.started(first)
    reader = job.source
    interval = parse_interval(SOURCE_INTERVAL)
    run_time = interval.floor(clock.now_ms()) + interval.ms
    done = 0
    while periods is None or done < periods:
        watcher = PeriodWatcher(
            reader,
            run_time,
            universe=lambda: frozenset(reader.get_all_symbols()),
            fallback=lambda: frozenset(reader.get_all_symbols()),
        )
        outcome = await wait_for_period(
            watcher,
            deadline_ms=run_time + int(expire_sec * 1000),
            on_ready=_take_all,
            clock=clock,
        )
        offset = offset_of(run_time)
        report = await anyio.to_thread.run_sync(job.update, outcome.ready, [offset])
        LOGGER.info(
            "hourly: %s offset %dm: %d/%d symbols, %d files written%s",
            reader.run_time_label(run_time),
            offset,
            len(outcome.ready),
            len(outcome.universe),
            report.written[offset],
            f", missing {' '.join(outcome.missing)}" if outcome.missing else "",
        )
        run_time += interval.ms
        done += 1
