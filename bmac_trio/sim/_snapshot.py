"""Symbols from a real exchangeInfo JSON snapshot, served with their own filters and precisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bmac_trio.sim._hashing import symbol_key, unit
from bmac_trio.sim._spec import SymbolSpec

__all__ = ["load_snapshot"]


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
