"""BollingerWidth: the width of the 2-sigma Bollinger bands relative to the middle band.

m[t] = mean(close[t - n + 1 .. t]),  s[t] = std(close[t - n + 1 .. t], ddof=1)
BollingerWidth_n[t] = 4 * s[t] / m[t]
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    close = pl.col("close")
    return 4 * close.rolling_std(n) / close.rolling_mean(n)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n


signal = make_signal(expr)
