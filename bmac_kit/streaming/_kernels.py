"""The online forms of the 14 bundled factors: the newest value of every symbol at once.

Each kernel gets a :class:`PeriodView` (the window, seen at one ``run_time``) and the factor's
parameter, and returns one value per window slot. It reads only the rows its formula needs,
as ``(slots x k)`` numpy slices of the window (copy-free), so a period costs
``O(symbols x k)`` and never touches the disk or pandas. ``Ema`` (whose value depends on every
candle held) keeps per-symbol state and takes one step of its recursion per period.

A slot with fewer candles than the formula needs has NaN where its candles are missing, so
its value comes out NaN exactly where the batch polars factor is null. Formulas are those of
the factor modules' docstrings, evaluated in the same order of operations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from bmac_kit.window import MarketWindow

__all__ = ["KERNELS", "Ema", "Kernel", "PeriodView", "make_kernel"]


@dataclass(slots=True)
class PeriodView:
    """The window at one period end: the slices every kernel of the period shares."""

    window: MarketWindow
    end_ms: int
    #: The slots the period's values are wanted for (their newest candle ends at ``end_ms``).
    slots: np.ndarray
    _cache: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    _stats: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict)

    def last(self, column: str, k: int) -> np.ndarray:
        """``(used_slots, k)``: every slot's last ``k`` values of ``column``, oldest first."""
        key = (column, k)
        block = self._cache.get(key)
        if block is None:
            held = self.window.num_candles
            block = self.window.last(column, min(k, held), self.end_ms)
            if k > held:  # more than the window holds: the older candles are missing
                missing = np.full((block.shape[0], k - held), np.nan)
                block = np.concatenate([missing, block], axis=1)
            self._cache[key] = block
        return block

    def mean(self, column: str, k: int) -> np.ndarray:
        """Mean of every slot's last ``k`` values (shared by Ma, Bias, Bollinger, ZScore)."""
        key = ("mean", column, k)
        value = self._stats.get(key)
        if value is None:
            value = self._stats[key] = _mean(self.last(column, k))
        return value

    def std(self, column: str, k: int) -> np.ndarray:
        """Sample standard deviation of every slot's last ``k`` values (ddof=1)."""
        key = ("std", column, k)
        value = self._stats.get(key)
        if value is None:
            value = self._stats[key] = _std(self.last(column, k), self.mean(column, k))
        return value


Kernel = Callable[[PeriodView, int], np.ndarray]


def _mean(x: np.ndarray) -> np.ndarray:
    return x.sum(axis=1) / x.shape[1]


def _std(x: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Sample standard deviation per row (ddof=1; NaN for one column, as polars' null)."""
    n = x.shape[1]
    deviation = x - (_mean(x) if mean is None else mean)[:, None]
    return np.sqrt((deviation * deviation).sum(axis=1) / (n - 1)) if n > 1 else x[:, 0] * np.nan


def _rolling_means(x: np.ndarray, n: int) -> np.ndarray:
    """Means of every ``n`` consecutive columns: ``(rows, k)`` -> ``(rows, k - n + 1)``.

    By differences of cumulative sums; the caller centres ``x`` so the sums stay small.
    Summed along the time axis of the transposed (time-major, as the window stores it)
    array, which numpy does row by row, vectorised across symbols.
    """
    sums = np.zeros((x.shape[1] + 1, x.shape[0]))
    np.cumsum(x.T, axis=0, out=sums[1:])
    return ((sums[n:] - sums[:-n]) / n).T


def pct_chg(view: PeriodView, n: int) -> np.ndarray:
    close = view.last("close", n + 1)
    return close[:, -1] / close[:, 0] - 1


def momentum(view: PeriodView, n: int) -> np.ndarray:
    close = view.last("close", n + 1)
    return close[:, -1] - close[:, 0]


def ma(view: PeriodView, n: int) -> np.ndarray:
    return view.mean("close", n)


def bias(view: PeriodView, n: int) -> np.ndarray:
    return view.last("close", n)[:, -1] / view.mean("close", n) - 1


def trd_num_mean(view: PeriodView, n: int) -> np.ndarray:
    return _mean(view.last("trade_num", n))


def quote_volume_mean(view: PeriodView, n: int) -> np.ndarray:
    return _mean(view.last("quote_volume", n))


def taker_buy_ratio(view: PeriodView, n: int) -> np.ndarray:
    buy = view.last("taker_buy_quote_asset_volume", n).sum(axis=1)
    return buy / view.last("quote_volume", n).sum(axis=1)


def bollinger_width(view: PeriodView, n: int) -> np.ndarray:
    return 4 * view.std("close", n) / view.mean("close", n)


def zscore(view: PeriodView, n: int) -> np.ndarray:
    return (view.last("close", n)[:, -1] - view.mean("close", n)) / view.std("close", n)


def volatility(view: PeriodView, n: int) -> np.ndarray:
    close = view.last("close", n + 1)
    return _std(close[:, 1:] / close[:, :-1] - 1)


def rsi(view: PeriodView, n: int) -> np.ndarray:
    d = np.diff(view.last("close", n + 1), axis=1)
    up = _mean(np.maximum(d, 0))  # NaN stays NaN: np.maximum propagates it
    down = _mean(np.maximum(-d, 0))
    return 100 * up / (up + down)


def atr(view: PeriodView, n: int) -> np.ndarray:
    high, low = view.last("high", n), view.last("low", n)
    close = view.last("close", n + 1)
    prev = close[:, :-1]
    # polars' max_horizontal skips nulls: a symbol's first candle has tr = high - low
    tr = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))
    return _mean(tr) / close[:, -1]


