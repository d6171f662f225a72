"""A minimal in-memory market window for :func:`bmac_kit.subscribe`, used until
``bmac_kit.window.MarketWindow`` (issue 15, columnar numpy rings) is part of the package.

Same contract: ``from_directory``, ``apply``, ``remove``, ``frame``, ``period_frame``,
``symbols``, ``last_end_time``. One polars frame per symbol; appending the next candle is a
``vstack`` (no copy of the history), anything else a merge of that symbol only.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from bmac_kit._reader import CandleFileReader, read_market
from bmac_trio.binance.candles import CANDLE_SCHEMA
from bmac_trio.binance.intervals import Interval, parse_interval
from bmac_trio.store.layout import META_FILE

__all__ = ["SimpleWindow"]

_TIME = CANDLE_SCHEMA["candle_end_time"]


def _ms(value: datetime | int) -> int:
    return value if isinstance(value, int) else int(value.timestamp() * 1000)


def candle_dir_of(base_dir: Path) -> Path:
    """``base_dir`` itself if it holds candle files' metadata, else its one candle directory."""
    if (base_dir / META_FILE).exists() and not base_dir.name.startswith("exginfo_"):
        return base_dir
    for child in sorted(base_dir.iterdir()):
        if (
            child.is_dir()
            and not child.name.startswith("exginfo_")
            and (child / META_FILE).exists()
        ):
            return child
    raise FileNotFoundError(f"no candle directory with {META_FILE} in {base_dir}")


class SimpleWindow:
    """Every symbol's last ``num_candles`` closed candles (see the module doc)."""

    def __init__(self, num_candles: int, interval: str | Interval) -> None:
        self.num_candles = int(num_candles)
        self.interval = interval if isinstance(interval, Interval) else parse_interval(interval)
        self._frames: dict[str, pl.DataFrame] = {}
        self._last_end: dict[str, int] = {}

    @classmethod
    def from_directory(
        cls, base_dir: str | os.PathLike[str], *, num_candles: int | None = None
    ) -> SimpleWindow:
        """A window filled from the recorder's data directory (base or candle directory)."""
        reader = CandleFileReader(candle_dir_of(Path(base_dir)))
        if reader.interval is None:
            raise FileNotFoundError(f"{reader.dir / META_FILE} names no interval")
        window = cls(num_candles or int(reader.meta.get("num_candles") or 1500), reader.interval)
        symbols = reader.get_all_symbols()
        market = read_market({s: reader.symbol_path(s) for s in symbols})
        window.apply(market.with_symbol_column())
        return window

    def apply(self, candles: pl.DataFrame) -> None:
        """Add closed candles (``symbol`` + the candle columns), in any order; a candle held
        already is replaced; only each symbol's last ``num_candles`` are kept."""
        if candles.is_empty():
            return
        columns = CANDLE_SCHEMA.names()
        for (symbol,), part in candles.group_by("symbol", maintain_order=True):
            assert isinstance(symbol, str)
            part = part.select(columns)
            old = self._frames.get(symbol)
            first_end = int(part["candle_end_time"].dt.epoch("ms").min())  # type: ignore[arg-type]
            last = self._last_end.get(symbol)
            if old is not None and last is not None and part.height == 1 and first_end > last:
                frame = old.vstack(part)
                if frame.n_chunks() > 64:
                    frame = frame.rechunk()
            else:
                pieces = [part] if old is None else [old, part]
                frame = (
                    pl.concat(pieces)
                    .unique("candle_begin_time", keep="last", maintain_order=True)
                    .sort("candle_begin_time")
                )
            if frame.height > self.num_candles:
                frame = frame.tail(self.num_candles)
            self._frames[symbol] = frame
            self._last_end[symbol] = int(frame["candle_end_time"].dt.epoch("ms")[-1])

    def remove(self, symbol: str) -> None:
        """Forget ``symbol`` (delisted)."""
        self._frames.pop(symbol, None)
        self._last_end.pop(symbol, None)

    def symbols(self) -> list[str]:
        """The symbols held, sorted."""
        return sorted(self._frames)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    def last_end_time(self, symbol: str) -> datetime | None:
        """End time of ``symbol``'s newest candle (UTC), or None."""
        end = self._last_end.get(symbol)
        return None if end is None else datetime.fromtimestamp(end / 1000, UTC)

    def frame(self, symbol: str) -> pl.DataFrame:
        """``symbol``'s window, oldest first, with the candle files' schema.

        Raises:
            KeyError: the symbol is not held.
        """
        return self._frames[symbol]

    def period_frame(self, run_time: datetime | int) -> pl.DataFrame:
        """One row per symbol holding the candle that ends at ``run_time``, sorted by symbol."""
        end = pl.lit(_ms(run_time)).cast(pl.Int64).cast(_TIME)
        parts = [
            frame.filter(pl.col("candle_end_time") == end).select(
                pl.lit(symbol).alias("symbol"), *CANDLE_SCHEMA.names()
            )
            for symbol, frame in sorted(self._frames.items())
            if self._last_end[symbol] >= _ms(run_time)
        ]
        if not parts:
            return pl.DataFrame(schema={"symbol": pl.String, **dict(CANDLE_SCHEMA)})
        return pl.concat(parts)
