"""BMAC's factor calculators: wait for a period's data, read it, apply the factors.

* :class:`BmacSingleSymbolCalculator` returns one symbol's whole history with one column per
  factor; if the symbol is not ready by ``run_time + bmac_expire_sec`` it raises
  :class:`~bmac_kit._errors.PeriodNotReady` (BMAC v1 raised ``RuntimeError``, which it also is);
  a factor that raises gives :class:`~bmac_kit._errors.FactorError` naming symbol and factor.
* :class:`BmacAllMarketCalculator` returns one row per symbol for ``run_time``. Symbols are
  read and computed in batches as their data lands (one polars query per batch), so the result
  is ready a few milliseconds after the last symbol. Symbols missing at the deadline, or that
  a factor failed for, are logged and listed in :attr:`BmacAllMarketCalculator.missing` (with
  the factor errors in :attr:`BmacAllMarketCalculator.errors`, and both in
  :class:`AllMarketResult`), never silently dropped; the rest is returned.

A result for ``run_time`` only ever holds each symbol's candle ending at ``run_time``: a file
that does not have it (yet) is read again at the next poll, and at the deadline the symbol is
missing. Everything runs on AnyIO: under ``asyncio.run`` (as BMAC scripts do) or ``trio.run``.

Results are polars frames (``output="polars"``, the default, fastest). ``output="pandas"``
gives BMAC's pandas frames: indexed by ``candle_end_time`` (one symbol) or ``symbol`` (all
market); :func:`~bmac_kit._factors.to_bmac_pandas` converts a polars result the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import polars as pl

from bmac_kit._errors import FactorError, PeriodNotReady
from bmac_kit._factors import (
    FactorCfg,
    apply_all_market,
    apply_single,
    load_factors,
    to_bmac_pandas,
)
from bmac_kit._reader import CandleFileReader, read_frame, read_market
from bmac_kit._time import RunTime, from_ms, get_default_clock, to_ms
from bmac_kit._waiting import PeriodWatcher, wait_for_period
from bmac_trio.binance.symbols import check_symbol
from bmac_trio.clock import Clock
from bmac_trio.store.layout import CANDLE_SCHEMA

__all__ = ["AllMarketResult", "BmacAllMarketCalculator", "BmacSingleSymbolCalculator"]

LOGGER = logging.getLogger("bmac_kit.calc")
Output = Literal["polars", "pandas"]
_TIME = pl.Datetime("ms", "UTC")


@dataclass(frozen=True, slots=True, kw_only=True)
class AllMarketResult:
    """One period's all-market result and what was missing from it."""

    run_time_ms: int
    #: One row per computed symbol (``symbol`` column first), sorted by symbol.
    frame: pl.DataFrame
    #: Symbols expected for the period whose data was not ready by the deadline, or that a
    #: factor failed for.
    missing: tuple[str, ...]
    #: The symbols a factor failed for, with the error (symbol, factor and cause).
    errors: dict[str, FactorError] = field(default_factory=dict)


