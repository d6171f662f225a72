"""The simulated exchange's state: its symbols and their life, and the candles that exist.

Pure (no I/O, no clock of its own): every method takes ``now_ms``. Lifecycle rules:

* listing at ``onboard``: futures PENDING_TRADING before (UM with ``contractType ""`` as in
  the real capture), spot pairs hidden before; klines only from the candle containing onboard;
* UM perpetual delisting at ``d``: ``deliveryDate`` becomes ``d`` at once, TRADING until ``d``,
  SETTLING for an hour, then CLOSE; COIN-M DELIVERING/DELIVERED; spot BREAK; no candle opens
  at or after ``d``;
* delivery contracts expire at their ``deliveryDate`` (08:00 UTC): DELIVERING for ten
  minutes, then DELIVERED; no candle opens at or after it;
* a maintenance window ``[a, b)``: no candle whose open is inside it exists (REST skips them,
  as Binance did during its outages);
* quarterly contracts of one pair roll: at any time the live one expiring first is
  CURRENT_QUARTER and the next NEXT_QUARTER; a generated successor is listed (hidden before)
  when the contract two quarters before it expires, so at each expiry the next quarter becomes
  current and a new next quarter appears;
* continuous klines (pair + contract type) take each candle from the contract holding that
  role when the candle opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bmac_trio.binance.intervals import DAY_MS, HOUR_MS, MINUTE_MS, Interval, parse_interval
from bmac_trio.binance.markets import MARKETS, Market
from bmac_trio.sim._config import SimConfig
from bmac_trio.sim._encode import dec, rest_row
from bmac_trio.sim._hashing import unit_signed
from bmac_trio.sim._market_data import Candle, MarketModel
from bmac_trio.sim._symbols import (
    PERPETUAL_DELIVERY_MS,
    SymbolSpec,
    generate_extras,
    generate_symbols,
    generated_spec,
    load_snapshot,
)

__all__ = ["FUNDING_PERIOD_MS", "QUARTERS", "Exchange"]

#: Contract types whose holder changes as quarterly contracts expire.
QUARTERS = ("CURRENT_QUARTER", "NEXT_QUARTER")

FUNDING_PERIOD_MS = 8 * HOUR_MS
_SETTLING_MS = HOUR_MS
_DELIVERING_MS = 10 * MINUTE_MS


@dataclass(slots=True)
class _Life:
    onboard: dict[str, int] = field(default_factory=dict)
    delist: dict[str, int] = field(default_factory=dict)
    delivery: dict[str, int] = field(default_factory=dict)
    maintenance: list[tuple[int, int]] = field(default_factory=list)


def pair_of(spec: SymbolSpec) -> str:
    """A futures symbol's pair (``BTCUSD_260327`` → ``BTCUSD``)."""
    return str(spec.entry.get("pair") or spec.symbol.split("_")[0])


