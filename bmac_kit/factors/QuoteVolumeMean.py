"""QuoteVolumeMean: the mean quote volume (turnover) per candle over ``n`` candles.

QuoteVolumeMean_n[t] = mean(quote_volume[t - n + 1 .. t])
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    return pl.col("quote_volume").rolling_mean(n)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n


signal = make_signal(expr)
