"""Weight accounting per IP per exchange minute, 429 then escalating 418 bans (pure)."""

from __future__ import annotations

from bmac_trio.sim._ratelimit import WeightLimiter

MIN = 60_000
T0 = 1767225600000


def test_weight_resets_each_minute_and_is_per_ip() -> None:
    lim = WeightLimiter(10, futures=True)
    assert lim.check("a", 6, T0).status == 200
    assert lim.check("b", 6, T0).status == 200
    assert lim.used("a", T0 + 59_999) == 6
    assert lim.check("a", 6, T0 + MIN).status == 200
    assert lim.used("a", T0 + MIN) == 6
    assert lim.weight_by_ip == {"a": 12, "b": 6}


def test_429_retry_after_is_the_rest_of_the_minute_then_ban_escalates() -> None:
    lim = WeightLimiter(10, futures=False, ban_seconds=120)
    lim.check("a", 8, T0)
    v = lim.check("a", 8, T0 + 15_000)
    assert (v.status, v.code, v.retry_after) == (429, -1003, 45)
    assert "10 request weight per 1 MINUTE" in v.msg
    v = lim.check("a", 1, T0 + 20_000)
    assert (v.status, v.retry_after) == (418, 120)
    assert f"IP banned until {T0 + 140_000}" in v.msg
    v = lim.check("a", 1, T0 + 100_000)
    assert (v.status, v.retry_after) == (418, 40)
    # After the ban, obeying the limit works again; a second offence bans for longer.
    assert lim.check("a", 1, T0 + 200_000).status == 200
    assert lim.check("a", 20, T0 + 201_000).status == 429
    v = lim.check("a", 1, T0 + 202_000)
    assert (v.status, v.retry_after) == (418, 240)


def test_waiting_out_retry_after_avoids_the_ban() -> None:
    lim = WeightLimiter(10, futures=True)
    v = lim.check("a", 11, T0 + 50_000)
    assert (v.status, v.retry_after) == (429, 10)
    assert lim.check("a", 1, T0 + MIN).status == 200


def test_grace_for_requests_already_in_flight() -> None:
    lim = WeightLimiter(10, futures=True, grace_ms=500)
    assert lim.check("a", 11, T0).status == 429
    assert lim.check("a", 1, T0 + 499).status == 429
    assert lim.check("a", 1, T0 + 500).status == 418
