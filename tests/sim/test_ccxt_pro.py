"""ccxt.pro's ``watch_ohlcv`` against the simulator: it connects to ``/ws/<n>`` (UM:
``/market/ws/<n>``) and then sends SUBSCRIBE, so the simulator must accept a path naming no
stream. The closed candles it watches equal ``fetch_ohlcv``'s."""

from __future__ import annotations

import asyncio
from typing import Any

import ccxt.pro
import pytest
import trio

from bmac_trio.binance.intervals import MINUTE_MS
from bmac_trio.clock import TrioClock
from bmac_trio.sim import SimConfig, open_simulator

from .conftest import START_MS

_CLASSES = {"spot": ccxt.pro.binance, "um": ccxt.pro.binanceusdm, "cm": ccxt.pro.binancecoinm}
_PREFIX = {"spot": "/api/v3", "um": "/fapi/v1", "cm": "/dapi/v1"}
_WS_TYPE = {"spot": "spot", "um": "linear", "cm": "inverse"}


def _client(market: str, rest_url: str, ws_url: str) -> Any:
    ex = _CLASSES[market]({"enableRateLimit": False, "timeout": 10_000})
    api = ex.urls["api"]
    for key in list(api):
        if key != "ws":
            api[key] = rest_url + _PREFIX[market]
    api["ws"] = {_WS_TYPE[market]: ws_url + "/ws"}
    ex.options["fetchCurrencies"] = False
    ex.options["fetchMarkets"] = {"types": [_WS_TYPE[market]]}
    return ex


async def _watch_then_fetch(ex: Any, symbol: str) -> tuple[list[Any], list[Any]]:
    """Watch three candles form; the middle one was watched from its start to its close
    (a candle's closing event comes before any update of the next one)."""
    try:
        await ex.load_markets()
        seen: dict[int, list[Any]] = {}
        while len(seen) < 3:
            for candle in await ex.watch_ohlcv(symbol, "1m"):
                seen[candle[0]] = candle
        middle = sorted(seen)[1]
        fetched = await ex.fetch_ohlcv(symbol, "1m", since=middle, limit=1)
        return seen[middle], fetched[0]
    finally:
        await ex.close()


@pytest.mark.parametrize(
    ("market", "unified"),
    [("spot", "BTC/USDT"), ("um", "BTC/USDT:USDT"), ("cm", "BTC/USD:BTC")],
)
async def test_ccxt_pro_watch_ohlcv_closed_candles_equal_fetch_ohlcv(
    market: str, unified: str
) -> None:
    clock = TrioClock(start_ms=START_MS - 2000, speed=30.0)
    # No zero-trade candles: a futures stream sends nothing for one before its close.
    cfg = SimConfig(
        market=market, symbols=8, seed=7, zero_trade_fraction=0.0, min_real_update_s=0.05
    )
    with trio.fail_after(60):
        async with open_simulator(cfg, clock=clock) as sim:
            ex = _client(market, sim.rest_url, sim.ws_url)
            watched, fetched = await trio.to_thread.run_sync(
                asyncio.run, _watch_then_fetch(ex, unified)
            )
            assert watched[0] == fetched[0]
            assert watched[0] % MINUTE_MS == 0
            # ccxt gives COIN-M volume from REST in the base asset, from the stream in contracts.
            width = 5 if market == "cm" else 6
            assert watched[:width] == fetched[:width]
            assert sim.stats.ws_connections_opened >= 1
            assert sim.stats.ws_connections_refused == 0
