"""What to fetch over REST, and in which pages, for the fewest weight points. Pure.

Futures klines cost 1 weight below limit 100, 2 below 500, 5 up to 1000 and 10 above, so the
page size matters: 1500 candles cost 10 as one call, but 7 as 499 + 499 + 499 + 3. Because the
weight only steps at those limits, the best page of each weight class is its largest (99, 499,
1000, 1500), and a small dynamic programme over "candles still to cover" finds the true optimum
(fewest weight points, then fewest calls). COIN-M also caps a call at 200 days, which for long
intervals caps the page size (1d: 200 candles). Spot costs 2 per call whatever the limit, so
pages are simply 1000 candles.

BMAC v2 used fixed 499-candle pages (and 99 for healing, which never healed a gap over 99).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from bmac_trio.binance.intervals import DAY_MS, Interval
from bmac_trio.binance.markets import Market, futures_kline_weight

__all__ = ["KlineRequest", "missing_range", "page_sizes", "plan_klines", "plan_weight"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KlineRequest:
    """One klines call: open times ``start_ms``..``end_ms`` (both included), ``limit`` candles."""

    start_ms: int
    end_ms: int
    limit: int
    weight: int
    symbol: str | None = None


def page_sizes(market: Market, interval: Interval) -> tuple[int, ...]:
    """The useful page sizes: the largest limit of each weight class, within the market's
    maximum and, on COIN-M, the 200-day span."""
    cap = market.kline_max_limit
    if market.klines_max_span_days is not None:
        span_ms = market.klines_max_span_days * DAY_MS
        longest = interval.ms or 31 * DAY_MS  # a month is at most 31 days
        cap = min(cap, max(1, span_ms // longest))
    if not market.is_futures:
        return (cap,)
    sizes = {min(cap, s) for s in (99, 499, 1000, 1500)}
    return tuple(sorted(sizes))


@cache
def _best(n: int, sizes: tuple[int, ...], futures: bool) -> tuple[tuple[int, int], tuple[int, ...]]:
    """((weight, calls), page counts) covering ``n`` candles at least cost."""

    def weight(count: int) -> int:
        return futures_kline_weight(count) if futures else 2

    # cost[k] = best (weight, calls) to cover k candles; choice[k] = size of the first page
    cost: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    choice = [0] * (n + 1)
    for k in range(1, n + 1):
        best: tuple[int, int] | None = None
        for size in sizes:
            take = min(size, k)
            w, c = cost[k - take]
            candidate = (w + weight(take), c + 1)
            if best is None or candidate < best:
                best, choice[k] = candidate, take
        assert best is not None
        cost[k] = best
    pages: list[int] = []
    k = n
    while k > 0:
        pages.append(choice[k])
        k -= choice[k]
    return cost[n], tuple(sorted(pages, reverse=True))


def plan_klines(
    market: Market,
    interval: Interval,
    *,
    first_open_ms: int,
    last_open_ms: int,
    symbol: str | None = None,
) -> list[KlineRequest]:
    """The weight-optimal calls that cover open times ``first_open_ms``..``last_open_ms``.

    Pages are in ascending time order, adjacent and non-overlapping; each has ``limit`` equal
    to the number of candles it covers, so every market returns exactly that window.

    Raises:
        ValueError: a bound is not on the interval's grid.
    """
    if not (interval.is_aligned(first_open_ms) and interval.is_aligned(last_open_ms)):
        raise ValueError(f"unaligned range {first_open_ms}..{last_open_ms} for {interval.name}")
    n = interval.count(first_open_ms, last_open_ms)
    if n == 0:
        return []
    _, pages = _best(n, page_sizes(market, interval), market.is_futures)
    requests = []
    start = first_open_ms
    for count in pages:
        end = interval.add(start, count - 1)
        requests.append(
            KlineRequest(
                start_ms=start,
                end_ms=end,
                limit=count,
                weight=market.kline_weight(count),
                symbol=symbol,
            )
        )
        start = interval.add(end, 1)
    return requests


def plan_weight(market: Market, interval: Interval, count: int) -> int:
    """The least weight that fetches ``count`` candles (for budgeting and progress)."""
    if count <= 0:
        return 0
    (weight, _), _ = _best(count, page_sizes(market, interval), market.is_futures)
    return weight


def missing_range(
    have_last_open_ms: int | None, now_ms: int, interval: Interval, num_candles: int
) -> tuple[int, int] | None:
    """Open times to fetch so a file holds the last ``num_candles`` closed candles at ``now_ms``.

    With no file, the whole window; with one, only the tail after its newest candle (clipped
    to the window); None when nothing is missing.
    """
    last_closed = interval.last_closed_open(now_ms)
    window_first = interval.add(last_closed, -(num_candles - 1))
    if have_last_open_ms is None:
        return window_first, last_closed
    if have_last_open_ms >= last_closed:
        return None
    first = max(interval.add(interval.floor(have_last_open_ms), 1), window_first)
    return first, last_closed
