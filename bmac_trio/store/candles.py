"""The data directory on disk: atomic candle, ready, manifest, exginfo and funding files.

Synchronous on purpose: the dispatcher, the only writer, calls it through
``trio.to_thread.run_sync``. Every file is written to a temp file in the same directory
(``.<name>.<random>.tmp``, invisible to ``*.pqt`` globs), flushed, fsynced, then renamed over the
old one with ``os.replace`` and the directory fsynced, so a reader sees the old file or the new
one and never a torn one, whenever the process dies. Readers must open a file *once* and read
from that handle (``pl.read_parquet(open(path, "rb"))`` or the bytes): polars and pyarrow given
a *path* open it twice (footer, then pages) and can mix two versions written in between. A
failed write raises :class:`StorageError` (naming the path and the cause) and leaves the
previous file intact.

Ready files only move forward: ``write`` creates ``<SYMBOL>_<label>.ready`` when the frame holds
the candle ending at ``run_time_ms`` and then removes the symbol's older ready files; a write
that does not complete a newer period (a gap refill, ``run_time_ms=None``) leaves them alone,
since the data still holds those candles.

A :class:`CandleStore` may be used from several threads at once for *different* symbols
(:meth:`CandleStore.write_many` does that); one symbol must not be written concurrently.

Exchange info and funding live in :class:`ExginfoStore` (``exginfo_<interval>/``, module
``_exginfo_store``), candles in :class:`CandleStore` (``<trade_type>_<interval>/``); the atomic
writes are in ``_atomic``. This module re-exports all of them.

Manifest (``_periods/<label>.json``, one per period, rewritten until ``final``)::

    {"format_version": 1, "interval": "5m", "trade_type": "usdt_perp",
     "run_time": "20240717_193700",          # label in the configured time zone
     "run_time_ms": 1721216220000, "run_time_iso": "2024-07-17T11:37:00+00:00",
     "complete": ["BTCUSDT", ...],           # files hold the candle ending at run_time
     "missing": ["NEWUSDT", ...],            # selected symbols that do not (yet)
     "final": false,                         # true once the recorder stops working on it
     "written_at_ms": 1721216220153, "lag_ms": 153.2}   # lag_ms null when unknown

The newest ``min(1000, 2 * num_candles)`` manifests are kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson
import polars as pl
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq

from bmac_trio.binance.candles import epoch_ms
from bmac_trio.binance.intervals import Interval
from bmac_trio.binance.symbols import check_symbol, is_safe_symbol
from bmac_trio.errors import StorageError
from bmac_trio.store.atomic import (
    TEMP_SUFFIX,
    WriteStages,
    cleanup_temp_files,
    fsync_dir,
    wall_ms,
    write_bytes_atomic,
    write_frame_atomic,
)
from bmac_trio.store.exginfo import EXGINFO_FILE, FUNDING_FILE, ExginfoStore
from bmac_trio.store.layout import (
    CANDLE_SCHEMA,
    DELISTED_DIR,
    EXTENSIONS,
    FORMAT_VERSION,
    MANIFEST_DIR,
    META_FILE,
    SaveType,
    data_file,
    manifest_path,
    ready_file,
    run_time_label,
)

__all__ = [
    "EXGINFO_FILE",
    "FUNDING_FILE",
    "PANDAS_INDEX",
    "TEMP_SUFFIX",
    "CandleStore",
    "ExginfoStore",
    "cleanup_temp_files",
    "write_bytes_atomic",
    "write_frame_atomic",
]

LOGGER = logging.getLogger("bmac_trio.storage")
MAX_MANIFESTS: Final = 1000
#: Plain ``pd.read_parquet`` / ``pd.read_feather`` make this column the index, as in BMAC.
PANDAS_INDEX: Final = "candle_end_time"
_READY_RE: Final = re.compile(r"^(?P<symbol>.+)_(?P<label>\d{8}_\d{6})\.ready$")
_LABEL_RE: Final = re.compile(r"^\d{8}_\d{6}\.json$")


def _read_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _parse_frame(data: bytes, save_type: SaveType) -> pl.DataFrame:
    buffer = io.BytesIO(data)
    if save_type == "parquet":
        return pl.read_parquet(buffer)
    return pl.read_ipc(buffer)


def _label_ms(label: str, tz: ZoneInfo) -> int | None:
    try:
        local = datetime.strptime(label, "%Y%m%d_%H%M%S").replace(tzinfo=tz)
    except ValueError:
        return None
    return int(local.timestamp() * 1000)


def _unused_name(directory: Path, stem: str, suffix: str) -> Path:
    candidate = directory / f"{stem}{suffix}"
    n = 1
    while candidate.exists():
        candidate = directory / f"{stem}.{n}{suffix}"
        n += 1
    return candidate


# --------------------------------------------------------------------------- candles


class CandleStore:
    """One candle directory: per-symbol files, their ready files, manifests, metadata.

    Args:
        directory: ``<base>/<trade_type>_<interval>`` (created if missing).
        save_type: ``"parquet"`` or ``"feather"``.
        tz: the zone of ready-file and manifest names.
        num_candles: how many candles a file keeps.
        interval: the candle interval.
        trade_type: written into manifests.
        durable: fsync files and the directory (atomicity against a killed process does not
            need it; surviving a power cut does).
        stamp_ms: the write time put in ready files and manifests (BMAC writes wall time).
    """

    def __init__(
        self,
        directory: Path,
        save_type: SaveType,
        tz: ZoneInfo,
        num_candles: int,
        interval: Interval,
        *,
        trade_type: str = "",
        durable: bool = True,
        stamp_ms: Callable[[], int] = wall_ms,
    ) -> None:
        if save_type not in EXTENSIONS:
            raise ValueError(f"unknown save_type {save_type!r}")
        self.directory = Path(directory)
        self.save_type: SaveType = save_type
        self.extension = EXTENSIONS[save_type]
        self.tz = tz
        self.num_candles = num_candles
        self.interval = interval
        self.trade_type = trade_type
        self.durable = durable
        self._stamp_ms = stamp_ms
        #: symbol -> {ready file name: run_time_ms (None when its label did not parse)}
        self._ready: dict[str, dict[str, int | None]] | None = None
        self._lock = threading.Lock()
        self._manifests: list[str] | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.directory}: {exc.strerror}") from exc

    def recreate_directory(self) -> bool:
        """Create the directory again if it was deleted under us; whether it had to be.

        Raises:
            StorageError: it is missing and cannot be created.
        """
        with self._lock:  # several writer threads may meet the absence at once
            if self.directory.is_dir():
                return False
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create {self.directory}: {exc.strerror}") from exc
            self._ready = None  # the ready files went with the folder
            self._manifests = None
        return True

    # ---------------------------------------------------------------- reading

    def path(self, symbol: str) -> Path:
        """The data file of ``symbol`` (refusing unsafe names)."""
        return data_file(self.directory, check_symbol(symbol), self.save_type)

    def read(self, symbol: str) -> pl.DataFrame | None:
        """The symbol's candles, or None when there is no usable file.

        A torn, corrupt or wrong-schema file is moved aside to ``<name>.corrupt-<n>`` (kept for
        inspection) and None is returned, so the recorder refetches instead of crashing.

        Raises:
            StorageError: the disk refused the read (permissions, I/O error); the file stays.
        """
        path = self.path(symbol)
        try:
            data = _read_bytes(path)  # one open: a consistent version, and OS errors apart
        except FileNotFoundError:
            return None
        except OSError as exc:  # the disk, not the file: keep it where it is
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            frame = _parse_frame(data, self.save_type)
        except Exception as exc:  # polars raises many types (even OSError) for a bad file
            self._quarantine(symbol, path, f"unreadable ({type(exc).__name__}: {exc})")
            return None
        problem = _frame_problem(frame)
        if problem:
            self._quarantine(symbol, path, problem)
            return None
        return frame

    def _quarantine(self, symbol: str, path: Path, reason: str) -> Path | None:
        """Move a bad file aside, and its ready files away: they announce data it lacks."""
        self._remove_ready(symbol)
        n = 1
        while (target := path.with_name(f"{path.name}.corrupt-{n}")).exists():
            n += 1
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            LOGGER.error("%s is %s and cannot be moved aside: %s", path, reason, exc.strerror)
            return None
        LOGGER.warning("%s is %s; moved aside to %s", path, reason, target.name)
        return target

    def symbols_on_disk(self) -> frozenset[str]:
        """Symbols that have a data file."""
        found = set()
        for entry in os.scandir(self.directory):
            name = entry.name
            if name.endswith(self.extension) and not name.startswith("."):
                symbol = name[: -len(self.extension)]
                if is_safe_symbol(symbol):
                    found.add(symbol)
        return frozenset(found)

    def last_open_times(self) -> dict[str, int]:
        """The newest candle open time (epoch ms) of every symbol file, for a restart.

        Reads only file metadata / the last record batch, so 500 files take milliseconds.
        Unreadable files are moved aside and left out (the symbol is then fetched in full).
        """
        result: dict[str, int] = {}
        for symbol in sorted(self.symbols_on_disk()):
            path = data_file(self.directory, symbol, self.save_type)
            try:
                last = _last_open_ms(path, self.save_type)
            except FileNotFoundError:
                continue
            except Exception as exc:
                self._quarantine(symbol, path, f"unreadable ({type(exc).__name__}: {exc})")
                continue
            if last is not None:
                result[symbol] = last
        return result

    # ---------------------------------------------------------------- writing

    def merge(self, old: pl.DataFrame | None, new: pl.DataFrame) -> pl.DataFrame:
        """``old`` plus ``new``: sorted, unique on candle_begin_time (newest copy wins), the
        last ``num_candles``. Pure."""
        if old is None or old.height == 0:
            combined = new
        elif new.height == 0:
            combined = old
        else:
            old_last = epoch_ms(old["candle_begin_time"])[-1]
            new_times = new["candle_begin_time"]
            ascending = new.height == 1 or _strictly_ascending(new_times)
            if epoch_ms(new_times)[0] > old_last and ascending:
                if old.schema == new.schema:  # the usual append: vstack is 50x cheaper
                    return old.vstack(new).tail(self.num_candles)
                return pl.concat([old, new], how="vertical").tail(self.num_candles)
            combined = pl.concat([old, new], how="vertical")
        merged = combined.unique(subset="candle_begin_time", keep="last", maintain_order=True)
        return merged.sort("candle_begin_time").tail(self.num_candles)

    def write(
        self,
        symbol: str,
        frame: pl.DataFrame,
        run_time_ms: int | None,
        *,
        stages: WriteStages | None = None,
    ) -> bool:
        """Write the symbol's file atomically, then renew its ready file.

        ``stages``, when given, is marked at each step (encode, fsync, rename, ready).

        The file is fsynced before its rename, but the directory is not: a period's renames are
        made durable together by one directory fsync before its manifest
        (:meth:`write_manifest`, :meth:`sync_directory`). A reader never sees a torn file
        either way, and after a power cut the ready files (written after their data file, in
        the same journaled directory) never claim more than the data files hold.

        Returns:
            Whether a ready file for ``run_time_ms`` now exists (the frame holds the candle
            that ends then).

        Raises:
            StorageError: the data file could not be written (the old one is intact).
            UnsafeSymbol: ``symbol`` would escape the directory.
        """
        path = self.path(symbol)
        if frame.schema != CANDLE_SCHEMA:
            raise ValueError(f"{symbol}: frame schema {frame.schema} is not CANDLE_SCHEMA")
        write_frame_atomic(
            frame,
            path,
            self.save_type,
            durable=self.durable,
            pandas_index=PANDAS_INDEX,
            stages=stages,
            sync_dir=False,
        )
        if run_time_ms is None or not _holds_end(frame, run_time_ms):
            return False
        self._mark_ready(symbol, run_time_ms)
        if stages is not None:
            stages.mark("ready")
        return True

    def write_many(
        self,
        frames: Mapping[str, pl.DataFrame],
        run_time_ms: int | None,
        *,
        max_workers: int = 8,
    ) -> dict[str, bool | StorageError]:
        """:meth:`write` several symbols on a small thread pool (the disk work releases the
        GIL, so a burst of 500 closing candles is written several times faster than one by
        one). Returns, per symbol, what :meth:`write` returned or the StorageError it raised.
        """

        def one(item: tuple[str, pl.DataFrame]) -> bool | StorageError:
            try:
                return self.write(item[0], item[1], run_time_ms)
            except StorageError as exc:
                return exc

        items = list(frames.items())
        if len(items) <= 1 or max_workers <= 1:
            return {symbol: one((symbol, frame)) for symbol, frame in items}
        with ThreadPoolExecutor(min(max_workers, len(items))) as pool:
            return dict(zip(frames, pool.map(one, items), strict=True))

    def _ready_index(self) -> dict[str, dict[str, int | None]]:
        with self._lock:
            return self._ready_index_locked()

    def _ready_index_locked(self) -> dict[str, dict[str, int | None]]:
        if self._ready is None:
            index: dict[str, dict[str, int | None]] = {}
            for entry in os.scandir(self.directory):
                match = _READY_RE.match(entry.name)
                if match:
                    index.setdefault(match["symbol"], {})[entry.name] = _label_ms(
                        match["label"], self.tz
                    )
            self._ready = index
        return self._ready

    def ready_run_times(self, symbol: str) -> list[int]:
        """Run times (ms) for which ``symbol`` has a ready file."""
        return sorted(t for t in self._ready_index().get(symbol, {}).values() if t is not None)

    def _mark_ready(self, symbol: str, run_time_ms: int) -> None:
        """Announce ``run_time_ms`` for ``symbol`` and drop its older ready files.

        The previous period's ready file is *renamed* to the new name and its stamp rewritten
        in place, rather than a new file created beside it and the old one unlinked: creating
        a file costs a journal transaction (0.4 ms while the data files' fsyncs run), a rename
        is one step, and the swap is atomic (always exactly one ready file). Readers test
        existence (BMAC's protocol); the stamp, the write time, is informational and the same
        length every time, so its rewrite is a single 17-byte write. The first ready file of a
        symbol, or one whose predecessor vanished, is created the atomic way.
        """
        target = ready_file(self.directory, symbol, run_time_ms, self.tz)
        with self._lock:
            files = self._ready_index_locked().get(symbol, {})
            if any(t is not None and t > run_time_ms for t in files.values()):
                return  # a newer period is already announced
            stale = [
                name
                for name, t in files.items()
                if name != target.name and (t is None or t < run_time_ms)
            ]
            exists = target.name in files
        stamp = f"{self._stamp_ms() / 1000:.6f}".encode()
        reused = stale[-1] if stale and not exists else None  # renamed, or found gone
        if exists:
            done = _restamp(target, stamp)
        else:
            done = reused is not None and _rename_ready(self.directory / reused, target, stamp)
        if not done:
            write_bytes_atomic(target, stamp, durable=False)
        with self._lock:  # one symbol is never written concurrently: ``stale`` still holds
            files = self._ready_index_locked().setdefault(symbol, {})
            for name in stale:
                files.pop(name, None)
            files[target.name] = run_time_ms
        for name in stale:
            if name != reused:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / name).unlink()

    def _remove_ready(self, symbol: str) -> None:
        with self._lock:
            names = list(self._ready_index_locked().pop(symbol, {}))
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()

    def move_to_delisted(self, symbol: str) -> Path | None:
        """Move the symbol's file into ``_delisted/`` (never deleting history) and drop its
        ready files; returns the new path, or None when there was no file."""
        path = self.path(symbol)
        self._remove_ready(symbol)
        if not path.exists():
            return None
        target_dir = self.directory / DELISTED_DIR
        try:
            target_dir.mkdir(exist_ok=True)
            target = _unused_name(target_dir, symbol, self.extension)
            os.replace(path, target)
            if self.durable:
                fsync_dir(self.directory)
                fsync_dir(target_dir)
        except OSError as exc:
            raise StorageError(f"cannot move {path} to {target_dir}: {exc.strerror}") from exc
        return target

    def sync_directory(self) -> None:
        """fsync the candle directory: every rename so far survives a power cut (one sync for
        a whole period's writes instead of one per file).

        Raises:
            StorageError: the directory could not be synced.
        """
        if not self.durable:
            return
        try:
            fsync_dir(self.directory)
        except OSError as exc:
            raise StorageError(f"cannot sync {self.directory}: {exc.strerror}") from exc

    def write_manifest(
        self,
        run_time_ms: int,
        *,
        complete: Iterable[str],
        missing: Iterable[str],
        final: bool,
        lag_ms: float | None = None,
    ) -> Path:
        """Write the period manifest (schema in the module docstring) and prune old ones."""
        path = manifest_path(self.directory, run_time_ms, self.tz)
        content = {
            "format_version": FORMAT_VERSION,
            "interval": self.interval.name,
            "trade_type": self.trade_type,
            "run_time": run_time_label(run_time_ms, self.tz),
            "run_time_ms": run_time_ms,
            "run_time_iso": datetime.fromtimestamp(run_time_ms / 1000, UTC).isoformat(),
            "complete": sorted(complete),
            "missing": sorted(missing),
            "final": final,
            "written_at_ms": self._stamp_ms(),
            "lag_ms": lag_ms,
        }
        try:
            path.parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {path.parent}: {exc.strerror}") from exc
        self.sync_directory()  # the period's data renames are durable before it says so
        write_bytes_atomic(path, orjson.dumps(content), durable=self.durable)
        self._prune_manifests(path.name)
        return path

    def _prune_manifests(self, written: str) -> None:
        keep = min(MAX_MANIFESTS, 2 * self.num_candles)
        folder = self.directory / MANIFEST_DIR
        if self._manifests is None:
            self._manifests = sorted(e.name for e in os.scandir(folder) if _LABEL_RE.match(e.name))
        elif written not in self._manifests:
            self._manifests.append(written)
            self._manifests.sort()
        while len(self._manifests) > keep:
            with contextlib.suppress(FileNotFoundError):
                (folder / self._manifests.pop(0)).unlink()

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write ``bmac_meta.json`` (see ``Config.to_meta``)."""
        write_bytes_atomic(
            self.directory / META_FILE, orjson.dumps(meta, option=orjson.OPT_INDENT_2)
        )

    def cleanup_temp_files(self) -> int:
        """Remove temp files left by a killed writer (here and in ``_periods/``)."""
        return cleanup_temp_files(self.directory) + cleanup_temp_files(
            self.directory / MANIFEST_DIR
        )


def _rename_ready(stale: Path, target: Path, stamp: bytes) -> bool:
    """``stale`` renamed to ``target`` with ``stamp`` written in; False if ``stale`` is gone."""
    try:
        os.rename(stale, target)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot rename {stale} to {target.name}: {exc.strerror}") from exc
    return _restamp(target, stamp)


def _restamp(path: Path, stamp: bytes) -> bool:
    """Write ``stamp`` over the ready file ``path`` in place; False if it is gone."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        os.pwrite(fd, stamp, 0)
        if os.fstat(fd).st_size > len(stamp):  # a longer older stamp (BMAC's str(float))
            os.ftruncate(fd, len(stamp))
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return True


def _strictly_ascending(times: pl.Series) -> bool:
    ms = epoch_ms(times)
    return bool((ms.slice(1) > ms.slice(0, len(ms) - 1)).all())


def _holds_end(frame: pl.DataFrame, run_time_ms: int) -> bool:
    if frame.height == 0:
        return False
    ends = epoch_ms(frame["candle_end_time"])
    return bool(ends[-1] == run_time_ms or (ends == run_time_ms).any())


def _frame_problem(frame: pl.DataFrame) -> str | None:
    if frame.schema != CANDLE_SCHEMA:
        return f"not in the candle schema ({dict(frame.schema)})"
    if frame["candle_begin_time"].null_count():
        return "holding null candle times"
    if frame.height > 1 and not _strictly_ascending(frame["candle_begin_time"]):
        return "not sorted and unique by candle_begin_time"
    return None


def _last_open_ms(path: Path, save_type: SaveType) -> int | None:
    if save_type == "parquet":
        meta = pq.read_metadata(path)
        if meta.num_rows == 0:
            return None
        schema = meta.schema.to_arrow_schema()
        column = schema.get_field_index("candle_begin_time")
        if column < 0:
            raise ValueError("no candle_begin_time column")
        stats = meta.row_group(meta.num_row_groups - 1).column(column).statistics
        if stats is not None and stats.has_min_max:
            return _to_ms(stats.max)
        frame = pl.read_parquet(path, columns=["candle_begin_time"])
    else:
        with pa_ipc.open_file(path) as reader:
            if reader.num_record_batches == 0:
                return None
            batch = reader.get_batch(reader.num_record_batches - 1)
            frame = pl.from_arrow(batch.select(["candle_begin_time"]))  # type: ignore[assignment]
    if frame.height == 0:
        return None
    return int(epoch_ms(frame["candle_begin_time"])[-1])


def _to_ms(value: object) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int):
        return value
    raise ValueError(f"unexpected statistics value {value!r}")
