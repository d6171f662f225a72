"""Test helper: a run of flat candles as the recorder's frame (CANDLE_SCHEMA)."""

from __future__ import annotations

import polars as pl

from bmac_trio.binance.intervals import Interval
from bmac_trio.binance.protocol import Candle, candles_to_frame


def flat_candles(symbol: str, first_open_ms: int, n: int, interval: Interval) -> pl.DataFrame:
    """``n`` consecutive candles of ``symbol`` from ``first_open_ms``, every price and volume 1."""
    rows = [
        Candle(
            symbol=symbol,
            open_ms=interval.add(first_open_ms, i),
            open=1.0,
            high=1.0,
            low=1.0,
            close=1.0,
            volume=1.0,
            quote_volume=1.0,
            trade_num=1.0,
            taker_buy_base_asset_volume=1.0,
            taker_buy_quote_asset_volume=1.0,
        )
        for i in range(n)
    ]
    return candles_to_frame(rows, interval)
