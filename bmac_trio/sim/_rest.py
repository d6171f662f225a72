"""Binance's public REST endpoints as pure functions: (path, query, now) → (status, body).

Validation order and error bodies follow Binance (``{"code": <negative>, "msg": ...}`` with
HTTP 400): missing parameters -1102, non-numeric numbers -1100, bad limit -1130, bad interval
-1120, unknown symbol -1121, unknown parameters -1104, duplicates -1101, startTime after
endTime -1023 (futures), more than 200 days on COIN-M -4088. Spot honours ``timeZone`` on
klines (buckets shifted, times still UTC) and the ``X-MBX-TIME-UNIT: MICROSECOND`` header
(``micros``: kline open/close times and ``serverTime`` in microseconds). Rate limiting and
faults are applied around these functions by the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from bmac_trio.binance.intervals import DAY_MS
from bmac_trio.sim._encode import rest_row, row_in_micros
from bmac_trio.sim._exchange import FUNDING_PERIOD_MS, Exchange
from bmac_trio.sim._symbols import SymbolSpec
from bmac_trio.sim._zones import parse_time_zone, zoned

__all__ = ["ApiError", "handle", "request_weight"]

_NUMBER = re.compile(r"^[0-9]{1,20}$")
_CM_MAX_SPAN_MS = 200 * DAY_MS
_MICROS = 10**15
_KLINE_ENDPOINTS = frozenset({"klines", "uiKlines"})


class ApiError(Exception):
    """A Binance error answer."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status

    def body(self) -> dict[str, Any]:
        """``{"code", "msg"}``."""
        return {"code": self.code, "msg": self.msg}


