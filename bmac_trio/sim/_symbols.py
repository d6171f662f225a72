"""The simulated symbols: generated with realistic names and filters, or read from a snapshot.

A :class:`SymbolSpec` holds what never changes about a symbol (names, precisions, tick and
step, its exchangeInfo entry minus the fields that move with time: status, onboardDate,
deliveryDate). Prices and quantities are integers in units of the symbol's display precision
(spot always 8 decimals, futures ``pricePrecision``/``quantityPrecision``), so formatting is
exact and matches Binance's strings.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bmac_trio.sim._hashing import symbol_key, unit

__all__ = ["PERPETUAL_DELIVERY_MS", "SymbolSpec", "generate_symbols", "load_snapshot"]

#: deliveryDate Binance gives perpetuals: 2100-12-25 08:00 UTC.
PERPETUAL_DELIVERY_MS = 4133404800000
_EIGHT_HOURS_MS = 8 * 3600 * 1000


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SymbolSpec:
    """The fixed facts of one symbol (compared and hashed by identity: caches key on it)."""

    symbol: str
    base: str
    quote: str
    #: "" on spot; PERPETUAL, CURRENT_QUARTER, NEXT_QUARTER on futures.
    contract_type: str
    onboard_ms: int
    #: Expiry of a delivery contract (PERPETUAL_DELIVERY_MS for perpetuals, 0 on spot).
    delivery_ms: int
    price_dp: int
    tick: int
    qty_dp: int
    step: int
    quote_dp: int
    #: COIN-M contract size in USD (0 elsewhere).
    contract_size: int
    #: Typical price in display units; the price path wanders around it.
    price0: int
    #: Average trade size in quantity units.
    trade_qty: int
    #: Average trades per second.
    trade_rate: float
    key: int
    #: The exchangeInfo entry; status/onboardDate/deliveryDate are filled in when served.
    entry: dict[str, Any] = field(repr=False, hash=False, compare=False)
    #: A status the snapshot gave that the simulator keeps (e.g. spot BREAK pairs).
    static_status: str | None = None

    @property
    def is_delivery(self) -> bool:
        """Whether this contract expires."""
        return self.contract_type in ("CURRENT_QUARTER", "NEXT_QUARTER")


def _dec(units: int, dp: int) -> str:
    """Integer ``units`` of 10**-dp as Binance's decimal string."""
    if dp <= 0:
        return str(units)
    s = str(units).rjust(dp + 1, "0")
    return f"{s[:-dp]}.{s[-dp:]}"


def quarterly_expiries(after_ms: int, count: int) -> list[int]:
    """The next ``count`` quarterly deliveries (last Friday of Mar/Jun/Sep/Dec, 08:00 UTC)."""
    out: list[int] = []
    dt = datetime.fromtimestamp(after_ms / 1000, UTC)
    year, month = dt.year, dt.month
    while len(out) < count:
        if month % 3 == 0:
            last_day = calendar.monthrange(year, month)[1]
            day = datetime(year, month, last_day, 8, tzinfo=UTC)
            day -= timedelta(days=(day.weekday() - 4) % 7)
            ms = int(day.timestamp() * 1000)
            if ms > after_ms:
                out.append(ms)
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return out