class BmacSingleSymbolCalculator:
    """Factors of one symbol, as soon as its period is ready (BMAC's names and meanings).

    Args:
        symbol: the symbol (``calc_factors(..., symbol=)`` overrides it per call).
        candle_reader: the candle directory.
        factor_cfgs: ``[(factor_name, param), ...]``; column ``f"{factor_name}_{param}"``.
        package: where factor modules live (``f"{package}.{factor_name}"``).
        bmac_expire_sec: how long after ``run_time`` to wait for the data.
        clock: the clock to wait on (default :func:`bmac_kit.get_default_clock`).
        output: ``"polars"`` (default) or ``"pandas"`` (BMAC's shape).
    """

    def __init__(
        self,
        symbol: str,
        candle_reader: CandleFileReader,
        factor_cfgs: Iterable[FactorCfg],
        package: str = "factor",
        bmac_expire_sec: float = 40,
        *,
        clock: Clock | None = None,
        output: Output = "polars",
    ) -> None:
        if output not in ("polars", "pandas"):
            msg = f"output must be 'polars' or 'pandas', got {output!r}"
            raise ValueError(msg)
        self.symbol = symbol
        self.candle_reader = candle_reader
        self.factor_cfgs = list(factor_cfgs)
        self.package = package
        self.bmac_expire_sec = bmac_expire_sec
        self.output: Output = output
        self._clock = clock
        self._specs = load_factors(self.factor_cfgs, package)

    @property
    def clock(self) -> Clock:
        """The clock this calculator waits on."""
        return self._clock or get_default_clock()

    def _deadline_ms(self, run_time_ms: int) -> int:
        return run_time_ms + int(self.bmac_expire_sec * 1000)

    def _history(self, symbol: str, run_time_ms: int) -> pl.DataFrame | None:
        """The symbol's candles up to the one ending at ``run_time``; None without that one."""
        try:
            frame = read_frame(self.candle_reader.symbol_path(symbol))
        except FileNotFoundError:
            return None
        frame = frame.filter(pl.col("candle_end_time") <= pl.lit(run_time_ms).cast(_TIME))
        ends = frame.get_column("candle_end_time").dt.epoch("ms")
        if ends.is_empty() or ends[-1] != run_time_ms:
            return None  # stale: the period's candle is not in this file (yet)
        return frame

    async def calc_factors(self, run_time: RunTime, symbol: str | None = None) -> Any:
        """Wait for ``symbol``'s data for ``run_time``; its history with the factor columns.

        The last row is the candle ending at ``run_time``.

        Raises:
            PeriodNotReady: the file did not hold the candle ending at ``run_time`` by
                ``run_time + bmac_expire_sec``.
            FactorError: a factor raised (it names the symbol and the factor).
            UnsafeSymbol: the name could not be a file of the directory.
        """
        symbol = check_symbol(symbol or self.symbol)
        reader = self.candle_reader
        run_time_ms = to_ms(run_time, reader.tz)
        found: list[pl.DataFrame] = []

        async def on_ready(symbols: frozenset[str]) -> frozenset[str]:
            frame = await anyio.to_thread.run_sync(self._history, symbol, run_time_ms)
            if frame is None:
                return frozenset()  # read again at the next poll
            found.append(frame)
            return symbols

        watcher = PeriodWatcher(
            reader, run_time_ms, universe=lambda: frozenset({symbol}), fallback=frozenset
        )
        await wait_for_period(
            watcher, deadline_ms=self._deadline_ms(run_time_ms), on_ready=on_ready, clock=self.clock
        )
        if not found:
            when = from_ms(run_time_ms, reader.tz)
            msg = f"{symbol} not ready for {when} after {self.bmac_expire_sec}s"
            raise PeriodNotReady(msg, symbol=symbol, run_time_ms=run_time_ms)
        frame = await anyio.to_thread.run_sync(apply_single, found[0], self._specs, symbol)
        return self._present(frame)

    def _present(self, frame: pl.DataFrame) -> Any:
        """One symbol's history in the configured output (a subclass may reshape it)."""
        return to_bmac_pandas(frame) if self.output == "pandas" else frame

    def _present_market(self, frame: pl.DataFrame) -> Any:
        """The all-market rows in the configured output (a subclass may reshape them)."""
        return to_bmac_pandas(frame) if self.output == "pandas" else frame


