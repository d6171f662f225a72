"""Loading factor modules and applying them, polars first, BMAC's pandas ``signal`` still working.

A factor config is BMAC's ``(factor_name, param)``; the module is
``importlib.import_module(f"{package}.{factor_name}")`` (the user's package, BMAC's default
``factor``), falling back to the bundled ``bmac_kit.factors.<factor_name>`` when the user's
package has no such module; the output column is ``f"{factor_name}_{param}"``. A module with
``expr(param) -> pl.Expr`` is evaluated by polars (for the whole market in one query,
``.over("symbol")``); a module with only
``signal(df, n, factor_name)`` is a BMAC user's pandas module and is called per symbol on a pandas
frame indexed by ``candle_end_time`` with BMAC's dtypes (nanosecond UTC times, float64),
exactly as BMAC did (pandas is imported only then).

A factor that raises for one symbol fails that symbol only: :class:`FactorError` names the
symbol, the factor and the error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from bmac_kit._errors import FactorError
from bmac_kit._reader import MarketFrame

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BUNDLED_PACKAGE",
    "FactorSpec",
    "apply_all_market",
    "apply_single",
    "import_factor_module",
    "load_factors",
    "to_bmac_pandas",
]

FactorCfg = tuple[str, Any]
#: Where the factors shipped with the kit live (the fallback of every factor lookup).
BUNDLED_PACKAGE = "bmac_kit.factors"


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


def _is_missing(exc: ModuleNotFoundError, wanted: str) -> bool:
    """Whether ``exc`` says ``wanted`` (or a package above it) does not exist, as opposed
    to an import failing *inside* the user's module."""
    return exc.name is not None and (wanted == exc.name or wanted.startswith(f"{exc.name}."))


def import_factor_module(package: str, name: str) -> Any:
    """The user's ``package.name`` if there is one, else the bundled ``bmac_kit.factors.name``.

    Raises:
        ModuleNotFoundError: neither exists (an import error inside a module propagates).
    """
    wanted = f"{package}.{name}"
    try:
        return importlib.import_module(wanted)
    except ModuleNotFoundError as exc:
        if package == BUNDLED_PACKAGE or not _is_missing(exc, wanted):
            raise
    bundled = f"{BUNDLED_PACKAGE}.{name}"
    try:
        return importlib.import_module(bundled)
    except ModuleNotFoundError as exc:
        if not _is_missing(exc, bundled):
            raise
    msg = f"no factor module {wanted} (nor a bundled {bundled})"
    raise ModuleNotFoundError(msg, name=wanted)


def load_factors(
    factor_cfgs: Iterable[FactorCfg], package: str = "factor"
) -> tuple[FactorSpec, ...]:
    """Import every configured factor module once.

    Raises:
        ModuleNotFoundError: no module ``package.factor_name``, nor a bundled one.
        TypeError: the module has neither ``expr`` nor ``signal``.
    """
    specs = []
    for name, param in factor_cfgs:
        module = import_factor_module(package, name)
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


