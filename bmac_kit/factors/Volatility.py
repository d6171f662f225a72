"""Volatility: the sample standard deviation of one-candle returns over ``n`` candles.

r[t] = close[t] / close[t - 1] - 1
Volatility_n[t] = std(r[t - n + 1 .. t], ddof=1)
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    close = pl.col("close")
    return (close / close.shift(1) - 1).rolling_std(n)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n + 1


signal = make_signal(expr)
