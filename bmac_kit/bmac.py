"""BMAC's kit exactly: pandas results in BMAC's shapes, so a BMAC script changes its import line.

::

    from bmac_kit.bmac import (BmacAllMarketCalculator, BmacSingleSymbolCalculator,
                               CandleFileReader, convert_interval_to_timedelta,
                               next_run_time, now_time, sleep_until_run_time)

Same names, positional arguments and defaults as BMAC v2's kit; results are pandas frames as
BMAC returned them (pandas must be installed: ``pip install 'bmac-trio[pandas]'``):

* ``BmacSingleSymbolCalculator.calc_factors(run_time)``: the symbol's whole history, indexed by
  ``candle_end_time`` (``datetime64[ns, UTC]``), columns ``candle_begin_time``
  (``datetime64[ns, UTC]``), the nine candle columns and one column per factor (``float64``);
  the last row ends at ``run_time``.
* ``BmacAllMarketCalculator.calc_all_factors(run_time)``: one row per symbol, indexed by
  ``symbol``: each symbol's ``run_time`` row of the history above (same columns).
* ``CandleFileReader.read_candle(symbol)``: the symbol's file as the history above, without
  factors.

It runs under ``asyncio.run`` (as BMAC scripts do) and under trio. The polars-first API of
:mod:`bmac_kit` stays the recommended one: same calculators, polars frames, several times
faster for the whole market.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import polars as pl

from bmac_kit import _calculators, _reader
from bmac_kit._errors import FactorError, PeriodNotReady
from bmac_kit._factors import FactorCfg, bmac_pandas_frame, with_ns_times
from bmac_kit._time import (
    convert_interval_to_timedelta,
    next_run_time,
    now_time,
    sleep_until_run_time,
)
from bmac_trio.clock import Clock

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BmacAllMarketCalculator",
    "BmacSingleSymbolCalculator",
    "CandleFileReader",
    "FactorError",
    "PeriodNotReady",
    "convert_interval_to_timedelta",
    "next_run_time",
    "now_time",
    "sleep_until_run_time",
    "to_bmac_history",
    "to_bmac_market",
]


def to_bmac_history(frame: pl.DataFrame) -> pd.DataFrame:
    """One symbol's polars candles (and factors) in BMAC's pandas shape (module docstring)."""
    return bmac_pandas_frame(frame)


def to_bmac_market(frame: pl.DataFrame) -> pd.DataFrame:
    """An all-market polars result in BMAC's pandas shape: indexed by ``symbol``, the columns
    of a symbol's history (``candle_end_time`` is ``run_time`` for every row, as in BMAC it
    was the history's index)."""
    return with_ns_times(frame.drop("candle_end_time")).to_pandas().set_index("symbol")


class CandleFileReader(_reader.CandleFileReader):
    """BMAC's ``CandleFileReader(dir, save_type)``; :meth:`read_candle` gives pandas."""

    def read_candle(self, symbol: str, *, pandas: bool = True) -> Any:
        """The symbol's candles, indexed by ``candle_end_time``, BMAC's dtypes.

        Raises:
            FileNotFoundError: the symbol has no file.
        """
        frame = super().read_candle(symbol)
        assert isinstance(frame, pl.DataFrame)
        return to_bmac_history(frame) if pandas else frame


class BmacSingleSymbolCalculator(_calculators.BmacSingleSymbolCalculator):
    """BMAC's single-symbol calculator: ``calc_factors`` returns BMAC's pandas history."""

    def __init__(
        self,
        symbol: str,
        candle_reader: _reader.CandleFileReader,
        factor_cfgs: Iterable[FactorCfg],
        package: str = "factor",
        bmac_expire_sec: float = 40,
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(symbol, candle_reader, factor_cfgs, package, bmac_expire_sec, clock=clock)
        self.output = "pandas"

    def _present(self, frame: pl.DataFrame) -> Any:
        return to_bmac_history(frame)


class BmacAllMarketCalculator(_calculators.BmacAllMarketCalculator):
    """BMAC's all-market calculator: ``calc_all_factors`` returns BMAC's pandas frame.

    Symbols not ready by the deadline, or that a factor failed for, are left out (as BMAC did)
    and listed in :attr:`missing` (factor errors in :attr:`errors`).
    """

    def __init__(
        self,
        exginfo_reader: _reader.CandleFileReader | None,
        candle_reader: _reader.CandleFileReader,
        factor_cfgs: Iterable[FactorCfg],
        package: str = "factor",
        bmac_expire_sec: float = 40,
        *,
        clock: Clock | None = None,
        on_batch: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        super().__init__(
            exginfo_reader,
            candle_reader,
            factor_cfgs,
            package,
            bmac_expire_sec,
            clock=clock,
            on_batch=on_batch,
        )
        self.output = "pandas"

    def _present(self, frame: pl.DataFrame) -> Any:
        return to_bmac_history(frame)

    def _present_market(self, frame: pl.DataFrame) -> Any:
        return to_bmac_market(frame)
