"""Bias: how far the close is above its ``n``-candle moving average.

Bias_n[t] = close[t] / mean(close[t - n + 1 .. t]) - 1
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    close = pl.col("close")
    return close / close.rolling_mean(n) - 1


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n


signal = make_signal(expr)
