"""Rsi: the relative strength index over ``n`` candles, with simple (Cutler) averages.

d[t] = close[t] - close[t - 1]
up = mean(max(d, 0) over n), down = mean(max(-d, 0) over n)
Rsi_n[t] = 100 * up[t] / (up[t] + down[t])
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    d = pl.col("close").diff()
    up = d.clip(lower_bound=0).rolling_mean(n)
    down = (-d).clip(lower_bound=0).rolling_mean(n)
    return 100 * up / (up + down)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n + 1


signal = make_signal(expr)
