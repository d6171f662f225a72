"""TrdNumMeanV1: the mean number of trades per candle over ``n`` candles.

TrdNumMeanV1_n[t] = mean(trade_num[t - n + 1 .. t])
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    return pl.col("trade_num").rolling_mean(n)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n


signal = make_signal(expr)
