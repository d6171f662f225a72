"""ccxt's own Binance classes, pointed at the simulator, load markets and page OHLCV.

An independent, widely used client is the check that the simulator speaks Binance's protocol
(paths, parameters, paging rules, JSON shapes) rather than our own idea of it.
"""

from __future__ import annotations

from typing import Any

import ccxt
import pytest
import trio

from bmac_trio.clock import TrioClock
from bmac_trio.sim import SimConfig, open_simulator

from .conftest import START_MS

_CLASSES = {"spot": ccxt.binance, "um": ccxt.binanceusdm, "cm": ccxt.binancecoinm}
_PREFIX = {"spot": "/api/v3", "um": "/fapi/v1", "cm": "/dapi/v1"}


def _client(market: str, rest_url: str) -> Any:
    ex = _CLASSES[market]({"enableRateLimit": False, "timeout": 10_000})
    api = ex.urls["api"]
    for key in list(api):
        # Every API family goes to the simulator; only the served market's paths exist.
        api[key] = rest_url + _PREFIX[market]
    ex.options["fetchCurrencies"] = False
    ex.options["fetchMarkets"] = {
        "types": [{"spot": "spot", "um": "linear", "cm": "inverse"}[market]]
    }
    return ex


def _page(ex: Any, symbol: str, since: int, until: int) -> list[list[Any]]:
    """Page forward 200 candles at a time, as a recorder would."""
    rows: list[list[Any]] = []
    while since < until:
        batch = ex.fetch_ohlcv(symbol, "1m", since=since, limit=200)
        batch = [r for r in batch if r[0] < until]
        if not batch:
            break
        rows.extend(batch)
        since = batch[-1][0] + 60_000
    return rows


@pytest.mark.parametrize(
    ("market", "symbol", "unified"),
    [
        ("spot", "BTCUSDT", "BTC/USDT"),
        ("um", "BTCUSDT", "BTC/USDT:USDT"),
        ("cm", "BTCUSD_PERP", "BTC/USD:BTC"),
    ],
)
async def test_ccxt_loads_markets_and_pages_ohlcv(market: str, symbol: str, unified: str) -> None:
    clock = TrioClock(start_ms=START_MS + 30_000, speed=1.0)
    cfg = SimConfig(market=market, symbols=12, seed=7)
    with trio.fail_after(60):
        async with open_simulator(cfg, clock=clock) as sim:
            ex = _client(market, sim.rest_url)
            markets = await trio.to_thread.run_sync(ex.load_markets)
            assert unified in markets
            assert markets[unified]["id"] == symbol
            ids = {m["id"] for m in markets.values()}
            assert set(sim.trading_symbols()) <= ids
            since = START_MS - 900 * 60_000
            rows = await trio.to_thread.run_sync(_page, ex, unified, since, START_MS)
            truth = [r for r in sim.ground_truth(symbol, "1m") if r[0] >= since]
            assert len(rows) == 900
            assert [r[0] for r in rows] == [t[0] for t in truth]
            # ccxt reports COIN-M volume in the base asset: row[7], not the contracts.
            vol = 7 if market == "cm" else 5
            expected = [[t[0], *(float(x) for x in t[1:5]), float(t[vol])] for t in truth]
            assert rows == expected
            assert sim.stats.rest_requests >= 5
