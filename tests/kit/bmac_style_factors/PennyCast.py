"""A polars factor that fails for penny stocks only (100 / close overflows a byte)."""

import polars as pl


def expr(n):
    return (n * 100 / pl.col("close")).cast(pl.UInt8, strict=True).cast(pl.Float64)
