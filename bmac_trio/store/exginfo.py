"""``exginfo_<interval>/``: the selected symbols (``exginfo.pqt``) and funding snapshots
(``funding.pqt``), each with its BMAC ready file. Written atomically (see ``_atomic``)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson
import polars as pl

from bmac_trio.errors import StorageError
from bmac_trio.store.atomic import (
    cleanup_temp_files,
    wall_ms,
    write_bytes_atomic,
    write_frame_atomic,
)
from bmac_trio.store.layout import META_FILE, ready_file

__all__ = ["EXGINFO_FILE", "FUNDING_FILE", "ExginfoStore"]

EXGINFO_FILE: Final = "exginfo.pqt"
FUNDING_FILE: Final = "funding.pqt"
_READY_RE: Final = re.compile(r"^(?P<symbol>.+)_(?P<label>\d{8}_\d{6})\.ready$")


class ExginfoStore:
    """``exginfo_<interval>/``: the selected symbols and, with funding_rate, funding snapshots.

    ``exginfo.pqt`` is always parquet (as in BMAC), whatever the candle save type.
    ``funding.pqt`` columns: ``symbol`` (str), ``fundingRate`` (f64, null when Binance sent
    ``""``), ``time`` (the period end, Datetime(ms) in the configured zone, as BMAC wrote it).
    """

    def __init__(
        self,
        directory: Path,
        tz: ZoneInfo,
        *,
        durable: bool = True,
        stamp_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.directory = Path(directory)
        self.tz = tz
        self.durable = durable
        self._stamp_ms = stamp_ms
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.directory}: {exc.strerror}") from exc

    def _renew_ready(self, name: str, run_time_ms: int) -> None:
        target = ready_file(self.directory, name, run_time_ms, self.tz)
        write_bytes_atomic(target, f"{self._stamp_ms() / 1000:.6f}".encode(), durable=False)
        for entry in os.scandir(self.directory):
            match = _READY_RE.match(entry.name)
            if match and match["symbol"] == name and entry.name != target.name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def write_exginfo(self, frame: pl.DataFrame, run_time_ms: int) -> None:
        """Write ``exginfo.pqt`` and renew ``exginfo_<label>.ready``."""
        write_frame_atomic(frame, self.directory / EXGINFO_FILE, "parquet", durable=self.durable)
        self._renew_ready("exginfo", run_time_ms)

    def read_exginfo(self) -> pl.DataFrame | None:
        """The last written exchange info, or None."""
        try:
            return pl.read_parquet(self.directory / EXGINFO_FILE)
        except FileNotFoundError:
            return None

    def read_funding(self) -> pl.DataFrame | None:
        """The funding snapshots, or None."""
        try:
            return pl.read_parquet(self.directory / FUNDING_FILE)
        except FileNotFoundError:
            return None

    def append_funding(
        self, rows: pl.DataFrame | Sequence[Any], run_time_ms: int, keep_after_ms: int
    ) -> pl.DataFrame:
        """Append a snapshot taken for ``run_time_ms``; drop rows older than ``keep_after_ms``.

        ``rows`` is a frame with ``symbol`` and ``fundingRate`` columns or a sequence of
        objects with ``symbol`` and ``funding_rate`` (``_protocol.FundingRate``). A row per
        (symbol, time) is kept, the newest. Returns the frame written.
        """
        time_type = pl.Datetime("ms", self.tz.key)
        if isinstance(rows, pl.DataFrame):
            symbols = rows["symbol"].cast(pl.String).to_list()
            rates = rows["fundingRate"].cast(pl.Float64).to_list()
        else:
            symbols = [r.symbol for r in rows]
            rates = [r.funding_rate for r in rows]
        snapshot = pl.DataFrame(
            {
                "symbol": pl.Series(symbols, dtype=pl.String),
                "fundingRate": pl.Series(rates, dtype=pl.Float64),
                "time": pl.Series([run_time_ms] * len(symbols), dtype=pl.Int64).cast(time_type),
            }
        )
        old = self.read_funding()
        if old is not None and old.columns == snapshot.columns:
            old = old.with_columns(pl.col("time").dt.convert_time_zone(self.tz.key))
            snapshot = pl.concat([old.cast(snapshot.schema), snapshot], how="vertical")
        keep = pl.col("time").dt.epoch("ms") >= keep_after_ms
        frame = (
            snapshot.filter(keep)
            .unique(subset=["symbol", "time"], keep="last", maintain_order=True)
            .sort("time", "symbol")
        )
        write_frame_atomic(frame, self.directory / FUNDING_FILE, "parquet", durable=self.durable)
        self._renew_ready("funding", run_time_ms)
        return frame

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write ``bmac_meta.json`` here too."""
        write_bytes_atomic(
            self.directory / META_FILE, orjson.dumps(meta, option=orjson.OPT_INDENT_2)
        )

    def cleanup_temp_files(self) -> int:
        """Remove temp files left by a killed writer."""
        return cleanup_temp_files(self.directory)