class BmacAllMarketCalculator(BmacSingleSymbolCalculator):
    """Factors of every symbol for one period: one row per symbol.

    Args:
        exginfo_reader: the exginfo directory; its ``exginfo.pqt`` (once ready for the period)
            names the symbols to expect. ``None``: the recorder's manifest, or the candle
            directory's listing, does.
        candle_reader, factor_cfgs, package, bmac_expire_sec, clock, output: as for
            :class:`BmacSingleSymbolCalculator`.
        on_batch: called with each batch of symbols right after it is computed (progress
            reporting; tests use it to sequence a late symbol).

    Attributes:
        missing: symbols missing from the last ``calc_all_factors`` result (not ready by the
            deadline, or a factor failed for them).
        errors: the factor errors of the last result, by symbol.
    """

    def __init__(
        self,
        exginfo_reader: CandleFileReader | None,
        candle_reader: CandleFileReader,
        factor_cfgs: Iterable[FactorCfg],
        package: str = "factor",
        bmac_expire_sec: float = 40,
        *,
        clock: Clock | None = None,
        output: Output = "polars",
        on_batch: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        super().__init__(
            "", candle_reader, factor_cfgs, package, bmac_expire_sec, clock=clock, output=output
        )
        self.exginfo_reader = exginfo_reader
        self.on_batch = on_batch
        self.missing: tuple[str, ...] = ()
        self.errors: dict[str, FactorError] = {}

    def _exginfo_symbols(self, run_time_ms: int) -> frozenset[str] | None:
        reader = self.exginfo_reader
        # exginfo_<label>.ready for this period, or a later one (the recorder moved on)
        if reader is None or "exginfo" not in reader.ready_symbols(run_time_ms):
            return None
        return self._read_exginfo()

    def _read_exginfo(self) -> frozenset[str] | None:
        assert self.exginfo_reader is not None
        try:
            frame = read_frame(self.exginfo_reader.dir / "exginfo.pqt")
        except FileNotFoundError:
            return None
        return frozenset(frame.get_column("symbol").to_list())

    def _fallback_symbols(self) -> frozenset[str]:
        from_exginfo = self._read_exginfo() if self.exginfo_reader is not None else None
        return from_exginfo or frozenset(self.candle_reader.get_all_symbols())

    def _empty(self) -> pl.DataFrame:
        factors = {spec.column: pl.Float64 for spec in self._specs}
        return pl.DataFrame(schema={"symbol": pl.String, **CANDLE_SCHEMA, **factors})

    def _batch(
        self, symbols: frozenset[str], run_time_ms: int
    ) -> tuple[pl.DataFrame, dict[str, FactorError]]:
        reader = self.candle_reader
        market = read_market({s: reader.symbol_path(s) for s in sorted(symbols)})
        return apply_all_market(market, self._specs, run_time_ms)

    async def calc_all(self, run_time: RunTime) -> AllMarketResult:
        """Like :meth:`calc_all_factors`, returning the frame with the missing symbols."""
        run_time_ms = to_ms(run_time, self.candle_reader.tz)
        parts: list[pl.DataFrame] = []
        errors: dict[str, FactorError] = {}

        async def on_ready(symbols: frozenset[str]) -> frozenset[str]:
            part, failed = await anyio.to_thread.run_sync(self._batch, symbols, run_time_ms)
            parts.append(part)
            errors.update(failed)
            # a symbol whose file lacks the period's candle is read again at the next poll
            taken = frozenset(part.get_column("symbol").to_list()) | frozenset(failed)
            if self.on_batch is not None and taken:
                self.on_batch(taken)
            return taken

        watcher = PeriodWatcher(
            self.candle_reader,
            run_time_ms,
            universe=lambda: self._exginfo_symbols(run_time_ms),
            fallback=self._fallback_symbols,
        )
        outcome = await wait_for_period(
            watcher, deadline_ms=self._deadline_ms(run_time_ms), on_ready=on_ready, clock=self.clock
        )
        parts = [p for p in parts if not p.is_empty()]
        frame = pl.concat(parts, how="vertical_relaxed") if parts else self._empty()
        frame = frame.filter(pl.col("symbol").is_in(list(outcome.universe))).sort("symbol")
        computed = set(frame.get_column("symbol").to_list())
        missing = tuple(sorted(outcome.universe - computed))
        errors = {s: e for s, e in sorted(errors.items()) if s in outcome.universe}
        for error in errors.values():
            LOGGER.warning("%s: %s left out: %s", from_ms(run_time_ms), error.symbol, error)
        if missing:
            LOGGER.warning(
                "%d/%d symbols missing for %s: %s",
                len(missing),
                len(outcome.universe),
                from_ms(run_time_ms, self.candle_reader.tz),
                " ".join(missing),
            )
        return AllMarketResult(run_time_ms=run_time_ms, frame=frame, missing=missing, errors=errors)

    async def calc_all_factors(self, run_time: RunTime) -> Any:
        """Wait for the period (until ``run_time + bmac_expire_sec``); one row per symbol.

        Each symbol is read and computed as soon as its data lands. Missing symbols are in
        :attr:`missing` (factor errors in :attr:`errors`) and logged.
        """
        result = await self.calc_all(run_time)
        self.missing = result.missing
        self.errors = result.errors
        return self._present_market(result.frame)