@dataclass(frozen=True, slots=True)
class _Params:
    values: dict[str, str]

    @classmethod
    def parse(cls, pairs: list[tuple[str, str]], allowed: set[str]) -> _Params:
        values: dict[str, str] = {}
        for k, v in pairs:
            if k in values:
                raise ApiError(-1101, "Duplicate values for a parameter detected.")
            values[k] = v
        unknown = [k for k in values if k not in allowed]
        if unknown:
            read = len(values) - len(unknown)
            raise ApiError(
                -1104,
                f"Not all sent parameters were read; read '{read}' parameter(s) but was "
                f"sent '{len(values)}'.",
            )
        return cls(values)

    def required(self, name: str) -> str:
        v = self.values.get(name)
        if not v:
            raise ApiError(
                -1102,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return v

    def number(self, name: str) -> int | None:
        v = self.values.get(name)
        if v is None or v == "":
            return None
        if not _NUMBER.match(v):
            raise ApiError(
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is "
                "'^[0-9]{1,20}$'.",
            )
        return int(v)


def _limit(p: _Params, default: int, maximum: int) -> int:
    limit = p.number("limit")
    if limit is None:
        return default
    if not 1 <= limit <= maximum:
        raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _symbol(ex: Exchange, name: str, now_ms: int) -> SymbolSpec:
    spec = ex.specs.get(name)
    if spec is None or ex.status(spec, now_ms) is None:
        raise ApiError(-1121, "Invalid symbol.")
    return spec


def request_weight(ex: Exchange, endpoint: str, pairs: list[tuple[str, str]]) -> int:
    """Request weight as Binance counts it (from the parameters as sent)."""
    m = ex.market
    if endpoint in ("klines", "uiKlines", "continuousKlines"):
        raw = dict(pairs).get("limit", "")
        limit = int(raw) if _NUMBER.match(raw) else m.kline_default_limit
        return m.kline_weight(limit)
    if endpoint == "exchangeInfo":
        return m.exchange_info_weight
    if endpoint == "premiumIndex":
        if m.name == "cm":
            return 10
        return 1 if dict(pairs).get("symbol") else 10
    return 1


# ------------------------------------------------------------------------------- endpoints


def _exchange_info(ex: Exchange, pairs: list[tuple[str, str]], now_ms: int) -> Any:
    allowed = {"symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"}
    p = _Params.parse(pairs, allowed if ex.market.name == "spot" else set())
    wanted: list[str] | None = None
    if "symbol" in p.values:
        wanted = [p.values["symbol"]]
    elif "symbols" in p.values:
        try:
            wanted = orjson.loads(p.values["symbols"])
        except orjson.JSONDecodeError:
            wanted = None
        if not isinstance(wanted, list) or not all(isinstance(s, str) for s in wanted):
            raise ApiError(-1100, "Illegal characters found in parameter 'symbols'.")
    symbols = []
    if wanted is not None:
        for name in wanted:
            spec = _symbol(ex, name, now_ms)
            symbols.append(ex.symbol_entry(spec, now_ms))
    else:
        status_filter = p.values.get("symbolStatus")
        for spec in ex.specs.values():
            entry = ex.symbol_entry(spec, now_ms)
            if entry is None:
                continue
            if status_filter and entry.get("status") != status_filter:
                continue
            symbols.append(entry)
    body: dict[str, Any] = {"timezone": "UTC", "serverTime": now_ms}
    if ex.market.is_futures and ex.market.name == "um":
        body["futuresType"] = "U_MARGINED"
    body["rateLimits"] = _rate_limits(ex)
    body["exchangeFilters"] = []
    if ex.market.name == "um":
        body["assets"] = (ex.snapshot_top or {}).get("assets") or [
            {"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"},
            {"asset": "BTC", "marginAvailable": True, "autoAssetExchange": "-0.00100000"},
            {"asset": "USDC", "marginAvailable": True, "autoAssetExchange": "-10000"},
        ]
    body["symbols"] = symbols
    return body


def _rate_limits(ex: Exchange) -> list[dict[str, Any]]:
    limit = ex.cfg.weight_limit or ex.market.default_weight_limit

    def rl(kind: str, interval: str, num: int, value: int) -> dict[str, Any]:
        return {"rateLimitType": kind, "interval": interval, "intervalNum": num, "limit": value}

    if ex.market.name == "spot":
        return [
            rl("REQUEST_WEIGHT", "MINUTE", 1, limit),
            rl("ORDERS", "SECOND", 10, 100),
            rl("ORDERS", "DAY", 1, 200000),
            rl("RAW_REQUESTS", "MINUTE", 5, 61000),
        ]
    return [rl("REQUEST_WEIGHT", "MINUTE", 1, limit), rl("ORDERS", "MINUTE", 1, 1200)] + (
        [rl("ORDERS", "SECOND", 10, 300)] if ex.market.name == "um" else []
    )


def _klines(
    ex: Exchange, pairs: list[tuple[str, str]], now_ms: int, *, continuous: bool = False
) -> Any:
    m = ex.market
    allowed = {"symbol", "interval", "startTime", "endTime", "limit"}
    if m.name == "spot":
        allowed.add("timeZone")
    if continuous:
        allowed = (allowed - {"symbol"}) | {"pair", "contractType"}
    p = _Params.parse(pairs, allowed)
    pair = ctype = symbol = ""
    if continuous:
        pair = p.required("pair")
        ctype = p.required("contractType")
        if not ex.has_continuous(pair, ctype):
            raise ApiError(-1121, "Invalid symbol.")
    else:
        symbol = p.required("symbol")
    interval = p.required("interval")
    offset = parse_time_zone(p.values.get("timeZone") or "0")
    if offset is None:
        raise ApiError(-1130, "Data sent for parameter 'timeZone' is not valid.")
    start = p.number("startTime")
    end = p.number("endTime")
    if m.name == "spot":
        # Spot accepts startTime/endTime in microseconds too (16 digits).
        start = start // 1000 if start is not None and start >= _MICROS else start
        end = end // 1000 if end is not None and end >= _MICROS else end
    limit = _limit(p, m.kline_default_limit, m.kline_max_limit)
    if interval not in m.intervals:
        raise ApiError(-1120, "Invalid interval.")
    spec = None if continuous else _symbol(ex, symbol, now_ms)
    iv = zoned(interval, offset)
    if start is not None and end is not None and start > end:
        if m.is_futures:
            raise ApiError(-1023, "Start time is greater than end time.")
        return []
    newest = start is None
    if m.klines_newest_first:
        newest = True
        if start is not None and end is None:
            end = min(start + _CM_MAX_SPAN_MS, now_ms)
        if start is not None and end is not None and end - start > _CM_MAX_SPAN_MS:
            raise ApiError(-4088, "Maximum time interval is 200 days.")
    window = {"lower": start, "upper": end, "limit": limit, "newest": newest, "now_ms": now_ms}
    if spec is not None:
        return [rest_row(spec, c) for c in ex.select(spec, iv, **window)]
    # Each candle of a continuous contract comes from (and is formatted as) its holder.
    return [rest_row(held, c) for held, c in ex.select_continuous(pair, ctype, iv, **window)]


def _premium_entry(ex: Exchange, spec: SymbolSpec, now_ms: int) -> dict[str, Any]:
    perp = ex.is_perpetual(spec)
    mark = ex.mark_price(spec, now_ms)
    nxt = (now_ms // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS
    last = ex.funding_rate(spec, nxt - FUNDING_PERIOD_MS) if perp else ""
    entry: dict[str, Any] = {"symbol": spec.symbol}
    if ex.market.name == "cm":
        entry["pair"] = spec.symbol.split("_")[0]
    entry.update(
        {
            "markPrice": mark,
            "indexPrice": mark,
            "estimatedSettlePrice": mark,
            "lastFundingRate": last,
            "interestRate": "0.00010000" if perp else "",
            "nextFundingTime": nxt if perp else 0,
            "time": now_ms,
        }
    )
    return entry


def _premium_index(ex: Exchange, pairs: list[tuple[str, str]], now_ms: int) -> Any:
    allowed = {"symbol"} | ({"pair"} if ex.market.name == "cm" else set())
    p = _Params.parse(pairs, allowed)
    if "symbol" in p.values:
        spec = _symbol(ex, p.values["symbol"], now_ms)
        entry = _premium_entry(ex, spec, now_ms)
        return [entry] if ex.market.name == "cm" else entry
    specs = [s for s in ex.specs.values() if ex.is_trading(s, now_ms)]
    if "pair" in p.values:
        specs = [s for s in specs if s.symbol.split("_")[0] == p.values["pair"]]
    return [_premium_entry(ex, s, now_ms) for s in specs]


def _funding_rate(ex: Exchange, pairs: list[tuple[str, str]], now_ms: int) -> Any:
    p = _Params.parse(pairs, {"symbol", "startTime", "endTime", "limit"})
    cm = ex.market.name == "cm"
    name = p.required("symbol") if cm else p.values.get("symbol")
    start, end = p.number("startTime"), p.number("endTime")
    limit = _limit(p, 100, 1000)
    if start is not None and end is not None and start > end:
        raise ApiError(-1023, "Start time is greater than end time.")
    specs = [_symbol(ex, name, now_ms)] if name else list(ex.specs.values())
    rows: list[tuple[int, SymbolSpec]] = []
    upper = min(now_ms, end) if end is not None else now_ms
    # Without startTime only the newest ``limit`` rows matter; every perpetual has one row
    # per funding period, so they all lie within ``limit`` periods of ``upper``.
    lower = start if start is not None else upper - (limit + 1) * FUNDING_PERIOD_MS
    for spec in specs:
        if not ex.is_perpetual(spec) or ex.status(spec, now_ms) is None:
            continue
        rows.extend((t, spec) for t in ex.funding_times(spec, lower, upper))
    rows.sort(key=lambda r: (r[0], r[1].symbol))
    rows = rows[:limit] if start is not None else rows[-limit:]
    out = []
    for t, spec in rows:
        row: dict[str, Any] = {
            "symbol": spec.symbol,
            "fundingTime": t,
            "fundingRate": ex.funding_rate(spec, t),
        }
        if not cm:
            row = {
                "symbol": spec.symbol,
                "fundingRate": row["fundingRate"],
                "fundingTime": t,
                "markPrice": ex.mark_price(spec, t),
            }
        out.append(row)
    return out


def _ping(ex: Exchange, pairs: list[tuple[str, str]], now_ms: int) -> Any:
    _Params.parse(pairs, set())
    return {}


def _time(ex: Exchange, pairs: list[tuple[str, str]], now_ms: int) -> Any:
    _Params.parse(pairs, set())
    return {"serverTime": now_ms}


def _in_micros(endpoint: str, body: Any) -> Any:
    """Spot's answer under ``X-MBX-TIME-UNIT: MICROSECOND``: every time field in µs."""
    if endpoint in _KLINE_ENDPOINTS:
        return [row_in_micros(r) for r in body]
    if isinstance(body, dict) and "serverTime" in body:
        return {**body, "serverTime": body["serverTime"] * 1000}
    return body


_SPOT = {"ping": _ping, "time": _time, "exchangeInfo": _exchange_info, "klines": _klines,
         "uiKlines": _klines}  # fmt: skip
_FUTURES = {
    "ping": _ping,
    "time": _time,
    "exchangeInfo": _exchange_info,
    "klines": _klines,
    "continuousKlines": lambda ex, pairs, now: _klines(ex, pairs, now, continuous=True),
    "premiumIndex": _premium_index,
    "fundingRate": _funding_rate,
}


def endpoint_of(ex: Exchange, path: str) -> str | None:
    """The endpoint name for ``path`` on this market, or None (404)."""
    prefix = ex.market.rest_prefix + "/"
    if not path.startswith(prefix):
        return None
    name = path[len(prefix) :]
    table = _FUTURES if ex.market.is_futures else _SPOT
    return name if name in table else None


def handle(
    ex: Exchange,
    endpoint: str,
    pairs: list[tuple[str, str]],
    now_ms: int,
    *,
    micros: bool = False,
) -> tuple[int, Any]:
    """Answer one GET request: ``(http_status, json_body)``; ``micros`` only counts on spot."""
    table = _FUTURES if ex.market.is_futures else _SPOT
    try:
        body = table[endpoint](ex, pairs, now_ms)
    except ApiError as err:
        return err.status, err.body()
    if micros and not ex.market.is_futures:
        body = _in_micros(endpoint, body)
    return 200, body
