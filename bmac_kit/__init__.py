"""bmac_kit: turn the recorder's files into factors the moment a period closes.

BMAC's consumer-kit API (same names, same meanings) on polars, under asyncio or trio (AnyIO).
A BMAC script that wants BMAC's exact pandas results imports from :mod:`bmac_kit.bmac`
instead and changes nothing else. The polars-first API here is the recommended one::

    import trio
    from bmac_kit import (BmacAllMarketCalculator, CandleFileReader, next_run_time,
                          sleep_until_run_time, convert_interval_to_timedelta)

    async def main():
        candles = CandleFileReader("~/usdt_perp_5m/usdt_perp_5m")
        exginfo = CandleFileReader("~/usdt_perp_5m/exginfo_5m")
        calc = BmacAllMarketCalculator(exginfo, candles, [("PctChg", 100), ("TrdNumMeanV1", 80)])
        run_time = next_run_time("5m") - convert_interval_to_timedelta("5m")
        while True:
            df = await calc.calc_all_factors(run_time)   # polars, one row per symbol
            ...
            run_time = next_run_time("5m")
            await sleep_until_run_time(run_time)

    trio.run(main)   # or asyncio.run(main())

Factor modules are looked up in the user's ``factor`` package first, then among the bundled
ones (:mod:`bmac_kit.factors`).
"""

import os
from typing import Any

from bmac_kit._calculators import (
    AllMarketResult as AllMarketResult,
    BmacAllMarketCalculator as BmacAllMarketCalculator,
    BmacSingleSymbolCalculator as BmacSingleSymbolCalculator,
)
from bmac_kit._errors import FactorError as FactorError, PeriodNotReady as PeriodNotReady
from bmac_kit._factors import FactorSpec as FactorSpec, to_bmac_pandas as to_bmac_pandas
from bmac_kit._reader import CandleFileReader as CandleFileReader
from bmac_kit._subscribe import (
    Market as Market,
    Period as Period,
    subscribe as _subscribe_bus,
)
from bmac_kit._time import (
    convert_interval_to_timedelta as convert_interval_to_timedelta,
    get_default_clock as get_default_clock,
    next_run_time as next_run_time,
    now_time as now_time,
    set_default_clock as set_default_clock,
    sleep_until_run_time as sleep_until_run_time,
)
from bmac_kit.streaming import BmacStreamingCalculator as BmacStreamingCalculator
from bmac_kit.window import MarketWindow as MarketWindow

__all__ = [
    "AllMarketResult",
    "BmacAllMarketCalculator",
    "BmacSingleSymbolCalculator",
    "BmacStreamingCalculator",
    "CandleFileReader",
    "FactorError",
    "FactorSpec",
    "Market",
    "MarketWindow",
    "Period",
    "PeriodNotReady",
    "convert_interval_to_timedelta",
    "get_default_clock",
    "next_run_time",
    "now_time",
    "set_default_clock",
    "sleep_until_run_time",
    "subscribe",
    "to_bmac_pandas",
]


def subscribe(source: Any, **options: Any) -> Any:
    """``async with subscribe(DIR | "ipc://…" | "tcp://…" | "nats://…") as market:`` — the
    whole market in memory, advanced live (docs/bus.md; a NATS JetStream stream: docs/nats.md).
    """
    text = os.fspath(source)
    if text.startswith(("nats://", "tls://")):  # loaded only for NATS
        from bmac_kit._subscribe_nats import subscribe_nats

        return subscribe_nats(text)
    return _subscribe_bus(source, **options)
