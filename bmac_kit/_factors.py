"""Loading factor modules and applying them, polars first, BMAC's pandas ``signal`` still working.

A factor config is BMAC's ``(factor_name, param)``; the module is
``importlib.import_module(f"{package}.{factor_name}")`` and the output column
``f"{factor_name}_{param}"``. A module with ``expr(param) -> pl.Expr`` is evaluated by polars
(for the whole market in one query, ``.over("symbol")``); a module with only
``signal(df, n, factor_name)`` is a BMAC user's pandas module and is called per symbol on a pandas
frame indexed by ``candle_end_time``, exactly as BMAC did (pandas is imported only then).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FactorSpec", "apply_all_market", "apply_single", "load_factors", "to_bmac_pandas"]

FactorCfg = tuple[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class FactorSpec:
    """One configured factor: its output column and how to compute it."""

    name: str
    param: Any
    column: str
    expr: pl.Expr | None
    signal: Callable[..., Any] | None


def load_factors(
    factor_cfgs: Iterable[FactorCfg], package: str = "factor"
) -> tuple[FactorSpec, ...]:
    """Import every configured factor module once.

    Raises:
        ModuleNotFoundError: no module ``package.factor_name``.
        TypeError: the module has neither ``expr`` nor ``signal``.
    """
    specs = []
    for name, param in factor_cfgs:
        module = importlib.import_module(f"{package}.{name}")
        expr_fn = getattr(module, "expr", None)
        signal = getattr(module, "signal", None)
        if expr_fn is None and signal is None:
            msg = f"factor module {module.__name__} defines neither expr(n) nor signal(df, n, name)"
            raise TypeError(msg)
        specs.append(
            FactorSpec(
                name=name,
                param=param,
                column=f"{name}_{param}",
                expr=expr_fn(param) if expr_fn is not None else None,
                signal=None if expr_fn is not None else signal,
            )
        )
    return tuple(specs)


def _pandas_columns(frame: pl.DataFrame, specs: Sequence[FactorSpec]) -> dict[str, Any]:
    """Run the pandas-style factors on one symbol's frame; the factor columns as arrays."""
    df = frame.drop("symbol", strict=False).to_pandas().set_index("candle_end_time")
    out = {}
    for spec in specs:
        assert spec.signal is not None
        df = spec.signal(df, spec.param, spec.column)
        out[spec.column] = df[spec.column].to_numpy()
    return out


def apply_single(frame: pl.DataFrame, specs: Sequence[FactorSpec]) -> pl.DataFrame:
    """One symbol's frame with one column per factor, in configuration order."""
    exprs = [s.expr.alias(s.column) for s in specs if s.expr is not None]
    result = frame.with_columns(exprs) if exprs else frame
    pandas_specs = [s for s in specs if s.signal is not None]
    if pandas_specs:
        columns = _pandas_columns(frame, pandas_specs)
        result = result.with_columns(
            pl.Series(name, values, dtype=pl.Float64, nan_to_null=False)
            for name, values in columns.items()
        )
    return result.select(*frame.columns, *(s.column for s in specs))


def apply_all_market(
    frame: pl.DataFrame, specs: Sequence[FactorSpec], run_time_ms: int
) -> pl.DataFrame:
    """The ``run_time`` row of every symbol in ``frame`` (which has a ``symbol`` column).

    Polars factors are evaluated for all symbols in one lazy query (``.over("symbol")``);
    pandas-style ones per symbol. Symbols whose file has no candle ending at ``run_time`` are
    absent from the result (the caller reports them).
    """
    if frame.is_empty():
        return frame
    run_time = pl.lit(run_time_ms).cast(pl.Datetime("ms", "UTC"))
    exprs = [s.expr.over("symbol").alias(s.column) for s in specs if s.expr is not None]
    lazy = frame.lazy()
    if exprs:
        lazy = lazy.with_columns(exprs)
    candle_cols = [c for c in frame.columns if c != "symbol"]
    result = lazy.filter(pl.col("candle_end_time") == run_time).collect()
    pandas_specs = [s for s in specs if s.signal is not None]
    if pandas_specs and not result.is_empty():
        rows = []
        for (symbol,), part in frame.partition_by(
            "symbol", as_dict=True, maintain_order=True
        ).items():
            part = part.filter(pl.col("candle_end_time") <= run_time)
            columns = _pandas_columns(part, pandas_specs)
            rows.append({"symbol": symbol} | {k: float(v[-1]) for k, v in columns.items()})
        extra = pl.DataFrame(
            rows, schema={"symbol": pl.String} | {s.column: pl.Float64 for s in pandas_specs}
        )
        result = result.join(extra, on="symbol", how="left", maintain_order="left")
    return result.select("symbol", *candle_cols, *(s.column for s in specs))


def to_bmac_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """BMAC's shape: indexed by ``symbol`` (all-market) or ``candle_end_time`` (one symbol)."""
    index = "symbol" if "symbol" in frame.columns else "candle_end_time"
    return frame.to_pandas().set_index(index)
