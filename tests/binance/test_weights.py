"""The REST weight budget."""

from __future__ import annotations

import pytest

from bmac_trio.binance.weights import MINUTE_MS, WeightBudget

M = 1_700_000_040_000 // MINUTE_MS * MINUTE_MS  # a minute boundary


def test_never_grants_more_than_90_percent_including_in_flight() -> None:
    budget = WeightBudget(100)
    assert budget.cap == 90
    granted = 0
    while budget.reserve(10, M + 1000) == 0:
        granted += 10
    assert granted == 90
    assert budget.used == 90
    # the wait lasts until the next exchange-clock minute
    assert budget.reserve(10, M + 1000) == MINUTE_MS - 1000
    assert budget.stats()["waits"] == 2
    # answers arrive: still this minute's weight
    for _ in range(9):
        budget.note_used(None, M + 2000, reserved=10)
    assert budget.used == 90
    assert budget.reserve(1, M + 2000) == MINUTE_MS - 2000
    # a new minute starts from zero
    assert budget.reserve(10, M + MINUTE_MS) == 0
    assert budget.used == 10
    assert budget.stats()["spent"] == 100
    assert budget.stats()["peak_used"] == 90


def test_server_header_counts_other_clients() -> None:
    budget = WeightBudget(2400)
    assert budget.reserve(5, M) == 0
    budget.note_used(2100, M + 100, reserved=5)  # someone else on this IP spent a lot
    assert budget.used == 2100
    assert budget.reserve(60, M + 200) == 0  # 2160 = 90% exactly
    assert budget.reserve(1, M + 300) == MINUTE_MS - 300
    # a lower stale header never lowers the count
    budget.note_used(50, M + 400, reserved=60)
    assert budget.used == 2100


def test_rate_limited_blocks_until_retry_after() -> None:
    budget = WeightBudget(2400)
    budget.on_rate_limited(7.5, False, M + 1000)
    assert budget.reserve(1, M + 1000) == 7500
    assert budget.reserve(1, M + 8000) == 500
    # the minute is treated as spent: wait for the next one
    assert budget.reserve(1, M + 8500) == MINUTE_MS - 8500
    assert budget.reserve(1, M + MINUTE_MS) == 0
    budget.on_rate_limited(None, True, M + MINUTE_MS)
    assert budget.reserve(1, M + MINUTE_MS + 1) == 120_000 - 1
    stats = budget.stats()
    assert (stats["rate_limited"], stats["banned"]) == (1, 1)
    assert stats["blocked_until_ms"] == M + MINUTE_MS + 120_000


def test_429_without_retry_after_waits_for_the_minute() -> None:
    budget = WeightBudget(1200)
    budget.on_rate_limited(None, False, M + 59_000)
    assert budget.reserve(2, M + 59_000) == 1000
    assert budget.reserve(2, M + MINUTE_MS) == 0


def test_release_and_limits() -> None:
    budget = WeightBudget(10, safety=1.0)
    assert budget.reserve(10, M) == 0
    budget.release(10)
    assert budget.stats()["in_flight"] == 0
    assert budget.used == 10  # a failed call still counts
    budget.set_limit(20)
    assert budget.cap == 20
    assert budget.reserve(10, M) == 0
    # a single call larger than the cap on an idle minute is not blocked forever
    small = WeightBudget(5)
    assert small.reserve(10, M) == 0
    with pytest.raises(ValueError, match="positive"):
        WeightBudget(0)


def test_callers_that_do_not_name_the_reservation() -> None:
    budget = WeightBudget(100)
    assert budget.reserve(2, M) == 0
    assert budget.reserve(5, M) == 0
    budget.note_used(7, M + 10)  # answers the oldest call: weight 2
    assert budget.stats()["in_flight"] == 5
    budget.note_used(12, M + 20)
    assert budget.stats()["in_flight"] == 0
    assert budget.used == 12
    # the budget keeps working across minutes when callers never release
    for minute in range(1, 5):
        now = M + minute * MINUTE_MS
        assert budget.reserve(80, now) == 0
        budget.note_used(80, now + 1)
        assert budget.used == 80


def test_forgotten_reservations_expire() -> None:
    budget = WeightBudget(100)
    assert budget.reserve(90, M) == 0
    assert budget.reserve(1, M + MINUTE_MS) > 0  # still in flight
    assert budget.reserve(90, M + 3 * MINUTE_MS) == 0  # the lost call is forgotten


def test_assigning_limit_moves_the_cap() -> None:
    budget = WeightBudget(2400)
    budget.limit = 1000
    assert (budget.limit, budget.cap) == (1000, 900)
    assert budget.stats()["limit"] == 1000
