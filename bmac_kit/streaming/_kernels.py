"""The online forms of the 14 bundled factors: the newest value of every symbol at once.

Each kernel gets a :class:`PeriodView` (the window, seen at one ``run_time``) and the factor's
parameter, and returns one value per window slot. It reads only the rows its formula needs,
as ``(slots x k)`` numpy slices of the window (copy-free), so a period costs
``O(symbols x k)`` and never touches the disk or pandas. ``Ema`` (whose value depends on every
candle held) is one matrix-vector product over the ring.

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

__all__ = ["KERNELS", "Kernel", "PeriodView"]


@dataclass(slots=True)
class PeriodView:
    """The window at one period end: the slices every kernel of the period shares."""

    window: MarketWindow
    end_ms: int
    #: The slots the period's values are wanted for (their newest candle ends at ``end_ms``).
    slots: np.ndarray
    _cache: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

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


Kernel = Callable[[PeriodView, int], np.ndarray]


def _mean(x: np.ndarray) -> np.ndarray:
    return x.sum(axis=1) / x.shape[1]


def _std(x: np.ndarray) -> np.ndarray:
    """Sample standard deviation per row (ddof=1; NaN for one column, as polars' null)."""
    n = x.shape[1]
    deviation = x - _mean(x)[:, None]
    return np.sqrt((deviation * deviation).sum(axis=1) / (n - 1)) if n > 1 else x[:, 0] * np.nan


def _rolling_means(x: np.ndarray, n: int) -> np.ndarray:
    """Means of every ``n`` consecutive columns: ``(rows, k)`` -> ``(rows, k - n + 1)``.

    By differences of cumulative sums; the caller centres ``x`` so the sums stay small.
    """
    sums = np.cumsum(x, axis=1)
    sums = np.concatenate([np.zeros((x.shape[0], 1)), sums], axis=1)
    return (sums[:, n:] - sums[:, :-n]) / n


def pct_chg(view: PeriodView, n: int) -> np.ndarray:
    close = view.last("close", n + 1)
    return close[:, -1] / close[:, 0] - 1


def momentum(view: PeriodView, n: int) -> np.ndarray:
    close = view.last("close", n + 1)
    return close[:, -1] - close[:, 0]


def ma(view: PeriodView, n: int) -> np.ndarray:
    return _mean(view.last("close", n))


def bias(view: PeriodView, n: int) -> np.ndarray:
    close = view.last("close", n)
    return close[:, -1] / _mean(close) - 1


def trd_num_mean(view: PeriodView, n: int) -> np.ndarray:
    return _mean(view.last("trade_num", n))


def quote_volume_mean(view: PeriodView, n: int) -> np.ndarray:
    return _mean(view.last("quote_volume", n))


def taker_buy_ratio(view: PeriodView, n: int) -> np.ndarray:
    buy = view.last("taker_buy_quote_asset_volume", n).sum(axis=1)
    return buy / view.last("quote_volume", n).sum(axis=1)


def bollinger_width(view: PeriodView, n: int) -> np.ndarray:
    close = view.last("close", n)
    return 4 * _std(close) / _mean(close)


def zscore(view: PeriodView, n: int) -> np.ndarray:
    close = view.last("close", n)
    return (close[:, -1] - _mean(close)) / _std(close)


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
    tp = (view.last("high", k) + view.last("low", k) + view.last("close", k)) / 3
    tp = tp - tp[:, -1:]  # centred on the newest: the sums below stay small and exact-ish
    deviation = tp[:, n - 1 :] - _rolling_means(tp, n)  # tp - ma of the last n candles
    return deviation[:, -1] / (0.015 * _mean(np.abs(deviation)))


@cache
def _ema_weights(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``a (1-a)^i`` for ``i`` candles back, and ``(1-a)^c`` for ``c`` candles held."""
    alpha = 2 / (n + 1)
    decay = (1 - alpha) ** np.arange(size + 1, dtype=np.float64)
    return alpha * decay[:size], decay


def ema(view: PeriodView, n: int) -> np.ndarray:
    """``ewm_mean(span=n, adjust=False)`` seeded at each symbol's oldest candle held.

    Unrolled, the recursion over ``c`` candles is ``sum_i a (1-a)^i x[-1-i] + (1-a)^c x[-c]``
    (``i < c``): one dot product per symbol with fixed weights, the ring's rotation applied to
    the weights instead of the data.
    """
    window = view.window
    size = window.num_candles
    weights, decay = _ema_weights(n, size)
    head = window.position(view.end_ms)
    back = (head - np.arange(size)) % size  # candles back of each ring position
    ring = window.ring("close")
    values = ring @ weights[back] + decay[size] * ring[:, (head + 1) % size]
    counts = window.counts()
    for slot in view.slots[counts[view.slots] < size]:
        count = int(counts[slot])
        close = window.ordered_slot(int(slot), "close")[::-1]  # newest first
        values[slot] = close @ weights[:count] + decay[count] * close[-1] if count else np.nan
    return values


#: The bundled factors' online forms, by module name.
KERNELS: dict[str, Kernel] = {
    "Atr": atr,
    "Bias": bias,
    "BollingerWidth": bollinger_width,
    "Cci": cci,
    "Ema": ema,
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
