"""Atr: the average true range over ``n`` candles, relative to the close.

tr[t] = max(high[t] - low[t], |high[t] - close[t - 1]|, |low[t] - close[t - 1]|)
        (tr[0] = high[0] - low[0])
Atr_n[t] = mean(tr[t - n + 1 .. t]) / close[t]
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    high, low, prev = pl.col("high"), pl.col("low"), pl.col("close").shift(1)
    tr = pl.max_horizontal(high - low, (high - prev).abs(), (low - prev).abs())
    return tr.rolling_mean(n) / pl.col("close")


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n + 1


signal = make_signal(expr)
