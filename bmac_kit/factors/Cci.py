"""Cci: the commodity channel index over ``n`` candles (quant-style mean deviation).

tp[t] = (high[t] + low[t] + close[t]) / 3
ma[t] = mean(tp[t - n + 1 .. t])
md[t] = mean(|tp - ma|[t - n + 1 .. t])
Cci_n[t] = (tp[t] - ma[t]) / (0.015 * md[t])
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    tp = (pl.col("high") + pl.col("low") + pl.col("close")) / 3
    ma = tp.rolling_mean(n)
    md = (tp - ma).abs().rolling_mean(n)
    return (tp - ma) / (0.015 * md)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return 2 * n - 1


signal = make_signal(expr)
