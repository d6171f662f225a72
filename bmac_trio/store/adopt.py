"""A changed ``save_type`` keeps the history: files of the other type are adopted at start.

Switching a directory from parquet to feather (or back) used to download every symbol's whole
history again and leave the old files beside the new ones, where a reader still configured
for the old type read them, stale, for ever. At start, before anything is read, each
``<SYMBOL>.<other ext>`` is read once, checked like any data file, written in the configured
type (atomically), and only then moved into ``_other_save_type/`` (never deleted). A process
killed in between leaves both files: the next start sees the new one and moves the old aside.
A file that cannot be used is moved aside too, and its symbol is downloaded as if new.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bmac_trio.binance.symbols import is_safe_symbol
from bmac_trio.errors import StorageError
from bmac_trio.store.atomic import fsync_dir, write_frame_atomic
from bmac_trio.store.candles import CandleStore, _frame_problem, _parse_frame
from bmac_trio.store.layout import EXTENSIONS, OTHER_SAVE_TYPE_DIR, SaveType

__all__ = ["adopt_other_save_type"]

LOGGER = logging.getLogger("bmac_trio.storage")


def adopt_other_save_type(store: CandleStore) -> int:
    """Convert the other save type's data files of ``store`` and move them aside.

    Blocking: call it through ``trio.to_thread.run_sync``. Returns how many were adopted.

    Raises:
        StorageError: a file could not be written or moved (the old file is intact).
    """
    adopted = moved = 0
    for other in (t for t in EXTENSIONS if t != store.save_type):
        for path in _data_files(store.directory, EXTENSIONS[other]):
            symbol = path.name[: -len(EXTENSIONS[other])]
            target = store.path(symbol)
            if not target.exists():
                problem = _convert(path, other, store)  # type: ignore[arg-type]
                if problem is None:
                    adopted += 1
                else:
                    LOGGER.warning("%s is %s: not adopted, moved aside", path, problem)
            _move_aside(path, store.directory / OTHER_SAVE_TYPE_DIR)
            moved += 1
    if moved:
        if store.durable:
            fsync_dir(store.directory)
        LOGGER.warning(
            "save_type is now %s: adopted %d of %d data files of the other save type as "
            "history; the originals are in %s/",
            store.save_type,
            adopted,
            moved,
            OTHER_SAVE_TYPE_DIR,
        )
    return adopted


def _data_files(directory: Path, extension: str) -> list[Path]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return sorted(
        Path(e.path)
        for e in entries
        if e.name.endswith(extension)
        and not e.name.startswith(".")
        and e.is_file()
        and is_safe_symbol(e.name[: -len(extension)])
    )


def _convert(path: Path, save_type: SaveType, store: CandleStore) -> str | None:
    """Write ``path``'s candles in the store's type; why it cannot be used, or None."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        frame = _parse_frame(data, save_type)
    except Exception as exc:  # polars raises many types for a bad file
        return f"unreadable ({type(exc).__name__})"
    problem = _frame_problem(frame)
    if problem is not None:
        return problem
    target = store.path(path.name[: -len(EXTENSIONS[save_type])])
    write_frame_atomic(
        frame.tail(store.num_candles), target, store.save_type, durable=store.durable
    )
    return None


def _move_aside(path: Path, folder: Path) -> None:
    try:
        folder.mkdir(exist_ok=True)
        target = folder / path.name
        n = 1
        while target.exists():
            target = folder / f"{path.stem}.{n}{path.suffix}"
            n += 1
        os.replace(path, target)
    except OSError as exc:
        raise StorageError(f"cannot move {path} to {folder}: {exc.strerror or exc}") from exc