def cci(view: PeriodView, n: int) -> np.ndarray:
    k = 2 * n - 1
    tp = view.last("high", k) + view.last("low", k)  # a new array: the rest is in place
    tp += view.last("close", k)
    tp /= 3
    tp -= tp[:, -1:].copy()  # centred on the newest: the sums below stay small and exact-ish
    deviation = tp[:, n - 1 :] - _rolling_means(tp, n)  # tp - ma of the last n candles
    newest = deviation[:, -1].copy()
    np.abs(deviation, out=deviation)
    return newest / (0.015 * _mean(deviation))


@cache
def _ema_weights(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``a (1-a)^i`` for ``i`` candles back, and ``(1-a)^c`` for ``c`` candles held."""
    alpha = 2 / (n + 1)
    decay = (1 - alpha) ** np.arange(size + 1, dtype=np.float64)
    return alpha * decay[:size], decay


class Ema:
    """``ewm_mean(span=n, adjust=False)`` seeded at each symbol's oldest candle held, as the
    batch factor over the file.

    Unrolled, the recursion over ``c`` candles is ``sum_i a (1-a)^i x[-1-i] + (1-a)^c x[-c]``
    (``i < c``). A symbol whose window gained exactly one candle since the last period takes
    one step: ``v' = (1-a) v + a x_new``, minus ``(1-a)^W (x_dropped - x_oldest)`` once the
    window is full (its seed moved by one candle). Any other symbol (first period, a gap, a
    heal, a listing) is recomputed from its window. The recursion is stable: rounding errors
    shrink by ``1 - a`` a step, so they do not accumulate.
    """

    def __init__(self) -> None:
        self._window: MarketWindow | None = None
        self._n: int | None = None
        self._value = np.zeros(0)
        self._end = np.zeros(0, dtype=np.int64)
        self._generation = np.zeros(0, dtype=np.int64)
        self._count = np.zeros(0, dtype=np.int64)
        self._oldest = np.zeros(0)

    def _reset(self, window: MarketWindow, n: int) -> None:
        size = window.used_slots
        if window is self._window and n == self._n and len(self._end) >= size:
            return
        old = len(self._end) if window is self._window and n == self._n else 0
        grow = max(size, 2 * old) - old

        def extend(array: np.ndarray, fill: float | int) -> np.ndarray:
            return np.concatenate([array[:old], np.full(grow, fill, dtype=array.dtype)])

        self._value = extend(self._value, np.nan)
        self._end = extend(self._end, np.iinfo(np.int64).min)
        self._generation = extend(self._generation, -1)
        self._count = extend(self._count, 0)
        self._oldest = extend(self._oldest, np.nan)
        self._window, self._n = window, n

    def __call__(self, view: PeriodView, n: int) -> np.ndarray:
        window, slots = view.window, view.slots
        self._reset(window, n)
        size = window.num_candles
        alpha = 2 / (n + 1)
        decay = _ema_weights(n, size)[1]
        head = window.position(view.end_ms)
        ring = window.ring("close")
        counts = window.counts()[slots]
        generations = window.generations()[slots]
        before = self._count[slots]
        stepped = (
            (self._end[slots] == view.end_ms - window.interval_ms)
            & (self._generation[slots] == generations)
            & (counts == np.minimum(before + 1, size))
        )
        oldest = ring[slots, (head - counts + 1) % size]
        values = (1 - alpha) * self._value[slots] + alpha * ring[slots, head]
        full = stepped & (before == size)
        values[full] -= decay[size] * (self._oldest[slots][full] - oldest[full])
        redo = np.flatnonzero(~stepped)
        if len(redo):
            values[redo] = self._recompute(window, slots[redo], counts[redo], head, n)
        self._value[slots] = values
        self._end[slots] = view.end_ms
        self._generation[slots] = generations
        self._count[slots] = counts
        self._oldest[slots] = oldest
        out = np.full(window.used_slots, np.nan)
        out[slots] = values
        return out

    @staticmethod
    def _recompute(
        window: MarketWindow, slots: np.ndarray, counts: np.ndarray, head: int, n: int
    ) -> np.ndarray:
        """The unrolled sum: one matrix-vector product for full windows, a dot for others."""
        size = window.num_candles
        weights, decay = _ema_weights(n, size)
        values = np.empty(len(slots))
        full = counts == size
        if full.any():
            ring = window.ring("close")[slots[full]]  # a contiguous copy
            back = (head - np.arange(size)) % size  # candles back of each ring position
            values[full] = ring @ weights[back] + decay[size] * ring[:, (head + 1) % size]
        for i in np.flatnonzero(~full).tolist():
            count = int(counts[i])
            close = window.ordered_slot(int(slots[i]), "close")[::-1]  # newest first
            values[i] = close @ weights[:count] + decay[count] * close[-1] if count else np.nan
        return values


#: The bundled factors' online forms, by module name (a class: one instance per calculator).
KERNELS: dict[str, Kernel | type[Ema]] = {
    "Atr": atr,
    "Bias": bias,
    "BollingerWidth": bollinger_width,
    "Cci": cci,
    "Ema": Ema,
    "Ma": ma,
    "Momentum": momentum,
    "PctChg": pct_chg,
    "QuoteVolumeMean": quote_volume_mean,
    "Rsi": rsi,
    "TakerBuyRatio": taker_buy_ratio,
    "TrdNumMeanV1": trd_num_mean,
    "Volatility": volatility,
    "ZScore": zscore,
}


def make_kernel(name: str) -> Kernel:
    """The online form of bundled factor ``name`` (a fresh one if it keeps state)."""
    kernel = KERNELS[name]
    return kernel() if isinstance(kernel, type) else kernel
