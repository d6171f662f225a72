"""Weight-optimal kline planning and what to fetch on start and restart."""

from __future__ import annotations

import itertools

import pytest

from bmac_trio.binance.intervals import Interval, parse_interval
from bmac_trio.binance.markets import CM, SPOT, UM, Market, futures_kline_weight
from bmac_trio.binance.planner import (
    KlineRequest,
    missing_range,
    page_sizes,
    plan_klines,
    plan_weight,
)
from bmac_trio.binance.protocol import klines_params

M5 = parse_interval("5m")
T0 = M5.floor(1_700_000_000_000)


def plan(market: Market, n: int, interval: Interval = M5) -> list[KlineRequest]:
    first = interval.floor(T0)
    last = interval.add(first, n - 1)
    return plan_klines(market, interval, first_open_ms=first, last_open_ms=last)


def brute_force(n: int, sizes: tuple[int, ...]) -> int:
    best = [0] + [10**9] * n
    for k in range(1, n + 1):
        for take in range(1, min(k, max(sizes)) + 1):
            best[k] = min(best[k], best[k - take] + futures_kline_weight(take))
    return best[n]


@pytest.mark.parametrize(
    ("n", "limits", "weight"),
    [
        (1, [1], 1),
        (99, [99], 1),
        (100, [100], 2),
        (499, [499], 2),
        (500, [401, 99], 3),
        (1000, [1000], 5),
        (1500, [499, 499, 403, 99], 7),
        (3000, [499] * 5 + [406, 99], 13),
    ],
)
def test_futures_plans_are_exact(n: int, limits: list[int], weight: int) -> None:
    requests = plan(UM, n)
    assert [r.limit for r in requests] == limits
    assert sum(r.weight for r in requests) == weight == plan_weight(UM, M5, n)
    assert requests[0] == KlineRequest(
        start_ms=T0,
        end_ms=M5.add(T0, limits[0] - 1),
        limit=limits[0],
        weight=futures_kline_weight(limits[0]),
    )


@pytest.mark.parametrize("n", [*range(1, 260), 498, 499, 500, 998, 999, 1000, 1001, 1499, 1500])
def test_futures_plan_is_optimal_and_covers_exactly(n: int) -> None:
    requests = plan(UM, n)
    assert sum(r.weight for r in requests) == brute_force(n, page_sizes(UM, M5))
    # adjacent, ascending, exact coverage, each request valid for the market
    assert requests[0].start_ms == T0
    assert requests[-1].end_ms == M5.add(T0, n - 1)
    for a, b in itertools.pairwise(requests):
        assert b.start_ms == M5.add(a.end_ms, 1)
    for r in requests:
        assert M5.count(r.start_ms, r.end_ms) == r.limit
        klines_params(UM, "X", M5, r.start_ms, r.end_ms, r.limit)


def test_spot_pages_of_1000() -> None:
    requests = plan(SPOT, 2500)
    assert [(r.limit, r.weight) for r in requests] == [(1000, 2), (1000, 2), (500, 2)]


def test_coin_m_pages_respect_the_200_day_span() -> None:
    day = parse_interval("1d")
    assert page_sizes(CM, day) == (99, 200)
    assert page_sizes(UM, day) == (99, 499, 1000, 1500)
    assert page_sizes(CM, parse_interval("1M")) == (6,)
    requests = plan(CM, 450, day)
    assert [r.limit for r in requests] == [200, 151, 99]  # weight 5 in 3 calls
    for r in requests:
        klines_params(CM, "BTCUSD_PERP", day, r.start_ms, r.end_ms, r.limit)


def test_plan_edge_cases() -> None:
    assert plan_klines(UM, M5, first_open_ms=T0, last_open_ms=M5.add(T0, -1)) == []
    with pytest.raises(ValueError, match="unaligned"):
        plan_klines(UM, M5, first_open_ms=T0 + 1, last_open_ms=T0 + M5.ms)
    r = plan_klines(UM, M5, first_open_ms=T0, last_open_ms=T0, symbol="BTCUSDT")
    assert r == [KlineRequest(start_ms=T0, end_ms=T0, limit=1, weight=1, symbol="BTCUSDT")]
    assert plan_weight(SPOT, M5, 0) == 0


def test_missing_range() -> None:
    now = T0 + 1000 * M5.ms + 12_345  # inside the candle that opened at T0 + 1000 periods
    last_closed = M5.add(T0, 999)
    # no file: the whole window
    assert missing_range(None, now, M5, 1500) == (M5.add(last_closed, -1499), last_closed)
    # a file up to date: nothing
    assert missing_range(last_closed, now, M5, 1500) is None
    # a short outage: only the tail
    assert missing_range(M5.add(last_closed, -2), now, M5, 1500) == (
        M5.add(last_closed, -1),
        last_closed,
    )
    # a file older than the window: the window only
    assert missing_range(M5.add(last_closed, -5000), now, M5, 1500) == (
        M5.add(last_closed, -1499),
        last_closed,
    )
    # exactly at a boundary, the candle that just ended counts as closed
    boundary = M5.add(T0, 1000)
    assert missing_range(None, boundary, M5, 1) == (last_closed, last_closed)
