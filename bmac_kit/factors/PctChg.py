"""PctChg: the return over ``n`` candles.

PctChg_n[t] = close[t] / close[t - n] - 1
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    close = pl.col("close")
    return close / close.shift(n) - 1


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n + 1


signal = make_signal(expr)
