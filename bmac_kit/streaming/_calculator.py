"""``BmacStreamingCalculator``: the all-market factor frame of each period, from memory.

Per period: the bundled factors run as numpy kernels over the last rows of the in-memory
window (:mod:`bmac_kit.streaming._kernels`); any other polars ``expr(n)`` factor runs through
the batch code on a frame cut from the window (no disk); a pandas ``signal()`` module runs per
symbol on pandas, the slow path (said so in the log, and off the event loop).

The result has the shape of :meth:`BmacAllMarketCalculator.calc_all_factors`: one row per
symbol (sorted), ``symbol``, the candle columns, then one column per factor in configuration
order. Where the batch factor is null (too few candles) the streaming value is NaN.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
import numpy as np
import polars as pl

import bmac_kit._factors as kit_factors
from bmac_kit._calculators import AllMarketResult
from bmac_kit._factors import FactorCfg, FactorSpec, apply_all_market, load_factors, to_bmac_pandas
from bmac_kit._reader import MarketFrame
from bmac_kit.streaming._kernels import KERNELS, Kernel, PeriodView, make_kernel
from bmac_kit.streaming._market import MarketLike, PeriodLike
from bmac_kit.window import MarketWindow
from bmac_trio.binance.candles import CANDLE_SCHEMA, FLOAT_COLUMNS, epoch_ms

__all__ = ["BmacStreamingCalculator"]

LOGGER = logging.getLogger("bmac_kit.streaming")
_TIME = pl.Datetime("ms", "UTC")
_DTYPES = {"symbol": pl.String, "candle_begin_time": _TIME, "candle_end_time": _TIME}
_HEAD_COLUMNS = ["symbol", *CANDLE_SCHEMA.names()]
_HEAD_DTYPES = [pl.String, *CANDLE_SCHEMA.dtypes()]


def _bundled_dir() -> Path | None:
    """The directory of the factor modules shipped with the kit.

    ``bmac_kit.factors`` (issue 13); before it, the repository's ``factor`` package. Only one:
    once the kit ships its own, ``factor`` is the *user's* package.
    """
    for package in ("bmac_kit.factors", "factor"):
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError:
            continue
        return Path(module.__file__ or "").resolve().parent
    return None


def _factor_module(package: str, name: str) -> Any:
    """The module ``load_factors`` loads for ``name`` (the bundled one as its fallback)."""
    finder = getattr(kit_factors, "import_factor_module", None)
    if finder is not None:
        return finder(package, name)
    return importlib.import_module(f"{package}.{name}")


def _bundled_kernel(spec: FactorSpec, package: str) -> Kernel | None:
    """The kernel of a bundled factor: its ``expr`` is defined in the bundled module's file.

    So a user package re-exporting a bundled factor gets the kernel, and a user module of the
    same name with its own formula does not, whatever the package is called.
    """
    bundled = _bundled_dir()
    if spec.name not in KERNELS or spec.expr is None or bundled is None:
        return None
    expr = getattr(_factor_module(package, spec.name), "expr", None)
    try:
        source = Path(inspect.getfile(expr)).resolve()  # type: ignore[arg-type]
    except TypeError:  # not a Python function
        return None
    return make_kernel(spec.name) if source == bundled / f"{spec.name}.py" else None


class BmacStreamingCalculator:
    """Factors of every symbol for each period as it closes, computed in memory.

    Args:
        market: the live market (``bmac_kit.subscribe(...)``) or a
            :class:`~bmac_kit.streaming.ReplayMarket`: its ``window`` and ``periods()``.
        factor_cfgs: ``[(factor_name, param), ...]``; column ``f"{factor_name}_{param}"``.
        package: where factor modules live (``f"{package}.{factor_name}"``).
        output: ``"polars"`` (default) or ``"pandas"`` (BMAC's shape, indexed by symbol).
    """

    def __init__(
        self,
        market: MarketLike,
        factor_cfgs: Iterable[FactorCfg],
        package: str = "factor",
        *,
        output: Literal["polars", "pandas"] = "polars",
    ) -> None:
        self.market = market
        self.factor_cfgs = list(factor_cfgs)
        self.output = output
        self._specs = load_factors(self.factor_cfgs, package)
        self._kernels: dict[str, tuple[Kernel, int]] = {}
        batch: list[FactorSpec] = []
        for spec in self._specs:
            kernel = _bundled_kernel(spec, package)
            if kernel is not None:
                self._kernels[spec.column] = (kernel, int(spec.param))
                continue
            batch.append(spec)
            if spec.signal is not None:
                LOGGER.warning(
                    "factor %s is a pandas signal() module: computed per symbol on pandas each"
                    " period, the slow path (give it expr(n) to run on the in-memory window)",
                    spec.column,
                )
            else:
                LOGGER.info("factor %s: its polars expression on the in-memory window", spec.column)
        self._batch = tuple(batch)
        self._slow = any(s.signal is not None for s in batch)
        #: Symbols missing from the last result.
        self.missing: tuple[str, ...] = ()
        self._symbols_key: tuple[str, ...] = ()
        self._symbols = pl.Series("symbol", [], dtype=pl.String)

    @property
    def window(self) -> MarketWindow:
        """The market's window."""
        return self.market.window

    async def results(self) -> AsyncIterator[AllMarketResult]:
        """One :class:`~bmac_kit.AllMarketResult` per period, as the market yields them.

        In the event loop when every factor is numpy or polars (well under a millisecond per
        factor for 500 symbols); in a worker thread when a pandas factor is configured. Close
        it with ``contextlib.aclosing`` when leaving early: the market's period stream is
        closed with it.
        """
        periods = self.market.periods()
        try:
            async for period in periods:
                finish = self._prepare(period)  # reads the window: in the event loop
                if self._slow:
                    result = await anyio.to_thread.run_sync(finish)  # pandas, on copies
                else:
                    result = finish()
                self.missing = result.missing
                yield result
        finally:
            close = getattr(periods, "aclose", None)
            if close is not None:
                await close()

    def calc_period(self, period: PeriodLike) -> AllMarketResult:
        """The all-market result of one period already applied to the window."""
        return self._prepare(period)()

    def _prepare(self, period: PeriodLike) -> Callable[[], AllMarketResult]:
        """Everything that reads the window (kernels, frames cut out for the batch code);
        returns the rest of the work, which only touches copies (a worker thread may run it
        while the market applies the next candles)."""
        window = self.window
        run_ms = _ms(period.run_time)
        symbols = sorted(period.ready)
        slots = window.slots_of(symbols)
        newest = slots >= 0
        newest[newest] = window.last_ends()[slots[newest]] == run_ms
        late: list[str] = []
        if not newest.all():  # the window moved past run_time for these (or has a gap)
            names = np.array(symbols, dtype=object)
            late = [s for s in names[~newest].tolist() if s in window]
            symbols, slots = names[newest].tolist(), slots[newest]
        head = None if late or self._batch else self._candle_rows(period.candles, symbols, run_ms)
        columns = self._kernel_columns(window, symbols, slots, run_ms, rows=head is None)
        batch_market = late_market = None
        if self._batch:
            lookbacks = [s.lookback for s in self._batch]
            last = None if None in lookbacks else max(int(b) for b in lookbacks if b is not None)
            batch_market = window.market_frame(symbols, run_ms, last=last)
        if late:
            late_market = window.market_frame(late, run_ms)

        def finish() -> AllMarketResult:
            errors: dict[str, Exception] = {}
            if batch_market is not None:
                columns.update(self._batch_columns(batch_market, symbols, run_ms, errors))
            frame = self._frame(columns, len(symbols), head)
            if late_market is not None:
                late_frame = _apply_batch(late_market, self._specs, run_ms, errors)
                late_frame = late_frame.with_columns(_nan_for_null(self._specs))
                frame = pl.concat([frame, late_frame.select(frame.columns)]).sort("symbol")
            if errors:  # a user factor failed for these: reported missing, with the error
                frame = frame.filter(~pl.col("symbol").is_in(list(errors)))
            done = frame.get_column("symbol").to_list() if late or errors else symbols
            missing = tuple(sorted(set(period.missing) | set(period.ready).difference(done)))
            output = to_bmac_pandas(frame) if self.output == "pandas" else frame
            result = AllMarketResult(run_time_ms=run_ms, frame=output, missing=missing)
            if errors and hasattr(result, "errors"):  # since issue 13
                result = dataclasses.replace(result, errors=errors)  # type: ignore[call-arg]
            return result

        return finish

    def _kernel_columns(
        self,
        window: MarketWindow,
        symbols: list[str],
        slots: np.ndarray,
        run_ms: int,
        *,
        rows: bool = True,
    ) -> dict[str, Any]:
        """``symbol``, the candle columns (unless ``rows`` is false) and the bundled factors'
        columns."""
        columns: dict[str, Any] = {"symbol": symbols}
        if rows:
            columns.update(window.rows_at(slots, run_ms))
        view = PeriodView(window, run_ms, slots)
        with np.errstate(all="ignore"):  # x/0 is inf or NaN, as in polars
            for column, (kernel, param) in self._kernels.items():
                columns[column] = kernel(view, param)[slots] if len(slots) else np.empty(0)
        return columns

    def _frame(
        self, columns: dict[str, Any], rows: int, head: pl.DataFrame | None = None
    ) -> pl.DataFrame:
        """The result frame, in the batch calculator's column order; ``head``, when given, is
        its first columns (``symbol`` and the candles) already built."""
        factors = [spec.column for spec in self._specs]
        if head is not None:
            return head.hstack(_float_frame(columns, factors, rows))
        if self._batch or not rows:
            order = ["symbol", *CANDLE_SCHEMA.names(), *factors]
            return pl.DataFrame(
                [pl.Series(n, columns[n], dtype=_DTYPES.get(n, pl.Float64)) for n in order]
            )
        head = pl.DataFrame(
            [self._symbol_series(columns["symbol"])]
            + [
                pl.Series(n, columns[n], dtype=_TIME)
                for n in ("candle_begin_time", "candle_end_time")
            ]
        )
        return head.hstack(_float_frame(columns, [*FLOAT_COLUMNS, *factors], rows))

    def _symbol_series(self, symbols: list[str]) -> pl.Series:
        """The ``symbol`` column: the same symbols come every period, so built once."""
        key = tuple(symbols)
        if key != self._symbols_key:
            self._symbols_key = key
            self._symbols = pl.Series("symbol", symbols, dtype=pl.String)
        return self._symbols

    def _candle_rows(
        self, candles: pl.DataFrame, symbols: list[str], run_ms: int
    ) -> pl.DataFrame | None:
        """The period message's own frame, when it is exactly the result's first columns: one
        candle ending at ``run_ms`` per symbol of ``symbols``, in that order (the recorder sends
        them sorted). The window holds the same candles, so they need not be gathered out of it
        and built into a frame again (a fifth of the period's work)."""
        if candles.height != len(symbols) or candles.columns != _HEAD_COLUMNS:
            return None
        if candles.dtypes != _HEAD_DTYPES:
            return None
        # compared in polars with the symbols' Series built once (a list of 500: 40 us)
        if not candles.get_column("symbol").equals(self._symbol_series(symbols)):
            return None
        ends = epoch_ms(candles.get_column("candle_end_time")).to_numpy()
        return candles if bool((ends == run_ms).all()) else None

    def _batch_columns(
        self,
        market: MarketFrame,
        symbols: Sequence[str],
        run_ms: int,
        errors: dict[str, Exception],
    ) -> dict[str, pl.Series]:
        """User factors through the batch code, on rows cut from the window."""
        result = _apply_batch(market, self._batch, run_ms, errors)
        if result.get_column("symbol").to_list() != list(symbols):
            result = result.join(
                pl.DataFrame({"symbol": list(symbols)}), on="symbol", how="right"
            ).select(result.columns)
        result = result.with_columns(_nan_for_null(self._batch))
        return {s.column: result.get_column(s.column) for s in self._batch}


def _float_frame(columns: dict[str, Any], names: list[str], rows: int) -> pl.DataFrame:
    """``columns[name]`` for ``names`` as float columns: one 2-D array, one polars call (and
    no query engine, whose threads are slow to wake on a busy machine)."""
    matrix = np.empty((len(names), rows))
    for i, name in enumerate(names):
        matrix[i] = columns[name]
    return pl.from_numpy(matrix, schema=names, orient="col")


def _apply_batch(
    market: MarketFrame,
    specs: Sequence[FactorSpec],
    run_ms: int,
    errors: dict[str, Exception],
) -> pl.DataFrame:
    """``apply_all_market``, collecting the errors of symbols a factor failed for."""
    out = apply_all_market(market, specs, run_ms)
    if isinstance(out, tuple):  # (frame, {symbol: FactorError}) since issue 13
        out, failed = out
        errors.update(failed)
    return out


def _nan_for_null(specs: Sequence[FactorSpec]) -> list[pl.Expr]:
    """Factor columns with NaN where the batch code has null (as the kernels give)."""
    return [pl.col(s.column).cast(pl.Float64).fill_null(float("nan")) for s in specs]


def _ms(run_time: datetime | int) -> int:
    if isinstance(run_time, int):
        return run_time
    return round(run_time.timestamp() * 1000)
