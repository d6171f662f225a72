"""exchangeInfo symbol entries for generated symbols, in each market's real shape.

Key sets, key order and JSON types follow the captured payloads (spot 2021 plus the keys
Binance added since, UM and CM as captured); filter values follow the symbol's precisions.
"""

from __future__ import annotations

from typing import Any

from bmac_trio.sim._spec import SymbolSpec, dec as _dec

__all__ = ["ENTRY_BUILDERS"]


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


ENTRY_BUILDERS = {"spot": _spot_entry, "um": _um_entry, "cm": _cm_entry}