def _yymmdd(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%y%m%d")


# ---------------------------------------------------------------------------------- entries


def _spot_entry(s: SymbolSpec) -> dict[str, Any]:
    tick = _dec(s.tick, 8)
    step = _dec(s.step, 8)
    return {
        "symbol": s.symbol,
        "status": "TRADING",
        "baseAsset": s.base,
        "baseAssetPrecision": 8,
        "quoteAsset": s.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "amendAllowed": True,
        "pegInstructionsAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": s.quote in ("USDT", "BTC"),
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": _dec(s.tick * 10**7, 8) if s.tick < 10**8 else "1000000.00000000",
                "tickSize": tick,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": step,
                "maxQty": "9000000.00000000",
                "stepSize": step,
            },
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": _dec(s.step * 10**6, 8),
                "stepSize": "0.00000000",
            },
            {
                "filterType": "TRAILING_DELTA",
                "minTrailingAboveDelta": 10,
                "maxTrailingAboveDelta": 2000,
                "minTrailingBelowDelta": 10,
                "maxTrailingBelowDelta": 2000,
            },
            {
                "filterType": "PERCENT_PRICE_BY_SIDE",
                "bidMultiplierUp": "5",
                "bidMultiplierDown": "0.2",
                "askMultiplierUp": "5",
                "askMultiplierDown": "0.2",
                "avgPriceMins": 5,
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": "5.00000000" if s.quote != "BTC" else "0.00010000",
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": [
            "EXPIRE_TAKER",
            "EXPIRE_MAKER",
            "EXPIRE_BOTH",
            "DECREMENT",
        ],
    }


