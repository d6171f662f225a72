"""exchangeInfo: parse it, select the symbols a trade type records, and build ``exginfo.pqt``.

Pure. Decimal filter values (tick, lot, notional, contract size) stay the exact strings Binance
sent until :func:`exginfo_frame` turns each column into ``pl.Decimal(38, s)``, ``s`` being the
largest number of decimals in the column: every value is kept exactly (``"0.01000000"`` reads
back as ``Decimal("0.01000000")``) and pandas readers get ``Decimal`` objects, as BMAC's
``decimal128`` columns gave them.

BMAC compatibility of ``exginfo.pqt``: the columns of BMAC v2 (``symbol, contract_type, status,
base_asset, quote_asset, margin_asset, price_tick, lot_size, min_notional_value``) plus
``pair, step_size, contract_size, delivery_date, onboard_date``, the same set for every market
(nulls where a market has no such field). As in BMAC, COIN-M's ``lot_size`` is the contract size
(``contractSize``); ``step_size`` is always the LOT_SIZE filter's ``stepSize``.

A malformed symbol entry is left out with a reason (``ExchangeInfo.rejected``), and a symbol
whose name is unsafe as a file name is skipped by :func:`select_symbols` with a reason, rather
than failing the whole refresh; a body that is not an exchangeInfo object at all raises
:class:`RemoteProtocolError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import polars as pl

from bmac_trio.binance.markets import SPOT_STABLECOINS, Market, TradeType
from bmac_trio.binance.symbols import is_safe_symbol
from bmac_trio.errors import RemoteProtocolError

__all__ = [
    "ExchangeInfo",
    "Selection",
    "SymbolInfo",
    "exginfo_frame",
    "parse_exchange_info",
    "select_symbols",
]

_DECIMAL_RE: Final = re.compile(r"^(\d{1,20})(?:\.(\d{1,18}))?$")
_MAX_MS: Final = 16_725_225_600_000  # year 2500
_TIME = pl.Datetime("ms", "UTC")


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolInfo:
    """One exchangeInfo symbol; decimals are Binance's exact strings."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    margin_asset: str | None = None
    contract_type: str | None = None
    pair: str | None = None
    delivery_date_ms: int | None = None
    onboard_date_ms: int | None = None
    contract_size: str | None = None
    price_tick: str | None = None
    #: BMAC's lot size: LOT_SIZE ``stepSize``, on COIN-M the ``contractSize``.
    lot_size: str | None = None
    #: LOT_SIZE ``stepSize`` on every market.
    step_size: str | None = None
    min_notional: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangeInfo:
    """A parsed exchangeInfo response."""

    symbols: tuple[SymbolInfo, ...]
    #: REQUEST_WEIGHT per minute (``rateLimits``), or the market's default.
    weight_limit: int
    #: ``serverTime`` (stale on futures: never use it as a clock).
    server_time_ms: int | None
    #: Entries left out: (symbol or "?", reason).
    rejected: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The symbols a trade type records, sorted, and those refused for safety with why."""

    symbols: tuple[SymbolInfo, ...]
    rejected: tuple[tuple[str, str], ...] = ()

    @property
    def names(self) -> frozenset[str]:
        """The selected symbol names."""
        return frozenset(s.symbol for s in self.symbols)


def parse_exchange_info(body: bytes | str, market: Market) -> ExchangeInfo:
    """Parse an exchangeInfo body of ``market``.

    Raises:
        RemoteProtocolError: not JSON, or not an object with a ``symbols`` list.
    """
    try:
        data = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise RemoteProtocolError(f"exchangeInfo is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
        raise RemoteProtocolError("exchangeInfo is not an object with a 'symbols' list")
    symbols: list[SymbolInfo] = []
    rejected: list[tuple[str, str]] = []
    for entry in data["symbols"]:
        name = entry.get("symbol") if isinstance(entry, dict) else None
        try:
            if not isinstance(entry, dict):
                raise ValueError("entry is not an object")
            symbols.append(_symbol_info(entry, market))
        except ValueError as exc:
            label = name if isinstance(name, str) else "?"
            rejected.append((label[:80], str(exc)))
    server_time = data.get("serverTime")
    return ExchangeInfo(
        symbols=tuple(symbols),
        weight_limit=_weight_limit(data.get("rateLimits"), market.default_weight_limit),
        server_time_ms=server_time if type(server_time) is int and server_time >= 0 else None,
        rejected=tuple(rejected),
    )


def _weight_limit(limits: object, default: int) -> int:
    if not isinstance(limits, list):
        return default
    for item in limits:
        if (
            isinstance(item, dict)
            and item.get("rateLimitType") == "REQUEST_WEIGHT"
            and item.get("interval") == "MINUTE"
            and item.get("intervalNum", 1) == 1
            and type(item.get("limit")) is int
            and item["limit"] > 0
        ):
            return item["limit"]
    return default


def _text(entry: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if type(value) is not str or len(value) > 100:
        raise ValueError(f"{key} is not a string: {value!r:.80}")
    return value


def _decimal(value: object, what: str) -> str | None:
    if value is None:
        return None
    if type(value) is int and value >= 0:
        value = str(value)
    if type(value) is not str or not _DECIMAL_RE.match(value):
        raise ValueError(f"{what} is not a decimal: {value!r:.80}")
    return value


def _time(value: object, what: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < _MAX_MS:
        raise ValueError(f"{what} is not a time in ms: {value!r:.80}")
    return value


def _symbol_info(entry: Mapping[str, Any], market: Market) -> SymbolInfo:
    symbol = _text(entry, "symbol")
    assert symbol is not None
    status = entry.get(market.status_key, entry.get("status", entry.get("contractStatus")))
    if type(status) is not str:
        raise ValueError(f"no {market.status_key}")
    filters: dict[str, Mapping[str, Any]] = {}
    raw_filters = entry.get("filters", [])
    if not isinstance(raw_filters, list):
        raise ValueError("filters is not a list")
    for f in raw_filters:
        if isinstance(f, dict) and isinstance(f.get("filterType"), str):
            filters[f["filterType"]] = f
    price = filters.get("PRICE_FILTER", {})
    lot = filters.get("LOT_SIZE", {})
    step_size = _decimal(lot.get("stepSize"), "LOT_SIZE.stepSize")
    contract_size = _decimal(entry.get("contractSize"), "contractSize")
    if market.name == "spot":
        notional = filters.get("NOTIONAL", filters.get("MIN_NOTIONAL", {})).get("minNotional")
    elif market.name == "um":
        notional = filters.get("MIN_NOTIONAL", {}).get("notional")
    else:
        notional = None
    contract_type = _text(entry, "contractType", required=False) or None
    return SymbolInfo(
        symbol=symbol,
        status=status,
        base_asset=_text(entry, "baseAsset") or "",
        quote_asset=_text(entry, "quoteAsset") or "",
        margin_asset=_text(entry, "marginAsset", required=False),
        contract_type=contract_type,
        pair=_text(entry, "pair", required=False),
        delivery_date_ms=_time(entry.get("deliveryDate"), "deliveryDate"),
        onboard_date_ms=_time(entry.get("onboardDate"), "onboardDate"),
        contract_size=contract_size,
        price_tick=_decimal(price.get("tickSize"), "PRICE_FILTER.tickSize"),
        lot_size=contract_size if market.name == "cm" else step_size,
        step_size=step_size,
        min_notional=_decimal(notional, "min notional"),
    )


def select_symbols(
    info: ExchangeInfo, trade_type: TradeType, keep_symbols: Iterable[str] | None
) -> Selection:
    """The symbols ``trade_type`` records: TRADING, its quote asset and contract types, no
    spot stablecoins (usdt_spot), within ``keep_symbols``; sorted by name.

    Names unsafe as file names are skipped and listed in ``rejected``, as are entries the
    parser left out.
    """
    keep = frozenset(keep_symbols) if keep_symbols is not None else None
    chosen: list[SymbolInfo] = []
    rejected = list(info.rejected)
    for s in info.symbols:
        if s.status != "TRADING":
            continue
        if trade_type.quote_asset is not None and s.quote_asset != trade_type.quote_asset:
            continue
        if trade_type.contract_types is not None and s.contract_type not in (
            trade_type.contract_types
        ):
            continue
        if trade_type.exclude_stablecoins and s.symbol in SPOT_STABLECOINS:
            continue
        if keep is not None and s.symbol not in keep:
            continue
        if not is_safe_symbol(s.symbol):
            rejected.append((s.symbol[:80], "name is unsafe as a file name"))
            continue
        chosen.append(s)
    chosen.sort(key=lambda s: s.symbol)
    return Selection(symbols=tuple(chosen), rejected=tuple(rejected))


def _decimal_column(name: str, values: Sequence[str | None]) -> pl.Series:
    scale = 0
    for v in values:
        if v is not None and "." in v:
            scale = max(scale, len(v) - v.index(".") - 1)
    return pl.Series(name, values, dtype=pl.String).str.to_decimal(scale=scale)


def exginfo_frame(symbols: Sequence[SymbolInfo]) -> pl.DataFrame:
    """The ``exginfo.pqt`` frame (columns in the module docstring)."""

    def col(attr: str) -> list[Any]:
        return [getattr(s, attr) for s in symbols]

    return pl.DataFrame(
        [
            pl.Series("symbol", col("symbol"), dtype=pl.String),
            pl.Series("contract_type", col("contract_type"), dtype=pl.String),
            pl.Series("status", col("status"), dtype=pl.String),
            pl.Series("base_asset", col("base_asset"), dtype=pl.String),
            pl.Series("quote_asset", col("quote_asset"), dtype=pl.String),
            pl.Series("margin_asset", col("margin_asset"), dtype=pl.String),
            _decimal_column("price_tick", col("price_tick")),
            _decimal_column("lot_size", col("lot_size")),
            _decimal_column("min_notional_value", col("min_notional")),
            pl.Series("pair", col("pair"), dtype=pl.String),
            _decimal_column("step_size", col("step_size")),
            _decimal_column("contract_size", col("contract_size")),
            pl.Series("delivery_date", col("delivery_date_ms"), dtype=pl.Int64).cast(_TIME),
            pl.Series("onboard_date", col("onboard_date_ms"), dtype=pl.Int64).cast(_TIME),
        ]
    )
