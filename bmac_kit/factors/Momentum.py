"""Momentum: the price change over ``n`` candles (classic MTM).

Momentum_n[t] = close[t] - close[t - n]
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    close = pl.col("close")
    return close - close.shift(n)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n + 1


signal = make_signal(expr)