class Exchange:
    """One market's symbols, their statuses over time and their candles."""

    def __init__(self, cfg: SimConfig, start_ms: int) -> None:
        self.cfg = cfg
        self.market: Market = MARKETS[cfg.market]
        self.model = MarketModel(cfg.seed, cfg.zero_trade_fraction)
        hint = parse_interval(cfg.interval_hint)
        self.start_ms = start_ms
        self.data_start_ms = hint.add(hint.floor(start_ms), -cfg.history_candles)
        self.snapshot_top: dict[str, Any] | None = None
        #: Generated quarterlies listed only when the quarters roll (hidden before).
        self._successors: set[str] = set()
        if isinstance(cfg.symbols, int) and not isinstance(cfg.symbols, bool):
            args = (cfg.market, cfg.symbols, cfg.seed, start_ms, self.data_start_ms)
            specs = generate_symbols(*args)
            listed, successors = generate_extras(*args)
            specs += listed + successors
            self._successors = {s.symbol for s in successors}
        else:
            specs, self.snapshot_top = load_snapshot(
                Path(cfg.symbols), cfg.market, cfg.seed, self.data_start_ms
            )
        self.specs: dict[str, SymbolSpec] = {s.symbol: s for s in specs}
        self._chains: dict[str, list[SymbolSpec]] = {}
        self._perpetuals: dict[tuple[str, str], SymbolSpec] = {}
        self._index_contracts()
        self.life = _Life()
        sc = cfg.scenario
        for symbol, at in sc.listings:
            self.list_symbol(symbol, at)
        for symbol, at in sc.delistings:
            self.delist_symbol(symbol, at)
        for symbol, at in sc.deliveries:
            self.set_delivery(symbol, at)
        for a, b in sc.maintenance:
            self.add_maintenance(a, b)

    # ------------------------------------------------------------------------- scripting

    def list_symbol(self, symbol: str, at_ms: int) -> SymbolSpec:
        """List ``symbol`` (new, or an existing one moved) at ``at_ms``."""
        spec = self.specs.get(symbol)
        if spec is None:
            spec = generated_spec(self.cfg.market, self.cfg.seed, symbol, at_ms, self.start_ms)
            self.specs[symbol] = spec
            self._index_contracts()
        self._successors.discard(symbol)
        self.life.onboard[symbol] = at_ms
        return spec

    def delist_symbol(self, symbol: str, at_ms: int) -> None:
        """Delist ``symbol`` at ``at_ms``; raises KeyError for an unknown symbol."""
        if symbol not in self.specs:
            raise KeyError(symbol)
        self.life.delist[symbol] = at_ms

    def set_delivery(self, symbol: str, at_ms: int) -> None:
        """Move a delivery contract's expiry; raises KeyError/ValueError if not one."""
        if not self.specs[symbol].is_delivery:
            msg = f"{symbol} is not a delivery contract"
            raise ValueError(msg)
        self.life.delivery[symbol] = at_ms

    def add_maintenance(self, start_ms: int, end_ms: int) -> None:
        """A window with no candles and silent streams."""
        if end_ms <= start_ms:
            msg = "maintenance must end after it starts"
            raise ValueError(msg)
        self.life.maintenance.append((start_ms, end_ms))

    # ------------------------------------------------------------------------- contracts

    def _index_contracts(self) -> None:
        """Quarterly contracts by pair (by expiry) and perpetuals by (pair, contract type)."""
        self._chains.clear()
        self._perpetuals.clear()
        for spec in self.specs.values():
            if spec.is_delivery:
                self._chains.setdefault(pair_of(spec), []).append(spec)
            elif spec.contract_type:
                self._perpetuals.setdefault((pair_of(spec), spec.contract_type), spec)
        for chain in self._chains.values():
            chain.sort(key=lambda s: s.delivery_ms)

    def _live_quarters(self, pair: str, t_ms: int) -> list[SymbolSpec]:
        """The pair's quarterlies trading at ``t_ms``, the first to expire first."""
        live = [
            s
            for s in self._chains.get(pair, ())
            if self.onboard_ms(s) <= t_ms < (self.end_ms(s) or PERPETUAL_DELIVERY_MS)
        ]
        return sorted(live, key=lambda s: (self.end_ms(s) or PERPETUAL_DELIVERY_MS, s.symbol))

    def contract_type(self, spec: SymbolSpec, now_ms: int) -> str:
        """The contract type at ``now_ms``: quarterlies move from NEXT to CURRENT_QUARTER."""
        if not spec.is_delivery:
            return spec.contract_type
        at = now_ms
        end = self.end_ms(spec)
        if end is not None and now_ms >= end:
            at = end - 1  # an expired contract keeps the type it expired with
        live = self._live_quarters(pair_of(spec), at)
        if spec not in live:
            return spec.contract_type
        return QUARTERS[min(live.index(spec), 1)]

    def continuous_spec(self, pair: str, contract_type: str, t_ms: int) -> SymbolSpec | None:
        """The contract a continuous kline of (pair, contract type) follows at ``t_ms``."""
        if contract_type not in QUARTERS:
            return self._perpetuals.get((pair, contract_type))
        live = self._live_quarters(pair, t_ms)
        rank = QUARTERS.index(contract_type)
        return live[rank] if rank < len(live) else None

    def has_continuous(self, pair: str, contract_type: str) -> bool:
        """Whether (pair, contract type) names a continuous contract of this market."""
        if contract_type in QUARTERS:
            return len(self._chains.get(pair, ())) > QUARTERS.index(contract_type)
        return (pair, contract_type) in self._perpetuals

    # ------------------------------------------------------------------------- lifecycle

    def onboard_ms(self, spec: SymbolSpec) -> int:
        """When the symbol starts trading (a successor: when the quarter two before expires)."""
        if spec.symbol in self._successors:
            chain = self._chains[pair_of(spec)]
            i = chain.index(spec)
            if i >= 2:
                return self.end_ms(chain[i - 2]) or spec.onboard_ms
        return self.life.onboard.get(spec.symbol, spec.onboard_ms)

    def end_ms(self, spec: SymbolSpec) -> int | None:
        """No candle opens at or after this (None: trades forever)."""
        if spec.static_status is not None:
            return self.data_start_ms
        ends = []
        if spec.symbol in self.life.delist:
            ends.append(self.life.delist[spec.symbol])
        if spec.is_delivery:
            ends.append(self.life.delivery.get(spec.symbol, spec.delivery_ms))
        return min(ends) if ends else None

    def in_maintenance(self, t_ms: int) -> bool:
        """Whether ``t_ms`` is inside a maintenance window."""
        return any(a <= t_ms < b for a, b in self.life.maintenance)

    def status(self, spec: SymbolSpec, now_ms: int) -> str | None:
        """The symbol's status at ``now_ms`` (None: not listed yet on spot)."""
        if spec.static_status is not None:
            return spec.static_status
        onboard = self.onboard_ms(spec)
        end = self.end_ms(spec)
        if now_ms < onboard and spec.symbol in self._successors:
            return None
        if self.market.name == "spot":
            if now_ms < onboard:
                return None
            return "BREAK" if end is not None and now_ms >= end else "TRADING"
        if now_ms < onboard:
            return "PENDING_TRADING"
        if end is None or now_ms < end:
            return "TRADING"
        perp_delist = not spec.is_delivery and self.market.name == "um"
        window = _SETTLING_MS if perp_delist else _DELIVERING_MS
        if now_ms < end + window:
            return "SETTLING" if perp_delist else "DELIVERING"
        return "CLOSE" if perp_delist else "DELIVERED"

    def is_trading(self, spec: SymbolSpec, now_ms: int) -> bool:
        """Status TRADING at ``now_ms``."""
        return self.status(spec, now_ms) == "TRADING"

    def trading_symbols(self, now_ms: int) -> list[str]:
        """Symbols with status TRADING, in exchangeInfo order."""
        return [s for s, spec in self.specs.items() if self.is_trading(spec, now_ms)]

    def symbol_entry(self, spec: SymbolSpec, now_ms: int) -> dict[str, Any] | None:
        """The exchangeInfo entry as served at ``now_ms`` (None: hidden)."""
        status = self.status(spec, now_ms)
        if status is None:
            return None
        entry = dict(spec.entry)
        entry[self.market.status_key] = status
        if self.market.is_futures:
            entry["onboardDate"] = self.onboard_ms(spec)
            delivery = spec.delivery_ms
            if spec.symbol in self.life.delivery:
                delivery = self.life.delivery[spec.symbol]
            if spec.symbol in self.life.delist:
                delivery = self.life.delist[spec.symbol]
            entry["deliveryDate"] = delivery
            entry["contractType"] = self.contract_type(spec, now_ms)
            if status == "PENDING_TRADING" and self.market.name == "um":
                entry["contractType"] = ""
        return entry

    # --------------------------------------------------------------------------- candles

    def first_open(self, spec: SymbolSpec, iv: Interval) -> int:
        """Open time of the symbol's first candle."""
        return iv.floor(max(self.onboard_ms(spec), self.data_start_ms))

    def last_open(self, spec: SymbolSpec, iv: Interval, now_ms: int) -> int:
        """Open time of the newest candle at ``now_ms`` (possibly forming; may not exist)."""
        last = iv.floor(now_ms)
        end = self.end_ms(spec)
        if end is not None:
            last = min(last, iv.floor(end - 1))
        return last

    def exists(self, spec: SymbolSpec, iv: Interval, t: int) -> bool:
        """Whether the candle opening at ``t`` exists at all (ignoring whether it has begun)."""
        if t < self.first_open(spec, iv):
            return False
        end = self.end_ms(spec)
        if end is not None and t >= end:
            return False
        return not self.in_maintenance(t)

    def select(
        self,
        spec: SymbolSpec,
        iv: Interval,
        *,
        lower: int | None,
        upper: int | None,
        limit: int,
        newest: bool,
        now_ms: int,
    ) -> list[Candle]:
        """Up to ``limit`` existing candles with ``lower <= open <= upper``, ascending.

        ``newest`` picks the newest ones (no startTime, or COIN-M), else the oldest.
        """
        lo = self.first_open(spec, iv)
        hi = self.last_open(spec, iv, now_ms)
        if lower is not None:
            start = iv.floor(lower)
            lo = max(lo, start if start >= lower else iv.add(start, 1))
        if upper is not None:
            hi = min(hi, iv.floor(upper))
        opens: list[int] = []
        if hi < lo:
            return []
        if newest:
            t = hi
            while t >= lo and len(opens) < limit:
                if not self.in_maintenance(t):
                    opens.append(t)
                t = iv.add(t, -1)
            opens.reverse()
        else:
            t = lo
            while t <= hi and len(opens) < limit:
                if not self.in_maintenance(t):
                    opens.append(t)
                t = iv.add(t, 1)
        return [self.model.candle(spec, iv, t, now_ms) for t in opens]

    def select_continuous(
        self,
        pair: str,
        contract_type: str,
        iv: Interval,
        *,
        lower: int | None,
        upper: int | None,
        limit: int,
        newest: bool,
        now_ms: int,
    ) -> list[tuple[SymbolSpec, Candle]]:
        """Like :meth:`select` for a continuous contract: each candle with its holder."""
        if contract_type not in QUARTERS:
            spec = self._perpetuals[(pair, contract_type)]
            candles = self.select(
                spec, iv, lower=lower, upper=upper, limit=limit, newest=newest, now_ms=now_ms
            )
            return [(spec, c) for c in candles]
        chain = self._chains[pair]
        lo = min(self.first_open(s, iv) for s in chain)
        hi = iv.floor(now_ms)
        if lower is not None:
            start = iv.floor(lower)
            lo = max(lo, start if start >= lower else iv.add(start, 1))
        if upper is not None:
            hi = min(hi, iv.floor(upper))
        picked: list[tuple[SymbolSpec, int]] = []
        t, step = (hi, -1) if newest else (lo, 1)
        while lo <= t <= hi and len(picked) < limit:
            spec = self.continuous_spec(pair, contract_type, t)
            if spec is not None and self.exists(spec, iv, t):
                picked.append((spec, t))
            t = iv.add(t, step)
        if newest:
            picked.reverse()
        return [(spec, self.model.candle(spec, iv, t, now_ms)) for spec, t in picked]

    def ground_truth(
        self, symbol: str, interval: str, now_ms: int, since_ms: int | None = None
    ) -> list[list[Any]]:
        """Every closed candle of ``symbol`` published by ``now_ms``, as REST rows."""
        spec = self.specs[symbol]
        iv = parse_interval(interval)
        t = self.first_open(spec, iv)
        if since_ms is not None:
            t = max(t, iv.floor(since_ms))
        end = self.end_ms(spec)
        rows = []
        while iv.end(t) <= now_ms and (end is None or t < end):
            if not self.in_maintenance(t):
                rows.append(rest_row(spec, self.model.closed_candle(spec, iv, t)))
            t = iv.add(t, 1)
        return rows

    # --------------------------------------------------------------------------- funding

    def is_perpetual(self, spec: SymbolSpec) -> bool:
        """Perpetuals pay funding; delivery contracts do not."""
        return spec.contract_type == "PERPETUAL" or (
            spec.delivery_ms == PERPETUAL_DELIVERY_MS and not spec.is_delivery
        )

    def funding_rate(self, spec: SymbolSpec, t_ms: int) -> str:
        """The funding rate settled at ``t_ms`` (8 decimals, usually around 0.01%)."""
        u = unit_signed(spec.key ^ self.cfg.seed, 777, t_ms // FUNDING_PERIOD_MS)
        value = round((0.0001 + 0.0002 * u) * 10**8)
        sign = "-" if value < 0 else ""
        return sign + dec(abs(value), 8)

    def funding_times(self, spec: SymbolSpec, lower: int, upper: int) -> list[int]:
        """Funding times in ``[lower, upper]`` while the perpetual traded."""
        first = max(lower, self.onboard_ms(spec), self.data_start_ms - 90 * DAY_MS)
        end = self.end_ms(spec)
        if end is not None:
            upper = min(upper, end - 1)
        t = -(-first // FUNDING_PERIOD_MS) * FUNDING_PERIOD_MS
        out = []
        while t <= upper:
            out.append(t)
            t += FUNDING_PERIOD_MS
        return out

    def mark_price(self, spec: SymbolSpec, t_ms: int) -> str:
        """Mark price with 8 decimals."""
        return dec(self.model.price(spec, t_ms) * 10 ** (8 - spec.price_dp), 8)
