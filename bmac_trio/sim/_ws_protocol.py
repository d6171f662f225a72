"""Binance's WebSocket market-stream protocol, sans-IO: routes, stream names, control frames.

* Routes: ``/ws/<s1>/<s2>`` (raw) and ``/stream?streams=<s1>/<s2>`` (combined), also without
  streams; USDⓈ-M puts them behind ``/market`` (klines), ``/public`` or ``/private``, and an
  unrouted UM connection is accepted but gets no kline data (Binance's 2026 routing). A path
  segment that is no valid stream name (ccxt.pro's ``/ws/0``) is accepted and subscribes
  nothing, like an empty or unknown ``streams=`` list. Spot's ``timeUnit=MICROSECOND`` query
  parameter switches the connection's event times to microseconds.
* Stream names are lower-case: ``<symbol>@kline_<interval>``, spot's UTC+8 variant
  ``<symbol>@kline_<interval>@+08:00``, futures' ``<pair>_<contract>@continuousKline_<interval>``;
  non-ASCII letters are kept as they are (``币安人生usdt@kline_1m``, percent-encoded in a URL);
  other well-formed names are accepted and never produce data; malformed or upper-case ones
  (``btc-usdt@kline_1m``) are "invalid stream".
* Control frames: SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS / SET_PROPERTY / GET_PROPERTY
  with replies ``{"result":...,"id":...}`` and errors ``{"error":{"code","msg"},"id":...}``
  (codes 0 unknown property, 1 bad value type, 2 invalid request, 3 invalid JSON).
* Going over the per-connection stream cap is refused with code 2 and nothing subscribed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson

from bmac_trio.binance.markets import Market

__all__ = [
    "ConnProtocol",
    "ContinuousStream",
    "KlineStream",
    "Route",
    "parse_route",
    "parse_stream",
]

#: A symbol in a stream name: lower-case ASCII, or non-ASCII letters (``币安人生usdt``).
_SYMBOL = r"(?:[a-z0-9_]|[^\W\x00-\x7f])+"
_STREAM = re.compile(rf"^(?:{_SYMBOL}|!)+@[a-z0-9_@.:+!A-Z-]+$")
_KLINE = re.compile(rf"^({_SYMBOL})@kline_([0-9]+[smhdwM])(@\+08:00)?$")
_CONTINUOUS = re.compile(r"^([a-z0-9]+)_([a-z_]+)@continuousKline_([0-9]+[smhdwM])$")
_CONTRACT_TYPES = {
    "um": frozenset({"PERPETUAL", "CURRENT_QUARTER", "NEXT_QUARTER", "TRADIFI_PERPETUAL"}),
    "cm": frozenset({"PERPETUAL", "CURRENT_QUARTER", "NEXT_QUARTER"}),
}
#: Spot's ``@+08:00`` kline streams bucket candles in UTC+8.
UTC8_MS = 8 * 3_600_000
_SPOT_ID = re.compile(r"^[A-Za-z0-9]{1,36}$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_UM_ROUTES = ("/market", "/public", "/private")


@dataclass(frozen=True, slots=True)
class KlineStream:
    """A kline stream: upper-case ``symbol`` as in payloads, and its interval."""

    symbol: str
    interval: str
    #: Bucket offset from UTC (spot ``@+08:00``: 8 h); times in events stay UTC epochs.
    offset_ms: int = 0


@dataclass(frozen=True, slots=True)
class ContinuousStream:
    """A continuous-contract kline stream: upper-case ``pair`` and contract type."""

    pair: str
    contract_type: str
    interval: str


@dataclass(frozen=True, slots=True)
class Route:
    """Where a connection was opened."""

    combined: bool
    streams: tuple[str, ...]
    #: False on USDⓈ-M connections outside ``/market``: kline streams stay silent.
    klines: bool
    #: Spot ``timeUnit=MICROSECOND``: event times in microseconds.
    micros: bool = False


def parse_stream(name: object, market: Market) -> KlineStream | ContinuousStream | bool:
    """A kline or continuous-kline stream, ``True`` for another valid name, ``False`` if invalid."""
    if not isinstance(name, str) or not _STREAM.match(name):
        return False
    m = _KLINE.match(name)
    if m is not None:
        zoned = m.group(3) is not None
        if m.group(2) not in market.intervals or (zoned and market.is_futures):
            return False
        return KlineStream(m.group(1).upper(), m.group(2), UTC8_MS if zoned else 0)
    c = _CONTINUOUS.match(name)
    if c is not None:
        ctype = c.group(2).upper()
        if ctype not in _CONTRACT_TYPES.get(market.name, ()) or c.group(3) not in market.intervals:
            return False
        return ContinuousStream(c.group(1).upper(), ctype, c.group(3))
    return "@kline_" not in name and "@continuousKline_" not in name


def parse_route(market: Market, path: str, query_string: bytes) -> Route | None:
    """The route for a WebSocket request path, or None (answered with 404)."""
    klines = True
    if market.name == "um":
        klines = False
        for prefix in _UM_ROUTES:
            if path == prefix or path.startswith(prefix + "/"):
                path = path[len(prefix) :]
                klines = prefix == "/market"
                break
    # Not parse_qs: a "+" is literal here (``btcusdt@kline_1d@+08:00``), not a space.
    query: dict[str, list[str]] = {}
    for part in query_string.decode("latin-1").split("&"):
        key, _, value = part.partition("=")
        query.setdefault(unquote(key), []).append(unquote(value))
    unit = query.get("timeUnit", [""])[0]
    micros = market.name == "spot" and unit.upper() == "MICROSECOND"
    raw: str | None = None
    combined = False
    if path == "/ws" or path.startswith("/ws/"):
        raw = path[4:]
    elif path in ("/stream", "/stream/"):
        raw, combined = query.get("streams", [""])[0], True
    if raw is None:
        return None
    # Names that are no valid stream (ccxt.pro's ``/ws/0``) subscribe nothing, as on Binance.
    names = (s for s in raw.split("/") if s)
    streams = tuple(s for s in names if parse_stream(s, market) is not False)
    return Route(combined=combined, streams=streams, klines=klines, micros=micros)


def _encode(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _error(code: int, msg: str, req_id: Any = None) -> str:
    return _encode({"error": {"code": code, "msg": msg}, "id": req_id})


@dataclass(slots=True)
class ConnProtocol:
    """One connection's subscriptions and properties; turns control frames into replies."""

    market: Market
    max_streams: int
    combined: bool
    streams: dict[str, None] = field(default_factory=dict)

    def _valid_id(self, req_id: Any) -> bool:
        if self.market.is_futures:
            return isinstance(req_id, int) and not isinstance(req_id, bool) and req_id >= 0
        if req_id is None:
            return True
        if isinstance(req_id, int) and not isinstance(req_id, bool):
            return -(2**63) <= req_id < 2**63
        return isinstance(req_id, str) and bool(_SPOT_ID.match(req_id))

    def handle(self, text: str | bytes) -> tuple[str, list[str], list[str]]:
        """Answer one client frame: ``(reply, streams_added, streams_removed)``."""
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return _error(3, f"Invalid JSON: {exc}"), [], []
        if not isinstance(msg, dict):
            return _error(3, "Invalid JSON: expected an object"), [], []
        req_id = msg.get("id")
        if "method" not in msg:
            return _error(2, "Invalid request: missing field `method`", req_id), [], []
        method = msg["method"]
        if method not in _METHODS:
            expected = ", ".join(f"`{m}`" for m in _METHODS)
            return (
                _error(
                    2,
                    f"Invalid request: unknown variant `{method}`, expected one of {expected}",
                    req_id,
                ),
                [],
                [],
            )
        if "id" not in msg or not self._valid_id(req_id):
            what = "an unsigned integer" if self.market.is_futures else (
                "an int64, an alphanumeric string of at most 36 characters, or null")  # fmt: skip
            return _error(2, f"Invalid request: request ID must be {what}", req_id), [], []
        params = msg.get("params", [])
        if method == "LIST_SUBSCRIPTIONS":
            return _encode({"result": list(self.streams), "id": req_id}), [], []
        if not isinstance(params, list):
            return _error(2, "Invalid request: params must be an array", req_id), [], []
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            return self._property(method, params, req_id), [], []
        if any(parse_stream(p, self.market) is False for p in params):
            return _error(2, "Invalid request: invalid stream", req_id), [], []
        if method == "SUBSCRIBE":
            new = [p for p in dict.fromkeys(params) if p not in self.streams]
            if len(self.streams) + len(new) > self.max_streams:
                return (
                    _error(
                        2,
                        f"Invalid request: too many streams; at most "
                        f"{self.max_streams} per connection",
                        req_id,
                    ),
                    [],
                    [],
                )
            for p in new:
                self.streams[p] = None
            return _encode({"result": None, "id": req_id}), new, []
        gone = [p for p in dict.fromkeys(params) if p in self.streams]
        for p in gone:
            del self.streams[p]
        return _encode({"result": None, "id": req_id}), [], gone

    def _property(self, method: str, params: list[Any], req_id: Any) -> str:
        if not params or params[0] != "combined":
            return _error(0, "Unknown property", req_id)
        if method == "GET_PROPERTY":
            if len(params) != 1:
                return _error(2, "Invalid request: too many parameters", req_id)
            return _encode({"result": self.combined, "id": req_id})
        if len(params) != 2:
            return _error(2, "Invalid request: wrong number of parameters", req_id)
        if not isinstance(params[1], bool):
            return _error(1, "Invalid value type: expected Boolean", req_id)
        self.combined = params[1]
        return _encode({"result": None, "id": req_id})
