"""Ema: the exponential moving average of the close with span ``n``.

a = 2 / (n + 1)
Ema_n[0] = close[0];  Ema_n[t] = a * close[t] + (1 - a) * Ema_n[t - 1]
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    return pl.col("close").ewm_mean(span=n, adjust=False)


signal = make_signal(expr)
