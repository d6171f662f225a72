"""``MarketWindow``: every symbol's last ``num_candles`` closed candles in memory, as numpy arrays.

Why: per period the kit used to read every symbol's file and recompute each factor over the
whole history. With the candles arriving in memory (the live bus), the window holds what the
files hold, so streaming factors can read just the rows they need.

Layout: one 2-D array per candle column, a ring per symbol: ``symbols x window`` as
:meth:`MarketWindow.last` returns it, stored time-major (``(num_candles + mirror) x slots``,
C order) so that a period's candles of every symbol are one contiguous row and reductions over
time run vectorised across symbols. The ring position of a symbol's newest candle is fixed by
its end time (``end_ms // interval_ms % num_candles``), so every symbol whose newest candle
ends at the same ``run_time`` has it at the same position, and "the last ``k`` candles of
every symbol" is one 2-D slice. The first ``mirror`` positions are written twice (again after
the ring), so such a slice never wraps (for ``k <= mirror + 1``). Positions holding no candle
hold NaN (times: 0); that is how factors see "fewer than ``n`` candles".

Appending a candle right after a symbol's newest is O(1) and vectorised over symbols, and so is
ignoring a candle already held (a subscriber's heal applies the last periods again); anything
else (a new symbol, a candle filling a gap, a gap after the newest, several candles of one
symbol at once) rewrites that symbol's ring (O(num_candles)) and bumps its generation.

Memory: ``11 columns x 8 bytes x (num_candles + mirror)`` per symbol slot; 500 symbols x
(1500 + 512) is ~89 MB (1500 alone would be ~66 MB; the mirror buys copy-free slices).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import orjson
import polars as pl

from bmac_kit._reader import CandleFileReader, MarketFrame, read_market
from bmac_trio.binance.candles import CANDLE_SCHEMA, FLOAT_COLUMNS, epoch_ms
from bmac_trio.binance.intervals import Interval, parse_interval
from bmac_trio.store.layout import META_FILE

__all__ = ["MarketWindow"]

LOGGER = logging.getLogger("bmac_kit.window")
TIME_COLUMNS = ("candle_begin_time", "candle_end_time")
_TIME = pl.Datetime("ms", "UTC")
#: ``last_end`` of a slot without candles.
NO_TIME = np.iinfo(np.int64).min
DEFAULT_MIRROR = 512


def _fixed_interval(interval: str | Interval) -> Interval:
    parsed = interval if isinstance(interval, Interval) else parse_interval(interval)
    if parsed.months or parsed.ms <= 0:
        msg = f"MarketWindow needs a fixed-length interval, got {parsed.name!r}"
        raise ValueError(msg)
    return parsed


#: Symbol lists at least this long have their slots cached (a period's, the whole market's).
_CACHED_LOOKUP_MIN: Final = 64


class MarketWindow:
    """Every symbol's last ``num_candles`` closed candles as columnar numpy arrays shared across
    symbols (one 2-D array per column: symbols x window, a ring per symbol).

    Args:
        num_candles: candles kept per symbol (the recorder's ``num_candles``).
        interval: the candle interval (``"5m"``); months are not supported.
        mirror: how many ring positions are written twice so slices of up to ``mirror + 1``
            rows never wrap (default ``min(num_candles, 512)``).
    """

    def __init__(self, num_candles: int, interval: str | Interval, *, mirror: int | None = None):
        if num_candles < 1:
            msg = f"num_candles must be at least 1, got {num_candles}"
            raise ValueError(msg)
        self.num_candles = int(num_candles)
        self.interval = _fixed_interval(interval)
        self.interval_ms = self.interval.ms
        self.mirror = min(self.num_candles, DEFAULT_MIRROR if mirror is None else int(mirror))
        self._width = self.num_candles + self.mirror
        self._slots: dict[str, int] = {}
        self._slots_cache: dict[tuple[str, ...], np.ndarray] = {}
        #: The last long symbol column looked up, and its slots (see :meth:`_slots_of_column`).
        self._column_slots: tuple[pl.Series, np.ndarray] | None = None
        self._names: list[str | None] = []
        self._free: list[int] = []
        self._floats: dict[str, np.ndarray] = {}
        self._times: dict[str, np.ndarray] = {}
        self._count = np.zeros(0, dtype=np.int64)
        self._last_end = np.zeros(0, dtype=np.int64)
        self._generation = np.zeros(0, dtype=np.int64)
        self._grow(0)

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_directory(
        cls,
        base_dir: str | os.PathLike[str],
        *,
        num_candles: int | None = None,
        mirror: int | None = None,
    ) -> MarketWindow:
        """A window filled from the recorder's data directory (each file read once).

        ``base_dir`` is the recorder's base directory or its candle directory; the candle
        directory's ``bmac_meta.json`` gives interval, save type and ``num_candles``.

        Raises:
            FileNotFoundError: no candle directory with a ``bmac_meta.json`` there.
        """
        reader = CandleFileReader(candle_dir_of(Path(base_dir)))
        if reader.interval is None:
            msg = f"{reader.dir / META_FILE} names no interval"
            raise FileNotFoundError(msg)
        keep = num_candles or int(reader.meta.get("num_candles") or 1500)
        window = cls(keep, reader.interval, mirror=mirror)
        symbols = reader.get_all_symbols()
        market = read_market({s: reader.symbol_path(s) for s in symbols})
        window.load(market)
        LOGGER.info(
            "window of %d symbols x %d candles from %s (%.1f MB)",
            len(window.symbols()),
            keep,
            reader.dir,
            window.nbytes / 1e6,
        )
        return window

    def load(self, market: MarketFrame) -> None:
        """Merge several symbols' candles (each symbol's rows contiguous), e.g. files just read."""
        if market.frame.is_empty():
            return
        arrays = _arrays(market.frame)  # converted once, sliced per symbol below
        start = 0
        for symbol, rows in zip(market.symbols, market.rows, strict=True):
            self._merge(symbol, {c: a[start : start + rows] for c, a in arrays.items()})
            start += rows

    # --- the contract -----------------------------------------------------------------------
    def apply(self, candles: pl.DataFrame) -> None:
        """Add closed candles (``symbol`` + the candle columns), in any order.

        A candle already held is ignored; a symbol not held yet is added (a listing); only
        each symbol's last ``num_candles`` candles are kept, as in its file.
        """
        if candles.is_empty():
            return
        if candles.height <= len(self._slots) and self._all_held(candles):
            return  # a period's frame whose candles came one by one already
        values = _arrays(candles)
        if candles.height > max(64, 2 * len(self._slots)):  # a bulk load: symbol by symbol
            symbols = candles.get_column("symbol")
            order = symbols.arg_sort()
            runs = symbols.gather(order).rle().struct.unnest()
            order_np, start = order.to_numpy(), 0
            for length, symbol in runs.iter_rows():
                rows = np.sort(order_np[start : start + length])  # in the order sent
                start += length
                self._merge(symbol, {c: a[rows] for c, a in values.items()})
            return
        names = candles.get_column("symbol").to_list()
        ends = values["candle_end_time"]
        slots = self.slots_of(names)
        known = slots >= 0
        last = np.full(len(names), NO_TIME)
        last[known] = self._last_end[slots[known]]
        fast = known & _appears_once(names) & (ends == last + self.interval_ms)
        if fast.all():
            self._append(slots, ends, values)
            return
        if fast.any():
            self._append(slots[fast], ends[fast], {c: a[fast] for c, a in values.items()})
        # candles held already (the same again, a heal's replay) are ignored right here: a
        # candle's ring position is fixed by its end time, so one lookup tells
        held = np.zeros(len(names), dtype=bool)
        held[known] = self._ring_ends(slots[known], ends[known]) == ends[known]
        rest: dict[str, list[int]] = {}
        for i in np.flatnonzero(~(fast | held)).tolist():
            rest.setdefault(names[i], []).append(i)
        for symbol, rows in rest.items():
            self._merge(symbol, {c: a[rows] for c, a in values.items()})

    def _all_held(self, candles: pl.DataFrame) -> bool:
        """Each row is its symbol's newest candle held (checked on two columns only)."""
        ends = epoch_ms(candles.get_column("candle_end_time")).to_numpy()
        slots = self._slots_of_column(candles.get_column("symbol"))
        return bool((slots >= 0).all() and (self._last_end[slots] == ends).all())

    def _slots_of_column(self, symbols: pl.Series) -> np.ndarray:
        """:meth:`slots_of` for a frame's ``symbol`` column: the period's column, met again
        every period, is compared in polars (making a list of 500 names costs 40 us)."""
        last = self._column_slots
        if last is not None and last[0].equals(symbols):
            return last[1].copy()
        slots = self.slots_of(symbols.to_list())
        if len(symbols) >= _CACHED_LOOKUP_MIN:
            self._column_slots = (symbols, slots.copy())
        return slots

    def _forget_lookups(self) -> None:
        """A symbol gained or lost its slot: the cached lookups are stale."""
        self._slots_cache.clear()
        self._column_slots = None

    def remove(self, symbol: str) -> None:
        """Forget ``symbol`` (delisted); its slot is reused by the next listing."""
        slot = self._slots.pop(symbol, None)
        if slot is None:
            return
        self._forget_lookups()
        self._clear(slot)
        self._names[slot] = None
        self._free.append(slot)

    def symbols(self) -> list[str]:
        """The symbols held, sorted."""
        return sorted(self._slots)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def last_end_time(self, symbol: str) -> datetime | None:
        """End time of ``symbol``'s newest candle (UTC), or None if the window has none."""
        slot = self._slots.get(symbol)
        if slot is None or not self._count[slot]:
            return None
        return datetime.fromtimestamp(int(self._last_end[slot]) / 1000, UTC)

    def frame(self, symbol: str) -> pl.DataFrame:
        """``symbol``'s window, oldest first, with the candle files' schema.

        Raises:
            KeyError: the symbol is not held.
        """
        return _frame(self._ordered(self._slots[symbol]))

    def period_frame(self, run_time: datetime | int) -> pl.DataFrame:
        """One row per symbol holding the candle that ends at ``run_time``, sorted by symbol."""
        run_ms = _ms(run_time)
        held = {s: self._position_of(slot, run_ms) for s, slot in self._slots.items()}
        names = sorted(s for s, pos in held.items() if pos is not None)
        slots = np.array([self._slots[s] for s in names], dtype=np.int64)
        pos = np.array([held[s] for s in names], dtype=np.int64)
        columns = {"symbol": pl.Series("symbol", names, dtype=pl.String)}
        columns.update(_series(self._all_columns(), slots, pos))
        return pl.DataFrame(columns)

    @property
    def nbytes(self) -> int:
        """Memory held by the window's arrays, in bytes."""
        arrays = [*self._floats.values(), *self._times.values()]
        arrays += [self._count, self._last_end, self._generation]
        return sum(a.nbytes for a in arrays)

    # --- what streaming factors read ----------------------------------------------------------
    @property
    def used_slots(self) -> int:
        """Slots ``0 .. used_slots`` may hold symbols (slices cover them all)."""
        return len(self._names)

    def slot(self, symbol: str) -> int:
        """The array row of ``symbol``.

        Raises:
            KeyError: the symbol is not held.
        """
        return self._slots[symbol]

    def slots_of(self, symbols: Iterable[str]) -> np.ndarray:
        """The array row of each symbol, -1 for a symbol not held (a new array)."""
        key = tuple(symbols)
        slots = self._slots_cache.get(key)  # the same whole-market lists come every period
        if slots is None:
            get = self._slots.get
            slots = np.fromiter((get(s, -1) for s in key), np.int64, len(key))
            # only long lists: the bus's small batches of candles differ every time, and
            # caching them evicted the period's list (500 lookups again, 0.1 ms)
            if _CACHED_LOOKUP_MIN <= len(key) <= 2 * len(self._slots) + 64:
                if len(self._slots_cache) >= 8:
                    self._slots_cache.clear()
                self._slots_cache[key] = slots
        return slots.copy()

    def counts(self) -> np.ndarray:
        """Candles held per slot (read-only view)."""
        return _readonly(self._count)

    def last_ends(self) -> np.ndarray:
        """End time (epoch ms) of each slot's newest candle; ``NO_TIME`` when empty."""
        return _readonly(self._last_end)

    def generations(self) -> np.ndarray:
        """Per slot, bumped whenever its candles change other than by one append."""
        return _readonly(self._generation)

    def position(self, end_ms: int) -> int:
        """Ring position of the newest candle of every symbol whose newest ends at ``end_ms``."""
        return (end_ms // self.interval_ms) % self.num_candles

    def last(self, column: str, k: int, end_ms: int) -> np.ndarray:
        """The last ``k`` candles' ``column`` of every slot whose newest ends at ``end_ms``.

        Shape ``(used_slots, k)``, oldest first; a view when ``k <= mirror + 1`` (do not
        write to it). Rows of other slots hold unrelated values; missing candles are NaN.
        """
        if k > self.num_candles:
            msg = f"only {self.num_candles} candles are held, {k} asked"
            raise ValueError(msg)
        array = self._column(column)[:, : self.used_slots]
        head = self.position(end_ms)
        start = head - k + 1
        if start >= 0:
            return _readonly(array[start : head + 1].T)
        if head < self.mirror:
            width = self.num_candles
            return _readonly(array[width + start : width + head + 1].T)
        positions = np.arange(start, head + 1) % self.num_candles
        return np.take(array, positions, axis=0).T

    def ring(self, column: str) -> np.ndarray:
        """``column``'s ring of every slot, ``(used_slots, num_candles)`` (read-only view)."""
        return _readonly(self._column(column)[: self.num_candles, : self.used_slots].T)

    def ordered(self, symbol: str, column: str) -> np.ndarray:
        """``symbol``'s candles' ``column``, oldest first (a copy)."""
        return self._ordered(self._slots[symbol])[column]

    def ordered_slot(self, slot: int, column: str) -> np.ndarray:
        """The candles' ``column`` of the symbol in ``slot``, oldest first (a copy)."""
        return self._column(column)[self._positions(slot), slot]

    def market_frame(
        self, symbols: Iterable[str], run_time: datetime | int, *, last: int | None = None
    ) -> MarketFrame:
        """The symbols' candles up to ``run_time`` (at most ``last`` each) as one frame.

        The input the batch factors (``bmac_kit._factors``) take; symbols without candles up
        to ``run_time`` are left out. Symbols whose newest candle ends at ``run_time`` are cut
        out of the arrays in one vectorised pass, the others one by one.
        """
        run_ms = _ms(run_time)
        keep = min(last or self.num_candles, self.num_candles)
        aligned, others = [], []
        for symbol in symbols:
            slot = self._slots[symbol]
            (aligned if self._last_end[slot] == run_ms else others).append(symbol)
        names, parts, rows = [], [], []
        if aligned:
            slots = np.array([self._slots[s] for s in aligned], dtype=np.int64)
            counts = np.minimum(self._count[slots], keep)
            valid = np.arange(keep) >= keep - counts[:, None]
            arrays = {c: self.last(c, keep, run_ms)[slots][valid] for c in CANDLE_SCHEMA.names()}
            names += aligned
            parts.append(_frame(arrays))
            rows += counts.tolist()
        for symbol in others:
            arrays = self._ordered(self._slots[symbol])
            stop = int(np.searchsorted(arrays["candle_end_time"], run_ms, side="right"))
            if stop:
                start = max(0, stop - keep)
                names.append(symbol)
                parts.append(_frame({c: a[start:stop] for c, a in arrays.items()}))
                rows.append(stop - start)
        frame = pl.concat(parts) if parts else pl.DataFrame(schema=CANDLE_SCHEMA)
        return MarketFrame(frame, names, rows)

    def rows_at(self, slots: np.ndarray, end_ms: int) -> dict[str, np.ndarray]:
        """The candle ending at ``end_ms`` of each slot whose newest candle ends then."""
        head = self.position(end_ms)
        return {c: a[head, slots] for c, a in self._all_columns().items()}

    # --- internals ----------------------------------------------------------------------------
    def _column(self, column: str) -> np.ndarray:
        array = self._floats.get(column)
        return array if array is not None else self._times[column]

    def _all_columns(self) -> dict[str, np.ndarray]:
        return {c: self._column(c) for c in CANDLE_SCHEMA.names()}

    def _grow(self, capacity: int) -> None:
        old = len(self._count)
        if capacity <= old and self._floats:
            return
        shape = (self._width, capacity)
        for column in FLOAT_COLUMNS:
            array = np.full(shape, np.nan)
            if column in self._floats:
                array[:, :old] = self._floats[column]
            self._floats[column] = array
        for column in TIME_COLUMNS:
            times = np.zeros(shape, dtype=np.int64)
            if column in self._times:
                times[:, :old] = self._times[column]
            self._times[column] = times
        self._count = np.concatenate([self._count, np.zeros(capacity - old, np.int64)])
        self._last_end = np.concatenate([self._last_end, np.full(capacity - old, NO_TIME)])
        self._generation = np.concatenate([self._generation, np.zeros(capacity - old, np.int64)])

    def _new_slot(self, symbol: str) -> int:
        if self._free:
            slot = min(self._free)
            self._free.remove(slot)
            self._names[slot] = symbol
        else:
            slot = len(self._names)
            self._names.append(symbol)
            if slot >= len(self._count):
                self._grow(max(16, 2 * len(self._count)))
        self._slots[symbol] = slot
        self._forget_lookups()
        return slot

    def _clear(self, slot: int) -> None:
        for array in self._floats.values():
            array[:, slot] = np.nan
        for array in self._times.values():
            array[:, slot] = 0
        self._count[slot] = 0
        self._last_end[slot] = NO_TIME
        self._generation[slot] += 1

    def _ring_rows(self, ends: np.ndarray) -> np.ndarray:
        """:meth:`position` of each of ``ends``."""
        return (ends // self.interval_ms) % self.num_candles

    def _ring_ends(self, slots: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """The end time held at each ``ends``' ring position of ``slots`` (0 where none)."""
        return self._times["candle_end_time"][self._ring_rows(ends), slots]

    def _positions(self, slot: int) -> np.ndarray:
        count = int(self._count[slot])
        head = self.position(int(self._last_end[slot]))
        return np.arange(head - count + 1, head + 1) % self.num_candles

    def _ordered(self, slot: int) -> dict[str, np.ndarray]:
        positions = self._positions(slot)
        return {c: a[positions, slot] for c, a in self._all_columns().items()}

    def _position_of(self, slot: int, end_ms: int) -> int | None:
        last = int(self._last_end[slot])
        if last == end_ms:
            return self.position(end_ms)
        if last < end_ms or not self._count[slot]:
            return None
        positions = self._positions(slot)
        ends = self._times["candle_end_time"][positions, slot]
        i = int(np.searchsorted(ends, end_ms))
        return int(positions[i]) if i < len(ends) and ends[i] == end_ms else None

    def _write(self, slots: np.ndarray, positions: np.ndarray, values: dict[str, np.ndarray]):
        if len(positions) and (positions == positions[0]).all():  # one period: one row
            rows = [int(positions[0])]
            if rows[0] < self.mirror:
                rows.append(rows[0] + self.num_candles)
            for column, array in self._all_columns().items():
                for row in rows:
                    array[row, slots] = values[column]
            return
        mirrored = positions < self.mirror
        for column, array in self._all_columns().items():
            array[positions, slots] = values[column]
            if mirrored.any():
                array[positions[mirrored] + self.num_candles, slots[mirrored]] = values[column][
                    mirrored
                ]

    def _append(self, slots: np.ndarray, ends: np.ndarray, values: dict[str, np.ndarray]):
        """Each slot's candle right after its newest: one write per column."""
        self._write(slots, self._ring_rows(ends), values)
        self._count[slots] = np.minimum(self._count[slots] + 1, self.num_candles)
        self._last_end[slots] = ends

    def _merge(self, symbol: str, new: dict[str, np.ndarray]) -> None:
        """Rewrite ``symbol``'s row with its candles and ``new`` (held candles win)."""
        slot = self._slots.get(symbol)
        if slot is None:
            slot = self._new_slot(symbol)
        merged = new
        held_ends = self._times["candle_end_time"][self._positions(slot), slot]
        if len(held_ends):
            fresh = ~np.isin(new["candle_end_time"], held_ends)
            if not fresh.any():
                return  # every candle already held
            held = self._ordered(slot)
            merged = {c: np.concatenate([held[c], new[c][fresh]]) for c in held}
        ends = merged["candle_end_time"]
        if np.all(ends[1:] > ends[:-1]):
            order = np.arange(len(ends))[-self.num_candles :]
        else:  # stable: of equal end times the first (held, or first sent) is kept
            order = np.argsort(ends, kind="stable")
            keep = np.ones(len(order), dtype=bool)
            keep[1:] = ends[order][1:] != ends[order][:-1]
            order = order[keep][-self.num_candles :]
        if np.array_equal(ends[order], held_ends):
            return  # what came in is older than the window
        self._clear(slot)
        count = len(order)
        if not count:
            return
        last = int(ends[order[-1]])
        head = self.position(last)
        positions = np.arange(head - count + 1, head + 1) % self.num_candles
        rows = np.full(count, slot, dtype=np.int64)
        self._write(rows, positions, {c: a[order] for c, a in merged.items()})
        self._count[slot] = count
        self._last_end[slot] = last

    def __repr__(self) -> str:
        return (
            f"MarketWindow({len(self)} symbols x {self.num_candles} {self.interval.name} candles,"
            f" {self.nbytes / 1e6:.1f} MB)"
        )


def candle_dir_of(base: Path) -> Path:
    """The candle directory: ``base`` itself, or the one its subdirectories' meta names."""
    if (base / META_FILE).exists():
        meta = orjson.loads((base / META_FILE).read_bytes())
        if isinstance(meta, dict) and meta.get("exginfo_dir") == base.name:
            candle = meta.get("candle_dir")
            if candle:
                return base.parent / str(candle)
        return base
    for child in sorted(base.iterdir()) if base.is_dir() else []:
        meta_file = child / META_FILE
        if meta_file.exists():
            meta = orjson.loads(meta_file.read_bytes())
            if not isinstance(meta, dict):
                continue
            named = meta.get("candle_dir")
            if named == child.name or (named is None and not child.name.startswith("exginfo_")):
                return child
    msg = f"no candle directory with {META_FILE} in {base}"
    raise FileNotFoundError(msg)


def _ms(run_time: datetime | int) -> int:
    if isinstance(run_time, int):
        return run_time
    if run_time.tzinfo is None:
        msg = "run_time must be timezone-aware (or epoch milliseconds)"
        raise ValueError(msg)
    return round(run_time.timestamp() * 1000)


def _appears_once(names: list[str]) -> np.ndarray:
    if len(set(names)) == len(names):
        return np.ones(len(names), dtype=bool)
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    return np.array([seen[n] == 1 for n in names], dtype=bool)


def _arrays(candles: pl.DataFrame) -> dict[str, np.ndarray]:
    """The candle columns as numpy (times as epoch ms, floats as float64 with NaN for null).

    Series operations only: a query (``select``) would wake polars' thread pool, which
    costs milliseconds on a busy machine.
    """
    out: dict[str, np.ndarray] = {}
    for column in TIME_COLUMNS:
        out[column] = epoch_ms(candles.get_column(column)).to_numpy()
    for column in FLOAT_COLUMNS:
        series = candles.get_column(column)
        if series.dtype != pl.Float64:
            series = series.cast(pl.Float64)
        out[column] = series.to_numpy()
    return out


def _series(
    columns: dict[str, np.ndarray], slots: np.ndarray, positions: np.ndarray
) -> dict[str, pl.Series]:
    out = {}
    for column, array in columns.items():
        values = array[positions, slots]
        series = pl.Series(column, values)
        out[column] = series.cast(_TIME) if column in TIME_COLUMNS else series
    return out


def _frame(arrays: dict[str, np.ndarray]) -> pl.DataFrame:
    columns = []
    for column in CANDLE_SCHEMA.names():
        series = pl.Series(column, arrays[column], nan_to_null=False)
        columns.append(series.cast(_TIME) if column in TIME_COLUMNS else series)
    return pl.DataFrame(columns)


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view
