"""Streaming factors: the all-market factor frame of each period, from the in-memory window.

    from bmac_kit.streaming import BmacStreamingCalculator

    calc = BmacStreamingCalculator(market, [("PctChg", 100), ("Rsi", 14)])
    async for result in calc.results():      # one per period, asyncio or trio (AnyIO)
        result.frame                         # as BmacAllMarketCalculator.calc_all_factors
        result.missing

See docs/streaming.md.
"""

from bmac_kit.streaming._calculator import BmacStreamingCalculator as BmacStreamingCalculator
from bmac_kit.streaming._kernels import KERNELS as KERNELS
from bmac_kit.streaming._market import (
    MarketLike as MarketLike,
    PeriodLike as PeriodLike,
    ReplayMarket as ReplayMarket,
    ReplayPeriod as ReplayPeriod,
)

__all__ = [
    "KERNELS",
    "BmacStreamingCalculator",
    "MarketLike",
    "PeriodLike",
    "ReplayMarket",
    "ReplayPeriod",
]
