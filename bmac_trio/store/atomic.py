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
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import polars as pl

from bmac_trio.errors import StorageError
from bmac_trio.store.layout import SaveType

__all__ = [
    "TEMP_SUFFIX",
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


def _atomic(path: Path, write: Callable[[Path], None], durable: bool) -> None:
    path = Path(path)
    try:
        fd, tmp = _create_temp(path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        os.close(fd)
        write(tmp)
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError | pl.exceptions.PolarsError):
            cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise StorageError(f"cannot write {path}: {cause}") from exc
        raise
    if durable:
        try:
            fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot sync directory of {path}: {exc.strerror}") from exc


def write_frame_atomic(
    df: pl.DataFrame, path: Path, save_type: SaveType, *, durable: bool = True
) -> None:
    """Write ``df`` as parquet (``.pqt``) or feather/Arrow IPC v2 (``.fea``), atomically.

    Raises:
        StorageError: the disk refused (full, read-only, permissions); the old file is intact.
    """
    if save_type == "parquet":
        _atomic(path, lambda tmp: df.write_parquet(tmp, compression=_PARQUET_COMPRESSION), durable)
    elif save_type == "feather":
        _atomic(path, lambda tmp: df.write_ipc(tmp, compression=_FEATHER_COMPRESSION), durable)
    else:
        raise ValueError(f"unknown save_type {save_type!r}")


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (JSON, ready files).

    Raises:
        StorageError: the disk refused; the old file is intact.
    """
    _atomic(path, lambda tmp: tmp.write_bytes(data), durable)


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
