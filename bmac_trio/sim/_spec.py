"""What never changes about a simulated symbol (see :mod:`._symbols` for where they come from).

Prices and quantities are integers in units of the symbol's display precision (spot always 8
decimals, futures ``pricePrecision``/``quantityPrecision``), so formatting is exact and matches
Binance's strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PERPETUAL_DELIVERY_MS", "SymbolSpec", "dec"]

#: deliveryDate Binance gives perpetuals: 2100-12-25 08:00 UTC.
PERPETUAL_DELIVERY_MS = 4133404800000


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


def dec(units: int, dp: int) -> str:
    """Integer ``units`` of 10**-dp as Binance's decimal string."""
    if dp <= 0:
        return str(units)
    s = str(units).rjust(dp + 1, "0")
    return f"{s[:-dp]}.{s[-dp:]}"
