"""The soak's verdict: what is on disk against what the simulated exchange published.

Pure reading, after the recorder has stopped. Every selected symbol's file (``_delisted/`` for a
symbol the exchange delisted) is compared with the ground truth for the window it should hold:
the last ``num_candles`` published candles up to its newest one, which must reach the final
period (a delisted symbol: its last candle). Every ready file and every kept period manifest is
checked against the data it announces.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import polars as pl

from bmac_trio.binance.intervals import Interval
from bmac_trio.store.layout import DELISTED_DIR, EXTENSIONS, FLOAT_COLUMNS, MANIFEST_DIR

__all__ = ["CheckResult", "check_directory", "is_recorded_um_usdt_perp"]

#: REST row index of each float column of a candle file.
ROW_INDEX = dict(zip(FLOAT_COLUMNS, (1, 2, 3, 4, 5, 7, 8, 9, 10), strict=True))
_READY_RE = re.compile(r"^(?P<symbol>.+)_(?P<label>\d{8}_\d{6})\.ready$")
_MAX_EXAMPLES = 20


@dataclass(slots=True)
class CheckResult:
    """Counts of the final comparison (``examples`` says what went wrong, first ones)."""

    symbols_checked: int = 0
    candles_checked: int = 0
    missing: int = 0
    #: The part of ``missing`` that belongs to delisted symbols (their files in ``_delisted/``).
    missing_delisted: int = 0
    wrong: int = 0
    extra: int = 0
    #: Selected symbols with no file at all (their candles are also counted as missing).
    files_missing: int = 0
    #: Delisted symbols whose file stayed among the live ones.
    not_moved_aside: int = 0
    ready_checked: int = 0
    ready_violations: int = 0
    manifests_checked: int = 0
    manifest_entries_checked: int = 0
    manifest_violations: int = 0
    periods_complete: int = 0
    lags_ms: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(text)


def is_recorded_um_usdt_perp(spec: Any) -> bool:
    """The simulator symbols a ``usdt_perp`` recorder selects while they trade."""
    return spec.quote == "USDT" and spec.contract_type == "PERPETUAL" and not spec.static_status


def _read(path: Path, save_type: str) -> pl.DataFrame:
    data = path.read_bytes()
    return pl.read_parquet(data) if save_type == "parquet" else pl.read_ipc(data)


def _opens(frame: pl.DataFrame) -> list[int]:
    return frame["candle_begin_time"].dt.epoch("ms").to_list()


def _compare(
    result: CheckResult,
    symbol: str,
    frame: pl.DataFrame,
    truth: list[list[Any]],
    window: list[list[Any]],
    iv: Interval,
) -> None:
    """Missing: in ``window`` (what the file should hold), not in the file. Extra: in the
    file, never published. Wrong: in both, some value differs."""
    opens = _opens(frame)
    ends = frame["candle_end_time"].dt.epoch("ms").to_list()
    columns = {name: frame[name].to_list() for name in FLOAT_COLUMNS}
    published = {row[0]: row for row in truth}
    want = {row[0]: row for row in window}
    have = {t: i for i, t in enumerate(opens)}
    missing = [t for t in want if t not in have]
    extra = [t for t in have if t not in published]
    result.missing += len(missing)
    result.extra += len(extra)
    if missing:
        result.note(f"{symbol}: {len(missing)} missing, first {missing[:3]}")
    if extra:
        result.note(f"{symbol}: {len(extra)} extra, first {extra[:3]}")
    for t, row in published.items():
        i = have.get(t)
        if i is None:
            continue
        result.candles_checked += 1
        bad = [n for n in FLOAT_COLUMNS if columns[n][i] != float(row[ROW_INDEX[n]])]
        if ends[i] != iv.end(t):
            bad.append("candle_end_time")
        if bad:
            result.wrong += 1
            result.note(f"{symbol} @ {t}: {bad} differ")


def _label_ms(label: str, tz: ZoneInfo) -> int:
    return int(datetime.strptime(label, "%Y%m%d_%H%M%S").replace(tzinfo=tz).timestamp() * 1000)


_OPEN_SETS: dict[int, tuple[int, frozenset[int]]] = {}


def _holds(frame: pl.DataFrame | None, open_ms: int) -> bool | None:
    """Whether ``frame`` holds the candle opening at ``open_ms`` (None: before its window)."""
    if frame is None or frame.height == 0:
        return False
    cached = _OPEN_SETS.get(id(frame))
    if cached is None:
        opens = _opens(frame)
        cached = _OPEN_SETS[id(frame)] = (opens[0], frozenset(opens))
    first, opens_set = cached
    if open_ms < first:
        return None
    return open_ms in opens_set


def check_directory(
    exchange: Any,
    *,
    directory: Path,
    save_type: str,
    num_candles: int,
    interval: Interval,
    tz: ZoneInfo,
    final_run_time_ms: int,
    now_ms: int,
    selected: Callable[[Any], bool] = is_recorded_um_usdt_perp,
) -> CheckResult:
    """Compare the candle directory with ``exchange`` (the simulator's :class:`Exchange`).

    Args:
        exchange: the simulator's exchange state (ground truth, lifecycle).
        directory: ``<base>/<trade_type>_<interval>``.
        final_run_time_ms: the last period end every live symbol must have reached.
        now_ms: exchange time of the check (candles closed by then are published).
        selected: which simulator symbols the recorder records (while they trade).
    """
    result = CheckResult()
    ext = EXTENSIONS[save_type]
    iv = interval
    frames: dict[str, pl.DataFrame] = {}
    final_open = iv.add(final_run_time_ms, -1)
    # a file keeps num_candles rows; maintenance windows inside the window stretch it in time
    gaps = sum(iv.count(a, iv.add(iv.floor(b - 1), 0)) for a, b in exchange.life.maintenance)
    for symbol, spec in sorted(exchange.specs.items()):
        if not selected(spec):
            continue
        onboard = exchange.onboard_ms(spec)
        end = exchange.end_ms(spec)
        if onboard > final_open or (end is not None and end <= exchange.start_ms):
            continue
        delisted = end is not None and end <= now_ms
        main = directory / f"{symbol}{ext}"
        aside = sorted((directory / DELISTED_DIR).glob(f"{symbol}*{ext}"))
        aside = [p for p in aside if p.name == f"{symbol}{ext}" or p.name[len(symbol)] == "."]
        path = main if main.exists() else None
        if delisted:
            if main.exists():
                result.not_moved_aside += 1
                result.note(f"{symbol}: delisted at {end} but its file was not moved aside")
            elif aside:
                path = max(aside, key=lambda p: p.stat().st_mtime_ns)
        newest = final_open if end is None else min(final_open, iv.floor(end - 1))
        since = iv.add(newest, -(num_candles + gaps + 10))
        frame = _read(path, save_type) if path is not None else None
        if frame is not None and frame.height:
            since = min(since, _opens(frame)[0])
        truth = exchange.ground_truth(symbol, iv.name, now_ms, since)
        missing_before = result.missing
        if frame is None:
            result.files_missing += 1
            result.note(f"{symbol}: no file (delisted={delisted})")
            result.missing += len(truth[-num_candles:])
            if delisted:
                result.missing_delisted += result.missing - missing_before
            continue
        frames[symbol] = frame
        result.symbols_checked += 1
        opens = _opens(frame)
        target = truth[-1][0] if delisted and truth else final_open
        if opens and opens[-1] > target:
            target = opens[-1]
        window = [row for row in truth if row[0] <= target][-num_candles:]
        _compare(result, symbol, frame, truth, window, iv)
        if delisted:
            result.missing_delisted += result.missing - missing_before
    try:
        _check_ready(result, directory, frames, iv, tz)
        _check_manifests(result, exchange, directory, frames, iv, selected)
    finally:
        _OPEN_SETS.clear()
    return result


def _check_ready(
    result: CheckResult, directory: Path, frames: dict[str, pl.DataFrame], iv: Interval, tz: Any
) -> None:
    for name in sorted(os.listdir(directory)):
        match = _READY_RE.match(name)
        if match is None:
            continue
        result.ready_checked += 1
        run_time = _label_ms(match["label"], tz)
        if _holds(frames.get(match["symbol"]), iv.add(run_time, -1)) is False:
            result.ready_violations += 1
            result.note(f"{name}: the data file does not hold that period's candle")


def _check_manifests(
    result: CheckResult,
    exchange: Any,
    directory: Path,
    frames: dict[str, pl.DataFrame],
    iv: Interval,
    selected: Callable[[Any], bool],
) -> None:
    folder = directory / MANIFEST_DIR
    if not folder.exists():
        return
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json") or name.startswith("."):
            continue
        manifest = orjson.loads((folder / name).read_bytes())
        result.manifests_checked += 1
        run_time = manifest["run_time_ms"]
        complete, missing = manifest["complete"], manifest["missing"]
        if not missing:
            result.periods_complete += 1
            if manifest.get("lag_ms") is not None:
                result.lags_ms.append(manifest["lag_ms"])
        if set(complete) & set(missing):
            result.manifest_violations += 1
            result.note(f"manifest {name}: symbols both complete and missing")
        candle = iv.add(run_time, -1)
        for symbol in complete:
            result.manifest_entries_checked += 1
            spec = exchange.specs.get(symbol)
            if spec is None or not selected(spec):
                result.manifest_violations += 1
                result.note(f"manifest {name}: {symbol} is not a recorded symbol")
                continue
            if not exchange.exists(spec, iv, candle):
                continue  # maintenance: the exchange published no candle for it
            if _holds(frames.get(symbol), candle) is False:
                result.manifest_violations += 1
                result.note(f"manifest {name}: {symbol} announced complete, candle not on disk")
