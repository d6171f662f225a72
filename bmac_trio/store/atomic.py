"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

The data goes to a temp file in the same directory (``.<name>.<random>.tmp``, invisible to
``*.pqt`` globs), created with mode 0666 so that the kernel applies the process umask (0644
under 022, as BMAC's plain writes; ``tempfile.mkstemp`` would force 0600 and lock the readers'
user out), is flushed and fsynced, then renamed over the old file with ``os.replace``,
and the directory is fsynced. A failure of any step raises :class:`StorageError` naming the
path and the cause, removes the temp file and leaves the previous file as it was. A process
killed half-way leaves at most a temp file, which :func:`cleanup_temp_files` removes at start.

``durable=False`` skips the fsyncs: still atomic for readers and against a killed process, but
not against a power cut.

``write_frame_atomic(..., pandas_index="candle_end_time")`` also stores pandas' index metadata
(the ``pandas`` schema key pyarrow writes for ``DataFrame.to_parquet``), so a plain
``pd.read_parquet(path)`` / ``pd.read_feather(path)`` gives a frame indexed by that column, as
BMAC's files did; polars and pyarrow readers ignore it and still see the column.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq

from bmac_trio.errors import StorageError
from bmac_trio.store.layout import SaveType

__all__ = [
    "TEMP_SUFFIX",
    "WriteStages",
    "cleanup_temp_files",
    "fsync_dir",
    "wall_ms",
    "write_bytes_atomic",
    "write_frame_atomic",
]

TEMP_SUFFIX: Final = ".tmp"
_PARQUET_COMPRESSION: Final = "snappy"  # pandas' default, as BMAC wrote
_FEATHER_COMPRESSION: Final = "lz4"  # pandas' to_feather default, as BMAC wrote
#: Asked of the kernel, which removes the umask's bits (what ``open(path, "w")`` does).
_FILE_MODE: Final = 0o666


class WriteStages:
    """Where one write's time went: named marks on ``time.perf_counter`` (measurement only).

    Passed down optionally by the recorder so the benchmark can say which stage of the write
    path a slow period spent its time in; ``None`` costs nothing.
    """

    __slots__ = ("marks",)

    def __init__(self, start: str = "start") -> None:
        self.marks: list[tuple[str, float]] = [(start, time.perf_counter())]

    def mark(self, stage: str) -> None:
        """The stage that ends now."""
        self.marks.append((stage, time.perf_counter()))

    def durations(self) -> dict[str, float]:
        """Seconds per stage, in order (a stage marked twice adds up)."""
        out: dict[str, float] = {}
        for (_, before), (stage, after) in zip(self.marks, self.marks[1:], strict=False):
            out[stage] = out.get(stage, 0.0) + after - before
        return out


