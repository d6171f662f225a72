"""``CandleFileReader``: BMAC's read-only view of a candle (or exginfo) directory.

It configures itself from the directory's ``bmac_meta.json`` (interval, time zone, save type,
trade type), so ``CandleFileReader(dir)`` is enough; an explicit ``save_type`` is still accepted
so BMAC scripts (``CandleFileReader(dir, 'parquet')``) run unchanged. Data is returned as polars
frames; ``read_candle(symbol, pandas=True)`` gives BMAC's pandas shape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq

from bmac_kit._time import RunTime, to_ms
from bmac_trio.binance.symbols import check_symbol, is_safe_symbol
from bmac_trio.store.layout import (
    CANDLE_SCHEMA,
    DEFAULT_TIMEZONE,
    EXTENSIONS,
    META_FILE,
    SaveType,
    data_file,
    manifest_path,
    ready_file,
    run_time_label,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CandleFileReader", "MarketFrame", "read_frame", "read_frames", "read_market"]

LOGGER = logging.getLogger("bmac_kit.reader")
_READ_ERRORS = (OSError, pl.exceptions.PolarsError, pa.ArrowException)


def _parse(data: bytes, feather: bool) -> pl.DataFrame:
    return pl.read_ipc(data) if feather else pl.read_parquet(data)


def _read_one(path: Path) -> pl.DataFrame:
    # One open, read from that handle: given a path, polars/pyarrow may open a file twice
    # (footer, then pages) and mix two versions if the recorder replaces it in between.
    return _parse(path.read_bytes(), path.suffix == EXTENSIONS["feather"])


def read_frame(path: Path) -> pl.DataFrame:
    """Read one file, retrying once if it is replaced or torn mid-read (BMAC v2 wrote in place).

    Raises:
        FileNotFoundError: there is no such file (not retried).
    """
    try:
        return _read_one(path)
    except FileNotFoundError:
        raise
    except _READ_ERRORS:
        LOGGER.debug("retrying read of %s", path)
        return _read_one(path)


def _read_many(paths: list[Path]) -> tuple[pl.DataFrame, list[int]]:
    """All files parsed in one go (polars/pyarrow use every core); rows per file."""
    blobs = [p.read_bytes() for p in paths]
    if paths[0].suffix == EXTENSIONS["feather"]:
        tables = [pa_ipc.open_file(pa.BufferReader(b)).read_all() for b in blobs]
        frame = pl.from_arrow(pa.concat_tables(tables))
        assert isinstance(frame, pl.DataFrame)
        return frame, [t.num_rows for t in tables]
    rows = [pq.read_metadata(pa.BufferReader(b)).num_rows for b in blobs]
    return pl.scan_parquet(blobs).collect(), rows


@dataclass(frozen=True, slots=True)
class MarketFrame:
    """Several symbols' candles in one frame, each symbol's rows contiguous and in order."""

    frame: pl.DataFrame
    symbols: list[str]
    rows: list[int]

    def owner(self) -> pl.Series:
        """Each row's symbol as its index in :attr:`symbols` (sorted, so ``.over`` on it is
        several times faster than on the symbol names)."""
        ends = pl.Series(self.rows, dtype=pl.Int64).cum_sum()
        return ends.search_sorted(pl.int_range(self.frame.height, eager=True), side="right")

    def with_symbol_column(self) -> pl.DataFrame:
        """The frame with a ``symbol`` column."""
        names = pl.Series(self.symbols, dtype=pl.String)
        return self.frame.with_columns(symbol=names.gather(self.owner()))


def read_market(paths: dict[str, Path]) -> MarketFrame:
    """Read many files of one format into one :class:`MarketFrame`.

    Parsing them together is several times faster than a loop of single reads. If any file
    fails (torn, or vanished because the symbol was delisted and moved aside), each is read
    alone with a retry, and the ones that vanished or stay unreadable are left out (and
    logged), so one bad file costs one symbol, not the whole market.
    """
    symbols = list(paths)
    if not symbols:
        return MarketFrame(pl.DataFrame(schema=CANDLE_SCHEMA), [], [])
    try:
        frame, rows = _read_many([paths[s] for s in symbols])
    except _READ_ERRORS:
        parts, found, rows = [], [], []
        for symbol in symbols:
            try:
                part = read_frame(paths[symbol])
                if part.schema != CANDLE_SCHEMA:  # e.g. nanosecond times from other writers
                    part = part.select(CANDLE_SCHEMA.names()).cast(dict(CANDLE_SCHEMA))
            except FileNotFoundError:
                LOGGER.warning("%s vanished before it could be read", paths[symbol])
                continue
            except _READ_ERRORS as exc:  # torn twice in a row, or corrupt: leave it out
                LOGGER.error("%s is unreadable (%s); left out", paths[symbol], exc)
                continue
            parts.append(part)
            found.append(symbol)
            rows.append(part.height)
        frame = pl.concat(parts) if parts else pl.DataFrame(schema=CANDLE_SCHEMA)
        return MarketFrame(frame, found, rows)
    return MarketFrame(frame, symbols, rows)


def read_frames(paths: dict[str, Path]) -> pl.DataFrame:
    """Read many files of one format into one frame with a ``symbol`` column."""
    return read_market(paths).with_symbol_column()


class CandleFileReader:
    """Read-only access to one data directory (candles, or exginfo/funding).

    Args:
        dir: the candle directory (``<base>/usdt_perp_5m``) or the exginfo directory.
        save_type: ``"parquet"`` or ``"feather"``; default from ``bmac_meta.json`` (the
            exginfo directory always holds parquet).

    Attributes:
        meta: the parsed ``bmac_meta.json`` (empty when the directory has none yet).
        interval: the interval name (``"5m"``) or None.
        tz: the zone ready files and manifests are named in.
    """

    def __init__(self, dir: str | os.PathLike[str], save_type: SaveType | None = None) -> None:
        self.dir = Path(dir)
        self.meta: dict[str, Any] = self._load_meta()
        name = self.dir.name
        is_exginfo = self.meta.get("exginfo_dir") == name or name.startswith("exginfo_")
        written = "parquet" if is_exginfo else self.meta.get("save_type")
        if save_type is None:
            save_type = written or "parquet"
        elif written is not None and save_type != written:
            # the calculators never return these files' stale candles, but say why they wait
            LOGGER.warning(
                "%s: reading %s files, but the recorder writes %s (bmac_meta.json); "
                "symbols will be missing once the %s files stop being updated",
                self.dir,
                save_type,
                written,
                save_type,
            )
        if save_type not in EXTENSIONS:
            msg = f"save_type must be one of {sorted(EXTENSIONS)}, got {save_type!r}"
            raise ValueError(msg)
        self.save_type: SaveType = save_type
        self.interval: str | None = self.meta.get("interval")
        self.trade_type: str | None = self.meta.get("trade_type")
        self.tz = ZoneInfo(self.meta.get("timezone") or DEFAULT_TIMEZONE)

    def _load_meta(self) -> dict[str, Any]:
        try:
            meta = orjson.loads((self.dir / META_FILE).read_bytes())
        except FileNotFoundError:
            return {}
        return meta if isinstance(meta, dict) else {}

    # --- BMAC's API -----------------------------------------------------------------------
    def format_ready_file_path(self, symbol: str, run_time: RunTime) -> Path:
        """``<dir>/<SYMBOL>_<YYYYmmdd_HHMMSS>.ready`` with the period end in :attr:`tz`."""
        return ready_file(self.dir, check_symbol(symbol), to_ms(run_time, self.tz), self.tz)

    def check_ready(self, symbol: str, run_time: RunTime) -> bool:
        """Whether the symbol's file already includes the period ending at ``run_time``."""
        return self.format_ready_file_path(symbol, run_time).exists()

    def symbol_path(self, symbol: str) -> Path:
        """The data file of ``symbol``."""
        return data_file(self.dir, check_symbol(symbol), self.save_type)

    def has_symbol(self, symbol: str) -> bool:
        """Whether ``symbol`` has a data file."""
        return is_safe_symbol(symbol) and self.symbol_path(symbol).exists()

    def get_all_symbols(self) -> list[str]:
        """Every symbol with a data file, sorted."""
        ext = EXTENSIONS[self.save_type]
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(
            n[: -len(ext)] for n in names if n.endswith(ext) and is_safe_symbol(n[: -len(ext)])
        )

    def read_candle(self, symbol: str, *, pandas: bool = False) -> pl.DataFrame | pd.DataFrame:
        """The symbol's file as a polars frame (``pandas=True``: BMAC's pandas frame).

        Retries once if the file is replaced while being read.

        Raises:
            FileNotFoundError: the symbol has no file.
        """
        frame = read_frame(self.symbol_path(symbol))
        if not pandas:
            return frame
        if "candle_end_time" in frame.columns:
            return frame.to_pandas().set_index("candle_end_time")
        return frame.to_pandas()

    # --- what BMAC did not have -------------------------------------------------------------
    def read_symbols(self, symbols: Iterable[str]) -> pl.DataFrame:
        """Read several symbols at once into one frame with a ``symbol`` column."""
        return read_frames({s: self.symbol_path(s) for s in symbols})

    def run_time_label(self, run_time: RunTime) -> str:
        """``YYYYmmdd_HHMMSS`` of ``run_time`` in :attr:`tz`."""
        return run_time_label(to_ms(run_time, self.tz), self.tz)

    def manifest_path(self, run_time: RunTime) -> Path:
        """Path of the period manifest for ``run_time``."""
        return manifest_path(self.dir, to_ms(run_time, self.tz), self.tz)

    def read_manifest(self, run_time: RunTime) -> dict[str, Any] | None:
        """The period manifest, or None while the recorder has not written it."""
        try:
            data = orjson.loads(self.manifest_path(run_time).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def ready_symbols(self, run_time: RunTime) -> set[str]:
        """Symbols whose data includes the period ending at ``run_time``: one directory scan.

        A ready file naming a *later* period counts too (there is at most one per symbol, so
        once the recorder has moved on, the older period's ready file is gone but its candle
        is still in the file).
        """
        run_time_ms = to_ms(run_time, self.tz)
        label_ms: dict[str, int | None] = {self.run_time_label(run_time_ms): run_time_ms}
        ready = set()
        try:
            with os.scandir(self.dir) as entries:
                names = [e.name for e in entries if e.name.endswith(".ready")]
        except FileNotFoundError:
            return ready
        for name in names:
            symbol, _, label = name[: -len(".ready")].rpartition("_")
            symbol, _, day = symbol.rpartition("_")
            label = f"{day}_{label}"
            if label not in label_ms:
                label_ms[label] = self._label_to_ms(label)
            ms = label_ms[label]
            if symbol and ms is not None and ms >= run_time_ms:
                ready.add(symbol)
        return ready

    def _label_to_ms(self, label: str) -> int | None:
        try:
            when = datetime.strptime(label, "%Y%m%d_%H%M%S").replace(tzinfo=self.tz)
        except ValueError:
            return None
        return to_ms(when)

    def __repr__(self) -> str:
        return f"CandleFileReader({str(self.dir)!r}, {self.save_type!r})"
