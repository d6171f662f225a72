"""Read-only inspection of a candle directory, for ``bmac-trio check``.

Each data file is read once, as the recorder reads it at start, and judged without changing
anything: a corrupt file (unreadable, not the candle schema, unsorted) is reported, never moved
aside; a file whose last candle is well behind the directory's newest is reported as stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bmac_trio.binance.candles import epoch_ms
from bmac_trio.binance.intervals import Interval
from bmac_trio.binance.symbols import is_safe_symbol
from bmac_trio.store.candles import _frame_problem, _parse_frame
from bmac_trio.store.layout import EXTENSIONS, SaveType

__all__ = ["DirectoryReport", "inspect_candle_dir"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryReport:
    """What :func:`inspect_candle_dir` found."""

    files: int
    #: symbol -> why its file cannot be used (the recorder would move it aside and refetch)
    corrupt: dict[str, str]
    #: symbol -> last candle open time (ms) of files behind the newest by more than a candle
    stale: dict[str, int]
    #: the newest candle end (ms) of any file, None without readable files
    newest_end_ms: int | None
    #: data files of the other save type (a recorder start adopts them)
    other_save_type: int


def inspect_candle_dir(directory: Path, save_type: SaveType, interval: Interval) -> DirectoryReport:
    """Read every ``<SYMBOL><ext>`` of ``directory`` once; nothing is written or moved."""
    directory = Path(directory)
    extension = EXTENSIONS[save_type]
    other = {ext for kind, ext in EXTENSIONS.items() if kind != save_type}
    last: dict[str, int] = {}
    corrupt: dict[str, str] = {}
    files = others = 0
    paths = sorted(directory.iterdir()) if directory.is_dir() else []
    for path in paths:
        symbol, ext = path.stem, path.suffix
        if path.name.startswith(".") or not path.is_file() or not is_safe_symbol(symbol):
            continue
        if ext in other:
            others += 1
            continue
        if ext != extension:
            continue
        files += 1
        try:
            frame = _parse_frame(path.read_bytes(), save_type)
        except Exception as exc:  # polars raises many types for a bad file
            corrupt[symbol] = f"unreadable ({type(exc).__name__}: {exc})"[:200]
            continue
        problem = _frame_problem(frame)
        if problem:
            corrupt[symbol] = problem[:200]
        elif frame.height == 0:
            corrupt[symbol] = "empty (no candles)"
        else:
            last[symbol] = int(epoch_ms(frame["candle_begin_time"])[-1])
    newest = max(last.values(), default=None)
    behind = None if newest is None else interval.add(newest, -1)
    stale = {} if behind is None else {s: t for s, t in last.items() if t < behind}
    return DirectoryReport(
        files=files,
        corrupt=corrupt,
        stale=dict(sorted(stale.items())),
        newest_end_ms=None if newest is None else interval.end(newest),
        other_save_type=others,
    )
