"""ZScore: how many standard deviations the close is from its ``n``-candle mean.

ZScore_n[t] = (close[t] - mean(close over n)) / std(close over n, ddof=1)
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    close = pl.col("close")
    return (close - close.rolling_mean(n)) / close.rolling_std(n)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n


signal = make_signal(expr)