def _futures_filters(s: SymbolSpec, *, um: bool) -> list[dict[str, Any]]:
    tick = _dec(s.tick, s.price_dp)
    step = _dec(s.step, s.qty_dp)
    filters: list[dict[str, Any]] = [
        {
            "minPrice": _dec(max(s.tick, s.price0 // 50 // s.tick * s.tick), s.price_dp),
            "maxPrice": _dec(s.price0 * 50, s.price_dp),
            "filterType": "PRICE_FILTER",
            "tickSize": tick,
        },
        {
            "stepSize": step,
            "filterType": "LOT_SIZE",
            "maxQty": _dec(s.step * 10**7, s.qty_dp),
            "minQty": step,
        },
        {
            "stepSize": step,
            "filterType": "MARKET_LOT_SIZE",
            "maxQty": _dec(s.step * 10**6, s.qty_dp),
            "minQty": step,
        },
        {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
        {"limit": 10 if um else 100, "filterType": "MAX_NUM_ALGO_ORDERS"},
    ]
    if um:
        filters.append({"notional": "5", "filterType": "MIN_NOTIONAL"})
    filters.append(
        {
            "multiplierDown": "0.9500",
            "multiplierUp": "1.0500",
            "multiplierDecimal": "4",
            "filterType": "PERCENT_PRICE",
        }
    )
    return filters


_ORDER_TYPES = [
    "LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
]  # fmt: skip


def _um_entry(s: SymbolSpec) -> dict[str, Any]:
    return {
        "symbol": s.symbol,
        "pair": s.symbol.split("_")[0],
        "contractType": s.contract_type,
        "deliveryDate": s.delivery_ms,
        "onboardDate": s.onboard_ms,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": s.base,
        "quoteAsset": s.quote,
        "marginAsset": s.quote,
        "pricePrecision": s.price_dp,
        "quantityPrecision": s.qty_dp,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.015000",
        "marketTakeBound": "0.05",
        "filters": _futures_filters(s, um=True),
        "orderTypes": list(_ORDER_TYPES),
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def _cm_entry(s: SymbolSpec) -> dict[str, Any]:
    return {
        "symbol": s.symbol,
        "pair": s.symbol.split("_")[0],
        "contractType": s.contract_type,
        "deliveryDate": s.delivery_ms,
        "onboardDate": s.onboard_ms,
        "contractStatus": "TRADING",
        "contractSize": s.contract_size,
        "marginAsset": s.base,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": s.base,
        "quoteAsset": "USD",
        "pricePrecision": s.price_dp,
        "quantityPrecision": 0,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "equalQtyPrecision": 4,
        "maxMoveOrderLimit": 10000,
        "triggerProtect": "0.0500",
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "filters": _futures_filters(s, um=False),
        "orderTypes": list(_ORDER_TYPES),
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        "liquidationFee": "0.010000",
        "marketTakeBound": "0.05",
    }


# ------------------------------------------------------------------------------- generation


def _spec(
    market: str,
    seed: int,
    symbol: str,
    base: str,
    quote: str,
    contract_type: str,
    onboard_ms: int,
    delivery_ms: int,
    level: float | None = None,
) -> SymbolSpec:
    """A generated symbol; precisions follow from a seeded price level."""
    key = symbol_key(seed, symbol)
    if level is None:
        level = 10 ** (unit(key, 1) * 5.0 - 2.0)  # 0.01 .. 1000 quote units
        if quote == "BTC":
            level /= 50_000.0
        if base in ("USDC",):
            level = 1.0
    digits = math.floor(math.log10(level))
    # About six significant digits of price, as on Binance.
    price_exp = max(-8, min(2, digits - 5))
    usd_digits = math.floor(math.log10(level * (50_000.0 if quote == "BTC" else 1.0)))
    qty_exp = max(-5, min(2, -usd_digits - 1))
    if market == "spot":
        price_dp, tick = 8, 10 ** (price_exp + 8)
        qty_dp, step = 8, 10 ** (qty_exp + 8)
        quote_dp = 8
    else:
        price_dp, tick = max(0, -price_exp), 1
        if unit(key, 2) < 0.2 and price_dp >= 2:
            tick = 10  # like SUSHIUSDT: tickSize 0.0010 at pricePrecision 4
        qty_dp, step = max(0, -qty_exp), 1
        quote_dp = price_dp
    contract_size = 0
    if market == "cm":
        qty_dp, step, quote_dp = 0, 1, 8
        contract_size = 100 if base == "BTC" else 10
    price0 = max(tick * 10, round(level * 10**price_dp / tick) * tick)
    notional = 10 ** (unit(key, 3) * 2.0 + 1.0)  # 10 .. 1000 quote units per trade
    if market == "cm":
        trade_qty = max(1, round(notional / contract_size))
    else:
        trade_qty = max(step, round(notional / level * 10**qty_dp / step) * step)
    rate = 10 ** (unit(key, 4) * 2.3 - 1.3)  # 0.05 .. 10 trades per second
    spec = SymbolSpec(
        symbol=symbol,
        base=base,
        quote=quote,
        contract_type=contract_type,
        onboard_ms=onboard_ms,
        delivery_ms=delivery_ms,
        price_dp=price_dp,
        tick=tick,
        qty_dp=qty_dp,
        step=step,
        quote_dp=quote_dp,
        contract_size=contract_size,
        price0=price0,
        trade_qty=trade_qty,
        trade_rate=rate,
        key=key,
        entry={},
    )
    spec.entry.update({"spot": _spot_entry, "um": _um_entry, "cm": _cm_entry}[market](spec))
    return spec


def _onboard(seed: int, symbol: str, data_start_ms: int) -> int:
    """An onboard date some days before the data starts, on a whole hour."""
    days = 30 + int(unit(symbol_key(seed, symbol), 5) * 900)
    return (data_start_ms - days * 86_400_000) // 3_600_000 * 3_600_000


def generated_spec(market: str, seed: int, symbol: str, onboard_ms: int, now_ms: int) -> SymbolSpec:
    """A spec for a symbol name a scenario lists (quote and contract type from the name)."""
    if market == "spot":
        for quote in ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB"):
            if symbol.endswith(quote) and len(symbol) > len(quote):
                return _spec(market, seed, symbol, symbol[: -len(quote)], quote, "", onboard_ms, 0)
        return _spec(market, seed, symbol, symbol[:-4] or symbol, "USDT", "", onboard_ms, 0)
    pair, _, suffix = symbol.partition("_")
    ctype, delivery = "PERPETUAL", PERPETUAL_DELIVERY_MS
    if suffix and suffix != "PERP":
        ctype = "CURRENT_QUARTER"
        delivery = quarterly_expiries(now_ms, 1)[0]
    if market == "cm":
        base = pair[:-3] if pair.endswith("USD") else pair
        return _spec(market, seed, symbol, base, "USD", ctype, onboard_ms, delivery)
    for quote in ("USDT", "USDC", "BTC"):
        if pair.endswith(quote) and len(pair) > len(quote):
            return _spec(market, seed, symbol, pair[: -len(quote)], quote, ctype, onboard_ms,
                         delivery)  # fmt: skip
    return _spec(market, seed, symbol, pair, "USDT", ctype, onboard_ms, delivery)


def generate_symbols(
    market: str, count: int, seed: int, now_ms: int, data_start_ms: int
) -> list[SymbolSpec]:
    """``count`` symbols with realistic names for ``market`` (deterministic in ``seed``).

    UM: BTCUSDT, ETHUSDT, two CURRENT_QUARTER contracts, a USDC and a BTC-margined perp, then
    SIMnnnUSDT (every tenth SIMnnnUSDC). CM: BTC/ETH perps and quarterlies, then
    SIMnnnUSD_PERP (every fourth a quarterly). Spot: BTCUSDT, ETHUSDT, ETHBTC, BTCUSDC,
    the stablecoin pair USDCUSDT, then SIMnnn against USDT, USDC and BTC.
    """
    cq, nq = quarterly_expiries(now_ms, 2)
    cqs, nqs = _yymmdd(cq), _yymmdd(nq)
    perp = PERPETUAL_DELIVERY_MS
    fixed: list[tuple[str, str, str, str, int, float | None]]
    if market == "um":
        fixed = [
            ("BTCUSDT", "BTC", "USDT", "PERPETUAL", perp, 60000.0),
            ("ETHUSDT", "ETH", "USDT", "PERPETUAL", perp, 3000.0),
            (f"BTCUSDT_{cqs}", "BTC", "USDT", "CURRENT_QUARTER", cq, 60500.0),
            (f"ETHUSDT_{cqs}", "ETH", "USDT", "CURRENT_QUARTER", cq, 3030.0),
            ("BTCUSDC", "BTC", "USDC", "PERPETUAL", perp, 60000.0),
            ("ETHBTC", "ETH", "BTC", "PERPETUAL", perp, 0.05),
        ]
    elif market == "cm":
        fixed = [
            ("BTCUSD_PERP", "BTC", "USD", "PERPETUAL", perp, 60000.0),
            ("ETHUSD_PERP", "ETH", "USD", "PERPETUAL", perp, 3000.0),
            (f"BTCUSD_{cqs}", "BTC", "USD", "CURRENT_QUARTER", cq, 60500.0),
            (f"BTCUSD_{nqs}", "BTC", "USD", "NEXT_QUARTER", nq, 61000.0),
            (f"ETHUSD_{cqs}", "ETH", "USD", "CURRENT_QUARTER", cq, 3030.0),
            (f"ETHUSD_{nqs}", "ETH", "USD", "NEXT_QUARTER", nq, 3060.0),
        ]
    else:
        fixed = [
            ("BTCUSDT", "BTC", "USDT", "", 0, 60000.0),
            ("ETHUSDT", "ETH", "USDT", "", 0, 3000.0),
            ("ETHBTC", "ETH", "BTC", "", 0, 0.05),
            ("BTCUSDC", "BTC", "USDC", "", 0, 60000.0),
            ("USDCUSDT", "USDC", "USDT", "", 0, 1.0),
        ]
    width = max(3, len(str(count)))
    out: list[SymbolSpec] = []
    for name, base, quote, ctype, delivery, level in fixed[:count]:
        onboard = _onboard(seed, name, data_start_ms)
        out.append(_spec(market, seed, name, base, quote, ctype, onboard, delivery, level))
    i = 0
    while len(out) < count:
        i += 1
        base = f"SIM{i:0{width}d}"
        ctype, delivery = "PERPETUAL", perp
        if market == "um":
            quote = "USDC" if i % 10 == 0 else "USDT"
            name = base + quote
        elif market == "cm":
            quote = "USD"
            if i % 4 == 0:
                ctype, delivery, name = "CURRENT_QUARTER", cq, f"{base}USD_{cqs}"
            else:
                name = f"{base}USD_PERP"
        else:
            quote = ("USDT", "USDT", "USDC", "BTC", "USDT")[i % 5]
            ctype, delivery, name = "", 0, base + quote
        onboard = _onboard(seed, name, data_start_ms)
        out.append(_spec(market, seed, name, base, quote, ctype, onboard, delivery))
    return out


# -------------------------------------------------------------------------------- snapshot


def _filter(entry: dict[str, Any], kind: str) -> dict[str, Any]:
    for f in entry.get("filters", []):
        if f.get("filterType") == kind:
            return f
    return {}


def _units(text: str | None, dp: int) -> int:
    if not text:
        return 1
    whole, _, frac = text.partition(".")
    value = int(whole or "0") * 10**dp + int((frac + "0" * dp)[:dp] or "0")
    return max(1, value)


def load_snapshot(
    path: Path, market: str, seed: int, data_start_ms: int
) -> tuple[list[SymbolSpec], dict[str, Any]]:
    """Symbols from a real exchangeInfo JSON file, and its top-level keys (minus symbols).

    Statuses other than TRADING (spot BREAK pairs, a pending contract) are kept as given.
    """
    data = orjson.loads(Path(path).read_bytes())
    if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
        msg = f"{path}: not an exchangeInfo snapshot (no 'symbols' list)"
        raise ValueError(msg)
    status_key = "contractStatus" if market == "cm" else "status"
    specs: list[SymbolSpec] = []
    for entry in data["symbols"]:
        symbol = entry["symbol"]
        key = symbol_key(seed, symbol)
        tick_text = _filter(entry, "PRICE_FILTER").get("tickSize")
        step_text = _filter(entry, "LOT_SIZE").get("stepSize")
        if market == "spot":
            price_dp = qty_dp = quote_dp = 8
        else:
            price_dp = int(entry.get("pricePrecision", 2))
            qty_dp = int(entry.get("quantityPrecision", 0))
            quote_dp = 8 if market == "cm" else price_dp
        tick = _units(tick_text, price_dp)
        step = _units(step_text, qty_dp) if market != "cm" else 1
        min_price = _units(_filter(entry, "PRICE_FILTER").get("minPrice"), price_dp)
        level_ticks = int(10 ** (unit(key, 1) * 2.0 + 3.0))  # 1000 .. 100000 ticks
        price0 = max(min_price * 3, level_ticks * tick) // tick * tick
        level = price0 / 10**price_dp
        contract_size = int(entry.get("contractSize", 0) or 0)
        notional = 10 ** (unit(key, 3) * 2.0 + 1.0)
        if market == "cm":
            trade_qty = max(1, round(notional / max(1, contract_size)))
        else:
            trade_qty = max(step, round(notional / level * 10**qty_dp / step) * step)
        status = entry.get(status_key, "TRADING")
        specs.append(
            SymbolSpec(
                symbol=symbol,
                base=entry.get("baseAsset", ""),
                quote=entry.get("quoteAsset", ""),
                contract_type=entry.get("contractType", "") if market != "spot" else "",
                onboard_ms=int(entry.get("onboardDate", data_start_ms)),
                delivery_ms=int(entry.get("deliveryDate", 0)),
                price_dp=price_dp,
                tick=tick,
                qty_dp=qty_dp,
                step=step,
                quote_dp=quote_dp,
                contract_size=contract_size,
                price0=price0,
                trade_qty=trade_qty,
                trade_rate=10 ** (unit(key, 4) * 2.3 - 1.3),
                key=key,
                entry=dict(entry),
                static_status=None if status == "TRADING" else status,
            )
        )
    top = {k: v for k, v in data.items() if k != "symbols"}
    return specs, top
