"""Binance's kline protocol, sans-IO: bytes and JSON in, typed frozen dataclasses out, and back.

Nothing here does I/O or reads a clock. Everything that comes from the network is checked
before it is trusted: a frame or body that is malformed or hostile (wrong types, NaN, infinite,
negative or absurd numbers, a symbol name that could escape the data directory, a candle not on
the interval's grid) raises :class:`RemoteProtocolError` and nothing else, so the caller needs a
single ``except`` to drop it. Unknown fields are ignored, as Binance adds fields over time.

Notes on choices:

* ``klines_params`` always sends both ``startTime`` and ``endTime`` (COIN-M returns the *newest*
  ``limit`` candles before ``endTime``), with ``endTime`` the close time of the last wanted candle
  and at most ``limit`` candles in the window, so every market returns exactly that window.
* ``parse_weight_headers`` / ``parse_retry_after`` return None for a missing or unreadable
  header instead of raising: a good response is not thrown away over a header.
* ``parse_premium_index`` skips entries whose symbol is unsafe as a file name (they could never
  be recorded) rather than failing the whole snapshot; anything else malformed raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from bmac_trio.binance.candles import (
    _MAX_TEXT,
    MAX_COUNT,
    MAX_DECIMAL,
    MAX_TIME_MS,
    Candle,
    _as_interval,
    _check_grid,
    _dec,
    _fail,
    _int,
    _loads,
    _ms,
    _symbol,
    candles_to_frame,
)
from bmac_trio.binance.intervals import Interval
from bmac_trio.binance.markets import Market
from bmac_trio.binance.symbols import is_safe_symbol

__all__ = [
    "MAX_COUNT",
    "MAX_DECIMAL",
    "MAX_TIME_MS",
    "Candle",
    "ControlError",
    "ControlReply",
    "FundingRate",
    "Ignored",
    "KlineEvent",
    "WsEvent",
    "candles_to_frame",
    "closed_only",
    "control_message",
    "kline_stream_name",
    "klines_params",
    "parse_error_body",
    "parse_klines",
    "parse_premium_index",
    "parse_retry_after",
    "parse_server_time",
    "parse_weight_headers",
    "parse_ws_message",
    "ws_path",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class KlineEvent:
    """A kline push; only ``closed`` ones are final."""

    candle: Candle
    closed: bool
    event_ms: int
    close_ms: int
    #: The combined-stream name, None for a raw (``/ws``) frame.
    stream: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlReply:
    """The reply to SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS ..."""

    id: int | str | None
    result: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlError:
    """An error frame, ``{"code":2,"msg":...}`` or ``{"error":{...},"id":2}``."""

    id: int | str | None
    code: int
    msg: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored:
    """A well-formed frame we do not use (other events, ``serverShutdown``)."""

    reason: str


WsEvent = KlineEvent | ControlReply | ControlError | Ignored


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingRate:
    """One premiumIndex entry: ``lastFundingRate`` (None for delivery contracts' ``""``)."""

    symbol: str
    funding_rate: float | None
    next_funding_time_ms: int | None = None


# --------------------------------------------------------------------------- WebSocket


def kline_stream_name(symbol: str, interval: Interval | str) -> str:
    """``<symbol lower-case>@kline_<interval>``: ``币安人生USDT`` streams as ``币安人生usdt@…``
    (only cased letters change; SUBSCRIBE and the combined wrapper carry it as is)."""
    return f"{symbol.lower()}@kline_{interval}"


def ws_path(market: Market, streams: Sequence[str]) -> str:
    """The combined-stream path to append to the WS base URL (ASCII, a valid URL).

    ``/stream?streams=a/b`` (UM: ``/market/stream?...``); with no streams, ``/stream`` alone, to
    which streams can be added with SUBSCRIBE. Non-ASCII stream names (Binance lists symbols
    such as ``币安人生USDT`` since 2025) are percent-encoded as UTF-8: sent raw, they make the
    HTTP handshake fail (an HTTP request line is ASCII).
    """
    path = f"{market.ws_route}/stream"
    if not streams:
        return path
    return f"{path}?streams={'/'.join(quote(s, safe='@_-.') for s in streams)}"


def control_message(method: str, id: int | str, params: Sequence[object] | None = None) -> str:
    """A control frame: ``{"method":"SUBSCRIBE","params":[...],"id":1}``."""
    message: dict[str, object] = {"method": method}
    if params is not None:
        message["params"] = list(params)
    message["id"] = id
    return orjson.dumps(message).decode()


def parse_ws_message(data: str | bytes, *, interval: Interval | str) -> WsEvent:
    """Decode one WebSocket text frame (raw or combined).

    Raises:
        RemoteProtocolError: not JSON, or a kline/control frame that is malformed or hostile.
    """
    iv = _as_interval(interval)
    message = _loads(data, "WebSocket frame")
    if not isinstance(message, dict):
        raise _fail("WebSocket frame is not a JSON object", message)
    stream = None
    if "stream" in message and "data" in message:
        stream = message["stream"]
        if type(stream) is not str or not 0 < len(stream) <= 256:
            raise _fail("combined frame has a bad stream name", stream)
        message = message["data"]
        if not isinstance(message, dict):
            raise _fail("combined frame's data is not an object", message)
    if "e" in message:
        event = message["e"]
        if event == "kline":
            return _kline_event(message, iv, stream)
        if type(event) is not str:
            raise _fail("event type is not a string", event)
        return Ignored(reason=f"event {event[:50]!r}")
    if stream is None:
        if "result" in message and "id" in message:
            return ControlReply(id=_control_id(message["id"]), result=message["result"])
        error = message.get("error")
        if isinstance(error, dict):
            return _control_error(error, message.get("id"))
        if "code" in message and "msg" in message:
            return _control_error(message, message.get("id"))
    raise _fail("unrecognised WebSocket frame", message)


def _control_id(value: object) -> int | str | None:
    if value is None or (type(value) is int) or (type(value) is str and len(value) <= 64):
        return value  # type: ignore[return-value]
    raise _fail("control reply has a bad id", value)


def _control_error(error: Mapping[str, Any], id: object) -> ControlError:
    code, msg = error.get("code"), error.get("msg")
    if type(code) is not int or type(msg) is not str:
        raise _fail("control error frame has a bad code or msg", dict(error))
    return ControlError(id=_control_id(id), code=code, msg=msg[:_MAX_TEXT])


def _kline_event(message: Mapping[str, Any], iv: Interval, stream: str | None) -> KlineEvent:
    k = message.get("k")
    if not isinstance(k, dict):
        raise _fail("kline event without a 'k' object", message)
    symbol = _symbol(message.get("s"), "s")
    if "s" in k and k["s"] != symbol:
        raise _fail(f"kline symbol {k['s']!r} differs from event symbol", symbol)
    if k.get("i") != iv.name:
        raise _fail(f"kline interval is not {iv.name}", k.get("i"))
    if stream is not None and stream != kline_stream_name(symbol, iv):
        raise _fail(f"stream name does not match {symbol} {iv.name}", stream)
    closed = k.get("x")
    if type(closed) is not bool:
        raise _fail("kline 'x' is not a boolean", closed)
    open_ms = _ms(k.get("t"), "k.t")
    close_ms = _ms(k.get("T"), "k.T")
    _check_grid(iv, open_ms, close_ms, f"{symbol} kline")
    candle = Candle(
        symbol=symbol,
        open_ms=open_ms,
        open=_dec(k.get("o"), "k.o"),
        high=_dec(k.get("h"), "k.h"),
        low=_dec(k.get("l"), "k.l"),
        close=_dec(k.get("c"), "k.c"),
        volume=_dec(k.get("v"), "k.v"),
        quote_volume=_dec(k.get("q"), "k.q"),
        trade_num=float(_int(k.get("n"), "k.n")),
        taker_buy_base_asset_volume=_dec(k.get("V"), "k.V"),
        taker_buy_quote_asset_volume=_dec(k.get("Q"), "k.Q"),
    )
    return KlineEvent(
        candle=candle,
        closed=closed,
        event_ms=_ms(message.get("E"), "E"),
        close_ms=close_ms,
        stream=stream,
    )


# --------------------------------------------------------------------------- REST


def klines_params(
    market: Market,
    symbol: str,
    interval: Interval | str,
    start_ms: int,
    end_ms: int,
    limit: int,
) -> dict[str, str]:
    """Query parameters for the klines of open times ``start_ms``..``end_ms`` (both included).

    Raises:
        ValueError: a window the market would not return exactly (more than ``limit`` candles,
            ``limit`` above the market's maximum, beyond COIN-M's 200-day span, unaligned).
    """
    iv = _as_interval(interval)
    if not 1 <= limit <= market.kline_max_limit:
        raise ValueError(f"limit {limit} outside 1..{market.kline_max_limit} on {market.name}")
    if not (iv.is_aligned(start_ms) and iv.is_aligned(end_ms)) or end_ms < start_ms:
        raise ValueError(f"bad kline window {start_ms}..{end_ms} for {iv.name}")
    if iv.count(start_ms, end_ms) > limit:
        raise ValueError(f"window {start_ms}..{end_ms} holds more than {limit} candles")
    close_ms = iv.close_time(end_ms)
    span = market.klines_max_span_days
    if span is not None and close_ms - start_ms > span * 86_400_000:
        raise ValueError(f"window {start_ms}..{close_ms} is longer than {span} days")
    return {
        "symbol": symbol,
        "interval": iv.name,
        "startTime": str(start_ms),
        "endTime": str(close_ms),
        "limit": str(limit),
    }


def parse_klines(body: bytes | str, *, symbol: str, interval: Interval | str) -> list[Candle]:
    """All rows of a klines response, the forming candle included (see :func:`closed_only`).

    Raises:
        RemoteProtocolError: not a list of well-formed rows on the interval's grid, in
            strictly ascending order.
    """
    iv = _as_interval(interval)
    _symbol(symbol)
    rows = _loads(body, "klines body")
    if not isinstance(rows, list):
        raise _fail("klines body is not a list", rows)
    candles: list[Candle] = []
    append = candles.append
    previous = -1
    # fixed, epoch-aligned intervals get an inlined grid check; weeks and months the general one
    step = iv.ms if iv.ms and iv.is_aligned(0) else 0
    for row in rows:
        try:
            t, o, h, lo, c, v, close_t, q, n, vb, qb = row[:11]
            if (
                type(row) is not list
                or type(t) is not int
                or type(close_t) is not int
                or type(n) is not int
                or not previous < t < MAX_TIME_MS
                or not 0 <= n < MAX_COUNT
                or (step and (t % step or close_t != t + step - 1))
                or (not step and close_t != iv.close_time(t))
                or not (type(o) is type(h) is type(lo) is type(c) is str)
                or not (type(v) is type(q) is type(vb) is type(qb) is str)
            ):
                raise ValueError
            if not step and not iv.is_aligned(t):
                raise ValueError
            texts = (o, h, lo, c, v, q, vb, qb)
            if max(map(len, texts)) > 64:
                raise ValueError
            values = tuple(map(float, texts))
            if not sum(values) <= 8 * MAX_DECIMAL or min(values) < 0 or max(values) > MAX_DECIMAL:
                raise ValueError  # NaN fails the first test, like inf
        except (ValueError, TypeError):
            _explain_bad_row(row, iv, symbol, previous)
            raise _fail(f"{symbol} kline row is malformed", row) from None
        previous = t
        append(
            Candle(
                symbol=symbol,
                open_ms=t,
                open=values[0],
                high=values[1],
                low=values[2],
                close=values[3],
                volume=values[4],
                quote_volume=values[5],
                trade_num=float(n),
                taker_buy_base_asset_volume=values[6],
                taker_buy_quote_asset_volume=values[7],
            )
        )
    return candles


def _explain_bad_row(row: object, iv: Interval, symbol: str, previous: int) -> None:
    """Raise the precise RemoteProtocolError for a row the fast path refused."""
    if not isinstance(row, list) or len(row) < 11:
        raise _fail("kline row is not a list of 12 fields", row)
    open_ms = _ms(row[0], "kline open time")
    _check_grid(iv, open_ms, _ms(row[6], "kline close time"), f"{symbol} kline")
    if open_ms <= previous:
        raise _fail(f"{symbol} klines are not in strictly ascending order", open_ms)
    for index, name in ((1, "open"), (2, "high"), (3, "low"), (4, "close"), (5, "volume"),
                        (7, "quote volume"), (9, "taker buy base volume"),
                        (10, "taker buy quote volume")):  # fmt: skip
        _dec(row[index], name)
    _int(row[8], "trade count")


def closed_only(candles: Iterable[Candle], interval: Interval | str, now_ms: int) -> list[Candle]:
    """The candles that have closed by ``now_ms`` (whose end is at or before it)."""
    iv = _as_interval(interval)
    return [c for c in candles if iv.end(c.open_ms) <= now_ms]


def parse_error_body(body: bytes | str) -> tuple[int | None, str]:
    """Binance's ``{"code": -1121, "msg": "Invalid symbol."}`` as (code, msg); never raises.

    Anything else gives (None, the start of the body as text).
    """
    try:
        data = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError):
        data = None
    if isinstance(data, dict):
        code, msg = data.get("code"), data.get("msg")
        if type(code) is int and type(msg) is str:
            return code, msg[:_MAX_TEXT]
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body[: _MAX_TEXT * 4]).decode("utf-8", "replace")
    else:
        text = str(body)
    return None, text[:_MAX_TEXT]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