def with_ns_times(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its times in nanoseconds, as BMAC's pandas frames had them."""
    times = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    return frame.with_columns(pl.col(times).dt.cast_time_unit("ns"))


def bmac_pandas_frame(frame: pl.DataFrame) -> pd.DataFrame:
    """One symbol's candles as BMAC handed them to ``signal``: pandas, indexed by
    ``candle_end_time``, times ``datetime64[ns, UTC]``, the rest float64."""
    frame = with_ns_times(frame.drop("symbol", strict=False))
    return frame.to_pandas().set_index("candle_end_time")


def _pandas_columns(
    frame: pl.DataFrame, specs: Sequence[FactorSpec], symbol: str
) -> dict[str, Any]:
    """Run the pandas-style factors on one symbol's frame; the factor columns as arrays.

    Raises:
        FactorError: a factor raised (or returned no column of its name).
    """
    df = bmac_pandas_frame(frame)
    out = {}
    for spec in specs:
        assert spec.signal is not None
        try:
            df = spec.signal(df, spec.param, spec.column)
            out[spec.column] = df[spec.column].to_numpy()
        except Exception as exc:  # the user's code: any error fails this symbol only
            raise FactorError(symbol=symbol, factor=spec.column, error=exc) from exc
    return out


def _polars_columns(
    frame: pl.DataFrame | pl.LazyFrame, specs: Sequence[FactorSpec], symbol: str
) -> pl.DataFrame:
    """The polars factors of one symbol's frame, evaluated together.

    Raises:
        FactorError: naming the first factor that fails on its own.
    """
    exprs = [s.expr.alias(s.column) for s in specs if s.expr is not None]
    try:
        return (
            frame.lazy().with_columns(exprs).select(e.meta.output_name() for e in exprs).collect()
        )
    except Exception as together:
        for spec in specs:
            if spec.expr is None:
                continue
            try:
                frame.lazy().with_columns(spec.expr.alias(spec.column)).collect()
            except Exception as exc:
                raise FactorError(symbol=symbol, factor=spec.column, error=exc) from exc
        raise FactorError(symbol=symbol, factor="(all)", error=together) from together


def apply_single(
    frame: pl.DataFrame, specs: Sequence[FactorSpec], symbol: str = "?"
) -> pl.DataFrame:
    """One symbol's frame with one column per factor, in configuration order.

    Raises:
        FactorError: a factor raised; it names ``symbol`` and the factor.
    """
    polars_specs = [s for s in specs if s.expr is not None]
    result = frame
    if polars_specs:
        result = result.hstack(_polars_columns(frame, polars_specs, symbol))
    pandas_specs = [s for s in specs if s.signal is not None]
    if pandas_specs:
        columns = _pandas_columns(frame, pandas_specs, symbol)
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


def _one_by_one(
    market: MarketFrame, specs: Sequence[FactorSpec]
) -> tuple[pl.DataFrame, dict[str, FactorError]]:
    """Each symbol alone (after a whole-market query failed): the failing ones left out."""
    rows, errors = [], {}
    start = 0
    for symbol, n in zip(market.symbols, market.rows, strict=True):
        part = market.frame.slice(start, n)
        start += n
        try:
            row = apply_single(part, specs, symbol).tail(1)
        except FactorError as exc:
            errors[symbol] = exc
            continue
        rows.append(row.select(pl.lit(symbol, pl.String).alias("symbol"), pl.all()))
    if not rows:
        empty = {s.column: pl.Float64 for s in specs}
        schema = {"symbol": pl.String, **market.frame.schema, **empty}
        return pl.DataFrame(schema=schema), errors
    return pl.concat(rows, how="vertical_relaxed"), errors


def apply_all_market(
    market: MarketFrame, specs: Sequence[FactorSpec], run_time_ms: int
) -> tuple[pl.DataFrame, dict[str, FactorError]]:
    """The ``run_time`` row of every symbol, with one column per factor.

    Polars factors are evaluated for all symbols at once (``.over(symbol)``), those with a
    ``lookback`` on each symbol's last rows only; pandas-style ones per symbol on the whole
    history, as BMAC did. Symbols whose file has no candle ending at ``run_time`` are absent
    from the result (the caller reports them), and so are the symbols a factor failed for,
    returned with their error.
    """
    market = _until(market, run_time_ms)
    result = market.frame.gather(_last_rows(market.rows)).select(
        pl.Series("symbol", market.symbols, dtype=pl.String), pl.all()
    )
    if not market.symbols:
        empty = result.with_columns(pl.lit(None, pl.Float64).alias(s.column) for s in specs)
        return empty, {}
    short = [s for s in specs if s.expr is not None and s.lookback is not None]
    full = [s for s in specs if s.expr is not None and s.lookback is None]
    parts = []
    if short:
        tail = _tail(market, max(s.lookback for s in short if s.lookback is not None))
        parts.append((_evaluate(tail, short), tail.rows))
    if full:
        parts.append((_evaluate(market, full), market.rows))
    try:
        computed = pl.collect_all([query for query, _ in parts])  # one run, in parallel
    except Exception:  # a factor failed somewhere: find the symbols it failed for
        return _one_by_one(market, specs)
    for frame, (_, rows) in zip(computed, parts, strict=True):
        result = result.hstack(frame.gather(_last_rows(rows)))
    errors: dict[str, FactorError] = {}
    pandas_specs = [s for s in specs if s.signal is not None]
    if pandas_specs:
        values: dict[str, list[float | None]] = {s.column: [] for s in pandas_specs}
        start = 0
        for symbol, n in zip(market.symbols, market.rows, strict=True):
            part = market.frame.slice(start, n)
            start += n
            try:
                columns = _pandas_columns(part, pandas_specs, symbol)
            except FactorError as exc:
                errors[symbol] = exc
                columns = {c: [None] for c in values}
            for column, array in columns.items():
                last = array[-1]
                values[column].append(None if last is None else float(last))
        result = result.with_columns(
            pl.Series(c, v, dtype=pl.Float64, nan_to_null=False) for c, v in values.items()
        )
        if errors:
            result = result.filter(~pl.col("symbol").is_in(list(errors)))
    return result.select("symbol", *market.frame.columns, *(s.column for s in specs)), errors


def to_bmac_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """BMAC's shape: indexed by ``symbol`` (all-market) or ``candle_end_time`` (one symbol)."""
    index = "symbol" if "symbol" in frame.columns else "candle_end_time"
    return frame.to_pandas().set_index(index)
