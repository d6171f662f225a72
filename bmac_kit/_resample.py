"""The all-offset hourly resample, vectorised over every symbol (pure polars, no I/O).

For offset ``k`` minutes (0, 5, ..., 55) the hour windows are ``[h:k, h+1:k)`` in UTC. On
epoch milliseconds a 5m candle beginning at ``b`` falls in the window starting at
``(b - k) // 1h * 1h + k``. Each window aggregates open first, high max, low min, close last,
the volumes and trade count summed, candle_begin_time first and candle_end_time last.

Full windows only: a window is kept only if it holds all twelve 5m candles. That drops the
partial first and last windows (as BMAC's ``end - begin < 1h`` rule did) *and* any window with
a missing 5m bar inside it (BMAC's rule would have kept it, silently under-counting volume).
A gap therefore removes exactly the hours that overlap it, for each offset.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from bmac_trio.store.layout import CANDLE_COLUMNS

__all__ = ["BARS_PER_HOUR", "OFFSETS", "offset_dir_name", "offset_of", "resample_hourly"]

HOUR_MS: Final = 3_600_000
FIVE_MIN_MS: Final = 300_000
BARS_PER_HOUR: Final = HOUR_MS // FIVE_MIN_MS
#: The twelve offsets, in minutes.
OFFSETS: Final = tuple(range(0, 60, 5))
_SUMMED = (
    "volume",
    "quote_volume",
    "trade_num",
    "taker_buy_base_asset_volume",
    "taker_buy_quote_asset_volume",
)


def offset_of(run_time_ms: int) -> int:
    """The offset (minutes) of the hour that closes at ``run_time_ms`` (a 5m boundary).

    That hour is ``[run_time - 1h, run_time)``, so it begins at the UTC minute of run_time.
    """
    return run_time_ms // 60_000 % 60


def offset_dir_name(offset: int) -> str:
    """``"0m"``, ``"5m"``, ..., ``"55m"``."""
    return f"{offset}m"


def resample_hourly(frame: pl.LazyFrame | pl.DataFrame, offset: int) -> pl.LazyFrame:
    """1h candles at ``offset`` minutes from 5m candles of many symbols (``symbol`` column).

    The input must be sorted by time within each symbol (as candle files are). The result is
    sorted by symbol and time and has ``symbol`` plus the candle columns.
    """
    if offset not in OFFSETS:
        msg = f"offset must be one of {OFFSETS} minutes, got {offset!r}"
        raise ValueError(msg)
    k = offset * 60_000
    begin = pl.col("candle_begin_time").dt.epoch("ms")
    window = (begin - k) // HOUR_MS * HOUR_MS + k
    return (
        frame.lazy()
        .with_columns(_window=window)
        .group_by("symbol", "_window", maintain_order=True)
        .agg(
            pl.col("candle_begin_time").first(),
            pl.col("candle_end_time").last(),
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col(*_SUMMED),  # summed below, in row order: a group_by sum is not
            _bars=pl.len(),  # deterministic (partial sums combine in any order)
        )
        .filter(
            (pl.col("_bars") == BARS_PER_HOUR)
            & (pl.col("candle_begin_time").dt.epoch("ms") == pl.col("_window"))
            & (pl.col("candle_end_time").dt.epoch("ms") == pl.col("_window") + HOUR_MS)
        )
        .with_columns(pl.col(*_SUMMED).list.sum())
        .select("symbol", *CANDLE_COLUMNS)
        .sort("symbol", "candle_begin_time")
    )