def parse_weight_headers(headers: Mapping[str, str]) -> int | None:
    """The IP's used weight this minute (``x-mbx-used-weight-1m``), or None."""
    value = _header(headers, "x-mbx-used-weight-1m")
    if value is None or not value.strip().isdigit() or len(value) > 12:
        return None
    return int(value)


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (Binance sends an integer), or None."""
    value = _header(headers, "retry-after")
    if value is None or len(value) > 32:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, 30 * 86_400.0)


def parse_server_time(body: bytes | str) -> int:
    """``{"serverTime": 1499827319559}`` → epoch ms."""
    data = _loads(body, "server time body")
    if not isinstance(data, dict):
        raise _fail("server time body is not an object", data)
    return _ms(data.get("serverTime"), "serverTime")


def parse_premium_index(body: bytes | str) -> list[FundingRate]:
    """premiumIndex (an object for one symbol, a list otherwise) → funding rates."""
    data = _loads(body, "premiumIndex body")
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise _fail("premiumIndex body is not a list", data)
    rates: list[FundingRate] = []
    for entry in data:
        if not isinstance(entry, dict):
            raise _fail("premiumIndex entry is not an object", entry)
        symbol = entry.get("symbol")
        if type(symbol) is not str:
            raise _fail("premiumIndex entry without a symbol", entry)
        if not is_safe_symbol(symbol):
            continue
        raw = entry.get("lastFundingRate")
        rate: float | None = None
        if raw != "":
            if type(raw) is not str or len(raw) > 64:
                raise _fail(f"{symbol} lastFundingRate is not a decimal string", raw)
            try:
                rate = float(raw)
            except ValueError:
                raise _fail(f"{symbol} lastFundingRate is not a decimal", raw) from None
            if not -1.0 <= rate <= 1.0:
                raise _fail(f"{symbol} lastFundingRate is out of range", raw)
        next_time = entry.get("nextFundingTime")
        rates.append(
            FundingRate(
                symbol=symbol,
                funding_rate=rate,
                next_funding_time_ms=_ms(next_time, "nextFundingTime")
                if next_time not in (None, 0)
                else None,
            )
        )
    return rates
