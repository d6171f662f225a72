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

from bmac_kit._reader import MarketFrame

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
    #: Rows the newest value depends on (None: the whole history).
    lookback: int | None = None


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
        lookback = getattr(module, "lookback", None)
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
                lookback=int(lookback(param)) if expr_fn and lookback else None,
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


def _ranges(starts: list[int], stops: list[int]) -> pl.Series:
    """The row numbers ``start..stop`` of every symbol, concatenated."""
    ranges = pl.int_ranges(pl.Series(starts, dtype=pl.Int64), pl.Series(stops, dtype=pl.Int64))
    return pl.select(ranges.explode()).to_series().drop_nulls()


def _until(market: MarketFrame, run_time_ms: int) -> MarketFrame:
    """Each symbol's rows up to the candle ending at ``run_time``; symbols without it dropped."""
    frame, rows = market.frame, market.rows
    ends = [0] * len(rows)
    total = 0
    for i, n in enumerate(rows):
        total += n
        ends[i] = total
    end_ms = frame.get_column("candle_end_time").dt.epoch("ms")
    last = end_ms.gather([e - 1 for e, n in zip(ends, rows, strict=True) if n]).to_list()
    it = iter(last)
    keep_symbols, keep_rows, starts, stops = [], [], [], []
    changed = False
    for symbol, n, stop in zip(market.symbols, rows, ends, strict=True):
        if not n:
            changed = True
            continue
        start, newest = stop - n, next(it)
        if newest != run_time_ms:
            changed = True
            if newest < run_time_ms:
                continue  # not ready for run_time: the caller reports it missing
            pos = start + int(end_ms.slice(start, n).search_sorted(run_time_ms))
            if pos >= stop or end_ms[pos] != run_time_ms:
                continue
            stop = pos + 1
        keep_symbols.append(symbol)
        keep_rows.append(stop - start)
        starts.append(start)
        stops.append(stop)
    if not changed:
        return market
    return MarketFrame(frame.gather(_ranges(starts, stops)), keep_symbols, keep_rows)


def _last_rows(rows: list[int]) -> list[int]:
    out, total = [], 0
    for n in rows:
        total += n
        out.append(total - 1)
    return out


def _tail(market: MarketFrame, keep: int) -> MarketFrame:
    stops = [i + 1 for i in _last_rows(market.rows)]
    starts = [stop - min(n, keep) for stop, n in zip(stops, market.rows, strict=True)]
    rows = [min(n, keep) for n in market.rows]
    return MarketFrame(market.frame.gather(_ranges(starts, stops)), market.symbols, rows)


def _evaluate(market: MarketFrame, specs: Sequence[FactorSpec]) -> pl.LazyFrame:
    """Every polars factor for every symbol (``.over`` a sorted integer symbol key)."""
    exprs = [s.expr.over("_symbol").alias(s.column) for s in specs if s.expr is not None]
    return market.frame.lazy().with_columns(_symbol=market.owner()).select(exprs)


def apply_all_market(
    market: MarketFrame, specs: Sequence[FactorSpec], run_time_ms: int
) -> pl.DataFrame:
    """The ``run_time`` row of every symbol, with one column per factor.

    Polars factors are evaluated for all symbols at once (``.over(symbol)``), those with a
    ``lookback`` on each symbol's last rows only; pandas-style ones per symbol on the whole
    history, as BMAC did. Symbols whose file has no candle ending at ``run_time`` are absent
    from the result (the caller reports them).
    """
    market = _until(market, run_time_ms)
    result = market.frame.gather(_last_rows(market.rows)).select(
        pl.Series("symbol", market.symbols, dtype=pl.String), pl.all()
    )
    if not market.symbols:
        return result.with_columns(pl.lit(None, pl.Float64).alias(s.column) for s in specs)
    short = [s for s in specs if s.expr is not None and s.lookback is not None]
    full = [s for s in specs if s.expr is not None and s.lookback is None]
    parts = []
    if short:
        tail = _tail(market, max(s.lookback for s in short if s.lookback is not None))
        parts.append((_evaluate(tail, short), tail.rows))
    if full:
        parts.append((_evaluate(market, full), market.rows))
    computed = pl.collect_all([query for query, _ in parts])  # one run, in parallel
    for frame, (_, rows) in zip(computed, parts, strict=True):
        result = result.hstack(frame.gather(_last_rows(rows)))
    pandas_specs = [s for s in specs if s.signal is not None]
    if pandas_specs:
        values: dict[str, list[float]] = {s.column: [] for s in pandas_specs}
        start = 0
        for n in market.rows:
            part = market.frame.slice(start, n)
            start += n
            for column, array in _pandas_columns(part, pandas_specs).items():
                values[column].append(float(array[-1]))
        result = result.with_columns(
            pl.Series(c, v, dtype=pl.Float64, nan_to_null=False) for c, v in values.items()
        )
    return result.select("symbol", *market.frame.columns, *(s.column for s in specs))


def to_bmac_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """BMAC's shape: indexed by ``symbol`` (all-market) or ``candle_end_time`` (one symbol)."""
    index = "symbol" if "symbol" in frame.columns else "candle_end_time"
    return frame.to_pandas().set_index(index)
