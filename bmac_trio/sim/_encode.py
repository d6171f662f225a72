"""Binance's JSON encodings of candles: REST 12-field rows and WebSocket kline events.

Decimals are strings at the symbol's precision (spot always 8 places, UM the contract's
``pricePrecision`` for prices and quote volume and ``quantityPrecision`` for base volume,
COIN-M contracts as integers and base volume with 8 places), exactly as the captured frames.
"""

from __future__ import annotations

from typing import Any

from bmac_trio.sim._market_data import Candle
from bmac_trio.sim._spec import SymbolSpec, dec

__all__ = ["dec", "kline_event", "rest_row"]


def rest_row(spec: SymbolSpec, c: Candle) -> list[Any]:
    """``[open_ms, "o", "h", "l", "c", "v", close_ms, "q", n, "V", "Q", "0"]``."""
    pdp, qdp, udp = spec.price_dp, spec.qty_dp, spec.quote_dp
    return [
        c.open_ms,
        dec(c.o, pdp),
        dec(c.h, pdp),
        dec(c.l, pdp),
        dec(c.c, pdp),
        dec(c.v, qdp),
        c.close_ms,
        dec(c.q, udp),
        c.n,
        dec(c.vt, qdp),
        dec(c.qt, udp),
        "0",
    ]


def kline_event(spec: SymbolSpec, interval: str, c: Candle, event_ms: int) -> dict[str, Any]:
    """The ``{"e":"kline",...}`` event, keys in Binance's order."""
    pdp, qdp, udp = spec.price_dp, spec.qty_dp, spec.quote_dp
    return {
        "e": "kline",
        "E": event_ms,
        "s": spec.symbol,
        "k": {
            "t": c.open_ms,
            "T": c.close_ms,
            "s": spec.symbol,
            "i": interval,
            "f": c.first_id,
            "L": c.last_id,
            "o": dec(c.o, pdp),
            "c": dec(c.c, pdp),
            "h": dec(c.h, pdp),
            "l": dec(c.l, pdp),
            "v": dec(c.v, qdp),
            "n": c.n,
            "x": c.closed,
            "q": dec(c.q, udp),
            "V": dec(c.vt, qdp),
            "Q": dec(c.qt, udp),
            "B": "0",
        },
    }
