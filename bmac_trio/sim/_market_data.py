"""Deterministic market data: each candle is a pure function of (seed, symbol, interval, open).

Nothing is stored. A symbol's price follows a continuous path ``P(t)`` built from seeded value
noise at several time scales, so any candle can be computed on its own, lazily, in any order:

* a candle opens at the previous candle's close and (unless it has no trade) closes at
  ``P(close boundary)``, so consecutive candles chain exactly;
* a zero-trade candle (never two in a row) has n=0, O=H=L=C=previous close, zero volumes and
  f=L=-1, like Binance's;
* the forming candle at time ``now`` is a prefix of the final one: trades, volumes and the
  high/low reached so far, the latest price as close; at the end it equals the closed candle.

Prices and quantities are integers in display units (see :mod:`._symbols`); trade ids grow by
at most 20 per second of exchange time, so ids never overlap between candles of any interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from bmac_trio.binance.intervals import ALL_INTERVALS, Interval
from bmac_trio.sim._hashing import mix
from bmac_trio.sim._symbols import SymbolSpec

__all__ = ["Candle", "MarketModel"]

#: (grid ms, amplitude of log price): a random-walk-like path from value noise.
_SCALES = (
    (5_000, 0.0003),
    (60_000, 0.0010),
    (900_000, 0.0035),
    (14_400_000, 0.012),
    (259_200_000, 0.045),
    (2_592_000_000, 0.14),
)
_IDS_PER_SECOND = 20
_ID_EPOCH_S = 1_000_000_000
_INTERVAL_CODE = {name: i + 1 for i, name in enumerate(ALL_INTERVALS)}
_SALT_ZERO, _SALT_N, _SALT_V, _SALT_UP, _SALT_DN, _SALT_TB, _SALT_PH, _SALT_PL = range(8)
_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_INV63 = 1.0 / float(1 << 63)


@dataclass(frozen=True, slots=True)
class Candle:
    """One kline in display units (see :class:`SymbolSpec` for the decimals)."""

    open_ms: int
    close_ms: int
    o: int
    h: int
    l: int  # noqa: E741 - Binance's name
    c: int
    v: int
    q: int
    n: int
    vt: int
    qt: int
    first_id: int
    last_id: int
    closed: bool


class MarketModel:
    """Computes candles and prices for one seed; cheap to call repeatedly (bounded caches)."""

    def __init__(self, seed: int, zero_trade_fraction: float = 0.03) -> None:
        self.seed = seed
        self.zero_trade_fraction = zero_trade_fraction
        self._grid_cache: dict[tuple[int, int, int], float] = {}
        self._price = lru_cache(maxsize=200_000)(self._price_uncached)
        self.closed_candle = lru_cache(maxsize=300_000)(self._closed_uncached)

    # ------------------------------------------------------------------------------ prices

    def _grid(self, key: int, j: int, i: int) -> float:
        """Value noise at grid point ``i`` of scale ``j``, in [-1, 1)."""
        if j >= 2:
            cache_key = (key, j, i)
            v = self._grid_cache.get(cache_key)
            if v is None:
                if len(self._grid_cache) > 500_000:
                    self._grid_cache.clear()
                v = mix((key ^ (j << 56) ^ (i * _GOLDEN)) & _M64) * _INV63 - 1.0
                self._grid_cache[cache_key] = v
            return v
        return mix((key ^ (j << 56) ^ (i * _GOLDEN)) & _M64) * _INV63 - 1.0

    def _price_uncached(self, spec: SymbolSpec, t_ms: int) -> int:
        key = (spec.key ^ (self.seed * _GOLDEN)) & _M64
        cache = self._grid_cache
        x = 0.0
        for j, (grid, amp) in enumerate(_SCALES):
            i, rem = divmod(t_ms, grid)
            if j < 2:  # fine scales: cheap to hash, rarely reused
                salted = key ^ (j << 56)
                a = mix((salted ^ (i * _GOLDEN)) & _M64) * _INV63 - 1.0
                if rem:
                    b = mix((salted ^ ((i + 1) * _GOLDEN)) & _M64) * _INV63 - 1.0
                    a += (b - a) * (rem / grid)
            else:
                a = cache.get((key, j, i))
                if a is None:
                    a = self._grid(key, j, i)
                if rem:
                    b = cache.get((key, j, i + 1))
                    if b is None:
                        b = self._grid(key, j, i + 1)
                    a += (b - a) * (rem / grid)
            x += amp * a
        raw = spec.price0 * math.exp(x)
        return max(spec.tick, round(raw / spec.tick) * spec.tick)

    def price(self, spec: SymbolSpec, t_ms: int) -> int:
        """The latest trade price at ``t_ms`` in display units (on the tick grid)."""
        return self._price(spec, t_ms)

    # ----------------------------------------------------------------------------- candles

    def _bits(self, spec: SymbolSpec, iv: Interval, open_ms: int) -> int:
        """128 random bits for one candle (eight 16-bit fields)."""
        base = (spec.key ^ (self.seed * _GOLDEN) ^ (_INTERVAL_CODE[iv.name] << 58)) & _M64
        h1 = mix(base ^ ((open_ms * 0xD6E8FEB86659FD93) & _M64))
        return h1 | (mix(h1 ^ 0xA0761D6478BD642F) << 64)

    @staticmethod
    def _field(bits: int, salt: int) -> float:
        return ((bits >> (16 * salt)) & 0xFFFF) / 65536.0

    def _eligible_zero(self, spec: SymbolSpec, iv: Interval, open_ms: int) -> bool:
        return self._field(self._bits(spec, iv, open_ms), _SALT_ZERO) < self.zero_trade_fraction

    def is_zero(self, spec: SymbolSpec, iv: Interval, open_ms: int) -> bool:
        """Whether the candle has no trade (never two in a row, so the chain stays short)."""
        return self._eligible_zero(spec, iv, open_ms) and not self._eligible_zero(
            spec, iv, iv.add(open_ms, -1)
        )

    def open_price(self, spec: SymbolSpec, iv: Interval, open_ms: int) -> int:
        """The previous candle's close."""
        prev = iv.add(open_ms, -1)
        if self.is_zero(spec, iv, prev):
            return self._price(spec, prev)  # prev is zero, so prev-1 was not: its close
        return self._price(spec, open_ms)

    def _u(self, spec: SymbolSpec, iv: Interval, open_ms: int, salt: int) -> float:
        return self._field(self._bits(spec, iv, open_ms), salt)

    def _final_parts(self, spec: SymbolSpec, iv: Interval, t: int) -> tuple[int, ...]:
        """(o, h, l, c, n, v, vt) of the closed candle at ``t``."""
        # Same rules as open_price/is_zero, with each candle's random bits drawn once.
        p = self.zero_trade_fraction
        field = self._field
        bits = self._bits(spec, iv, t)
        prev = iv.add(t, -1)
        prev_eligible = field(self._bits(spec, iv, prev), _SALT_ZERO) < p
        zero = field(bits, _SALT_ZERO) < p and not prev_eligible
        prev_zero = prev_eligible and not self._eligible_zero(spec, iv, iv.add(prev, -1))
        o = self._price(spec, prev) if prev_zero else self._price(spec, t)
        if zero:
            return o, o, o, o, 0, 0, 0
        end = iv.end(t)
        c = self._price(spec, end)
        length_s = (end - t) / 1000
        tick = spec.tick
        swing = spec.price0 * 0.0006 * math.sqrt(max(length_s, 1.0) / 60.0)
        up = int(swing * field(bits, _SALT_UP) ** 2 / tick) * tick
        dn = int(swing * field(bits, _SALT_DN) ** 2 / tick) * tick
        h = max(o, c) + up
        lo = max(tick, min(o, c) - dn)
        budget = max(1, int(length_s * _IDS_PER_SECOND))
        n = round(spec.trade_rate * length_s * (0.4 + 1.2 * field(bits, _SALT_N)))
        n = min(budget, max(1, n))
        v = n * spec.trade_qty * (0.5 + field(bits, _SALT_V))
        v = max(spec.step, int(v / spec.step) * spec.step)
        tb = 0.3 + 0.4 * field(bits, _SALT_TB)
        vt = int(v * tb / spec.step) * spec.step
        return o, h, lo, c, n, v, vt

    def _quote(self, spec: SymbolSpec, qty: int, vwap: int) -> int:
        """Quote volume (COIN-M: base volume) in units of 10**-quote_dp."""
        if spec.contract_size:
            return qty * spec.contract_size * 10 ** (spec.quote_dp + spec.price_dp) // vwap
        return qty * vwap * 10**spec.quote_dp // 10 ** (spec.qty_dp + spec.price_dp)

    def _first_id(self, t: int) -> int:
        return (t // 1000 - _ID_EPOCH_S) * _IDS_PER_SECOND + 1

    def _closed_uncached(self, spec: SymbolSpec, iv: Interval, t: int) -> Candle:
        o, h, lo, c, n, v, vt = self._final_parts(spec, iv, t)
        close_ms = iv.close_time(t)
        if n == 0:
            return Candle(t, close_ms, o, o, o, o, 0, 0, 0, 0, 0, -1, -1, True)
        vwap = (o + h + lo + c) // 4
        f = self._first_id(t)
        q, qt = self._quote(spec, v, vwap), self._quote(spec, vt, vwap)
        return Candle(t, close_ms, o, h, lo, c, v, q, n, vt, qt, f, f + n - 1, True)

    def candle(self, spec: SymbolSpec, iv: Interval, t: int, now_ms: int) -> Candle:
        """The candle opening at ``t`` as seen at ``now_ms`` (forming if not yet closed)."""
        end = iv.end(t)
        if now_ms >= end:
            return self.closed_candle(spec, iv, t)
        final = self.closed_candle(spec, iv, t)
        close_ms = final.close_ms
        if final.n == 0 or now_ms < t:
            o = final.o
            return Candle(t, close_ms, o, o, o, o, 0, 0, 0, 0, 0, -1, -1, False)
        phase = (now_ms - t) / (end - t)
        n_p = int(final.n * phase)
        if n_p == 0:
            o = final.o
            return Candle(t, close_ms, o, o, o, o, 0, 0, 0, 0, 0, -1, -1, False)
        # Uncached: "now" never repeats, and caching it would evict the candle boundaries.
        c = min(final.h, max(final.l, self._price_uncached(spec, now_ms)))
        h = max(final.o, c)
        lo = min(final.o, c)
        if phase >= 0.1 + 0.8 * self._u(spec, iv, t, _SALT_PH):
            h = final.h
        if phase >= 0.1 + 0.8 * self._u(spec, iv, t, _SALT_PL):
            lo = final.l
        step = spec.step
        v = max(step, final.v * n_p // final.n // step * step)
        vt = final.vt * n_p // final.n // step * step
        q = final.q * n_p // final.n
        qt = final.qt * n_p // final.n
        return Candle(
            t, close_ms, final.o, h, lo, c, v, q, n_p, vt, qt,
            final.first_id, final.first_id + n_p - 1, False,
        )  # fmt: skip
