"""BMAC's ``signal(df, n, factor_name)`` for a polars factor, for scripts that call it directly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

__all__ = ["make_signal"]


def make_signal(expr: Callable[[Any], pl.Expr]) -> Callable[..., Any]:
    """A pandas ``signal(df, n, factor_name)`` that evaluates ``expr(n)`` with polars."""

    def signal(*args: Any) -> Any:
        df, n, factor_name = args[0], args[1], args[2]
        values = pl.from_pandas(df.reset_index(drop=True)).select(expr(n)).to_series()
        df[factor_name] = values.to_numpy()
        return df

    return signal
