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
from datetime import UTC, datetime, timedelta

from bmac_trio.sim._entries import ENTRY_BUILDERS
from bmac_trio.sim._hashing import symbol_key, unit
from bmac_trio.sim._snapshot import load_snapshot
from bmac_trio.sim._spec import PERPETUAL_DELIVERY_MS, SymbolSpec

__all__ = [
    "PERPETUAL_DELIVERY_MS",
    "SymbolSpec",
    "generate_extras",
    "generate_symbols",
    "generated_spec",
    "load_snapshot",
    "quarterly_expiries",
]


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
    spec.entry.update(ENTRY_BUILDERS[market](spec))
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

    UM: BTCUSDT, ETHUSDT, two CURRENT_QUARTER contracts, a USDC and a BTC-margined perp,
    币安人生USDT, then SIMnnnUSDT (every tenth SIMnnnUSDC). CM: BTC/ETH perps and quarterlies,
    then SIMnnnUSD_PERP (every fourth a quarterly). Spot: BTCUSDT, ETHUSDT, ETHBTC, BTCUSDC,
    the stablecoin pair USDCUSDT, 币安人生USDT, then SIMnnn against USDT, USDC and BTC.
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
    if market in ("um", "spot"):
        # Binance lists non-ASCII symbols since 2025: every recording test meets one
        ctype, delivery = ("PERPETUAL", perp) if market == "um" else ("", 0)
        fixed.append(("币安人生USDT", "币安人生", "USDT", ctype, delivery, 0.25))
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


#: UM TradFi perpetuals (contractType TRADIFI_PERPETUAL): name, base, price level.
_TRADIFI = (("TSLAUSDT", "TSLA", 420.0), ("XAUUSDT", "XAU", 4000.0), ("SPYUSDT", "SPY", 650.0))
#: Quarterly contracts generated ahead of the first two, listed as the quarters roll.
_SUCCESSORS = 4


def generate_extras(
    market: str, count: int, seed: int, now_ms: int, data_start_ms: int
) -> tuple[list[SymbolSpec], list[SymbolSpec]]:
    """Symbols that come on top of :func:`generate_symbols`' ``count``: ``(listed, successors)``.

    Listed now: UM's NEXT_QUARTER BTC/ETH contracts (with their CURRENT_QUARTER siblings, so
    ``count`` keeps naming the same symbols) and, from six symbols on, a few UM TradFi
    perpetuals. Successors: the next quarterly BTC/ETH contracts of UM and COIN-M, each listed
    when the contract two quarters before it expires (see :class:`._exchange.Exchange`).
    """
    expiries = quarterly_expiries(now_ms, 2 + _SUCCESSORS)
    perp = PERPETUAL_DELIVERY_MS
    listed: list[SymbolSpec] = []
    successors: list[SymbolSpec] = []
    if market not in ("um", "cm"):
        return listed, successors
    quote = "USDT" if market == "um" else "USD"
    # Counts from which generate_symbols lists the pair's current (UM) or both (COIN-M)
    # quarterlies: the fixed lists there.
    btc_from, eth_from = {"um": (3, 4), "cm": (4, 6)}[market]
    families = [("BTC", 60000.0, btc_from), ("ETH", 3000.0, eth_from)]
    for base, level, needed in families:
        if count < needed:
            continue
        for k, expiry in enumerate(expiries):
            if k == 0 or (k == 1 and market == "cm"):
                continue  # generate_symbols has them
            name = f"{base}{quote}_{_yymmdd(expiry)}"
            ctype = "NEXT_QUARTER"
            onboard = _onboard(seed, name, data_start_ms)
            spec = _spec(market, seed, name, base, quote, ctype, onboard, expiry,
                         level * (1 + 0.01 * (k + 1)))  # fmt: skip
            (listed if k == 1 else successors).append(spec)
    if market == "um" and count >= 6:
        for name, base, level in _TRADIFI:
            onboard = _onboard(seed, name, data_start_ms)
            listed.append(
                _spec(market, seed, name, base, "USDT", "TRADIFI_PERPETUAL", onboard, perp, level)
            )
    return listed, successors
