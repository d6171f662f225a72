"""Binance's JSON encodings of candles: REST 12-field rows and WebSocket kline events.

Decimals are strings at the symbol's precision (spot always 8 places, UM the contract's
``pricePrecision`` for prices and quote volume and ``quantityPrecision`` for base volume,
COIN-M contracts as integers and base volume with 8 places), exactly as the captured frames.
Spot can ask for microseconds (:func:`row_in_micros`, :func:`event_in_micros`); the close time
is then the next open minus 1 µs, an assumption (Binance shows no example).
"""

from __future__ import annotations

from typing import Any

from bmac_trio.sim._market_data import Candle
from bmac_trio.sim._spec import SymbolSpec, dec

__all__ = [
    "continuous_kline_event",
    "dec",
    "event_in_micros",
    "kline_event",
    "rest_row",
    "row_in_micros",
]


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


def continuous_kline_event(
    pair: str, contract_type: str, spec: SymbolSpec, interval: str, c: Candle, event_ms: int
) -> dict[str, Any]:
    """The ``{"e":"continuous_kline",...}`` event: ``ps``/``ct``, and no ``s`` anywhere.

    ``spec`` is the contract the candle comes from (its precisions format the numbers).
    """
    k = kline_event(spec, interval, c, event_ms)["k"]
    del k["s"]
    return {"e": "continuous_kline", "E": event_ms, "ps": pair, "ct": contract_type, "k": k}


def _us_close(close_ms: int) -> int:
    """A close time in µs: the next open minus one microsecond."""
    return (close_ms + 1) * 1000 - 1


def row_in_micros(row: list[Any]) -> list[Any]:
    """A REST row with open and close times in microseconds (spot ``X-MBX-TIME-UNIT``)."""
    return [row[0] * 1000, *row[1:6], _us_close(row[6]), *row[7:]]


def event_in_micros(event: dict[str, Any]) -> dict[str, Any]:
    """A kline event with ``E``, ``t`` and ``T`` in microseconds (spot ``timeUnit``)."""
    k = event["k"]
    return {**event, "E": event["E"] * 1000, "k": {**k, "t": k["t"] * 1000, "T": _us_close(k["T"])}}
