"""TakerBuyRatio: the share of turnover bought by takers over ``n`` candles.

TakerBuyRatio_n[t] = sum(taker_buy_quote_asset_volume over n) / sum(quote_volume over n)
"""

import polars as pl

from bmac_kit.factors._signal import make_signal


def expr(n: int) -> pl.Expr:
    """The factor's polars expression for one symbol."""
    buy = pl.col("taker_buy_quote_asset_volume").rolling_sum(n)
    return buy / pl.col("quote_volume").rolling_sum(n)


def lookback(n: int) -> int:
    """How many rows the newest value depends on."""
    return n


signal = make_signal(expr)
