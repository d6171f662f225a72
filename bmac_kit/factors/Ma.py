"""Ma: the simple moving average of the close over ``n`` candles.

Ma_n[t] = mean(close[t - n + 1 .. t])
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    return pl.col("close").rolling_mean(n)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n


signal = make_signal(expr)