def wall_ms() -> int:
    """Wall-clock ms: the write time BMAC puts in ready files (not exchange time)."""
    return time.time_ns() // 1_000_000


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so that a rename in it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty temp file beside ``path``; its mode is 0666 minus the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            return os.open(tmp, flags, _FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name beside {path}")


def _atomic(
    path: Path,
    write: Callable[[Path, int], None],
    durable: bool,
    stages: WriteStages | None = None,
    sync_dir: bool = True,
) -> None:
    path = Path(path)
    try:
        fd, tmp = _create_temp(path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        try:
            write(tmp, fd)  # encoders write by path, natively; bytes through the descriptor
            if stages is not None:
                stages.mark("encode")
            if durable:
                os.fsync(fd)  # the temp file's inode, whichever descriptor wrote it
                if stages is not None:
                    stages.mark("fsync")
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if stages is not None:
            stages.mark("rename")
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError | pl.exceptions.PolarsError | pa.ArrowException):
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StorageError(f"cannot write {path}: {cause}") from exc
        raise
    if durable and sync_dir:
        try:
            fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot sync directory of {path}: {exc.strerror}") from exc
        if stages is not None:
            stages.mark("dir_fsync")


@functools.lru_cache(maxsize=16)
def _pandas_metadata(schema: pa.Schema, index: str) -> bytes:
    """pandas' ``pandas`` schema metadata for a frame indexed by the column ``index``.

    Built by hand (pandas is not a dependency of the recorder) for the types candle files hold:
    timestamps and numbers. Cached: every candle file has the same schema, and building it
    cost 0.09 ms of each of a period's 447 writes.

    Raises:
        ValueError: a column of another type.
    """
    columns = []
    for field in schema:
        kind = field.type
        if pa.types.is_timestamp(kind):
            numpy_type = f"datetime64[{kind.unit}]"
            pandas_type = "datetimetz" if kind.tz else "datetime"
            extra = {"timezone": kind.tz} if kind.tz else None
        elif pa.types.is_floating(kind) or pa.types.is_integer(kind):
            # by name, not kind.to_pandas_dtype(): that needs numpy, which `pip install .` lacks
            name = f"float{kind.bit_width}" if pa.types.is_floating(kind) else str(kind)
            numpy_type = pandas_type = name
            extra = None
        else:
            raise ValueError(f"no pandas index metadata for column {field.name} ({kind})")
        columns.append(
            {
                "name": field.name,
                "field_name": field.name,
                "pandas_type": pandas_type,
                "numpy_type": numpy_type,
                "metadata": extra,
            }
        )
    return orjson.dumps(
        {
            "index_columns": [index],
            "column_indexes": [],
            "columns": columns,
            "creator": {"library": "bmac-trio"},
            "pandas_version": "2.2.1",
        }
    )


def _encode_with_pandas_index(df: pl.DataFrame, save_type: SaveType, index: str) -> pa.Buffer:
    """The file's bytes, encoded in memory, to be written through the temp file's descriptor
    (the one that is fsynced) rather than by reopening it by path."""
    table = df.to_arrow()
    table = table.replace_schema_metadata({"pandas": _pandas_metadata(table.schema, index)})
    sink = pa.BufferOutputStream()
    if save_type == "parquet":
        # no dictionary pages: float candles do not repeat, and skipping them is faster
        pq.write_table(table, sink, compression=_PARQUET_COMPRESSION, use_dictionary=False)
    else:
        options = pa_ipc.IpcWriteOptions(compression=_FEATHER_COMPRESSION)
        with pa_ipc.new_file(sink, table.schema, options=options) as writer:
            writer.write_table(table)
    return sink.getvalue()


def write_frame_atomic(
    df: pl.DataFrame,
    path: Path,
    save_type: SaveType,
    *,
    durable: bool = True,
    pandas_index: str | None = None,
    stages: WriteStages | None = None,
    sync_dir: bool = True,
) -> None:
    """Write ``df`` as parquet (``.pqt``) or feather/Arrow IPC v2 (``.fea``), atomically.

    ``pandas_index`` names a column plain pandas readers should make the index (module
    docstring). ``sync_dir=False`` leaves the directory's fsync to the caller, who syncs it
    once for a batch of writes (the file itself is still fsynced before the rename).

    Raises:
        StorageError: the disk refused (full, read-only, permissions); the old file is intact.
    """
    if save_type not in ("parquet", "feather"):
        raise ValueError(f"unknown save_type {save_type!r}")
    write: Callable[[Path], None]
    if pandas_index is not None:
        index = pandas_index

        def write(_tmp: Path, fd: int) -> None:
            _write_all(fd, _encode_with_pandas_index(df, save_type, index))
    elif save_type == "parquet":

        def write(tmp: Path, _fd: int) -> None:
            df.write_parquet(tmp, compression=_PARQUET_COMPRESSION)
    else:

        def write(tmp: Path, _fd: int) -> None:
            df.write_ipc(tmp, compression=_FEATHER_COMPRESSION)

    _atomic(path, write, durable, stages, sync_dir)


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (JSON, ready files).

    Raises:
        StorageError: the disk refused; the old file is intact.
    """
    _atomic(path, lambda _tmp, fd: _write_all(fd, data), durable)


def _write_all(fd: int, data: bytes | pa.Buffer) -> None:
    """All of ``data`` through ``fd``, the descriptor that created the temp file (the one that
    is fsynced), so the temp file is opened once."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def cleanup_temp_files(directory: Path) -> int:
    """Remove temp files a killed writer left in ``directory``; returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed
