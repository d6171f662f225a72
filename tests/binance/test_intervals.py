from datetime import UTC, datetime

import pytest

from bmac_trio.binance.intervals import ALL_INTERVALS, parse_interval


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("name", "t", "expected_open"),
    [
        ("1m", ms(2024, 7, 17, 11, 37, 59), ms(2024, 7, 17, 11, 37)),
        ("5m", ms(2024, 7, 17, 11, 37, 59), ms(2024, 7, 17, 11, 35)),
        # BMAC v2 aligned 6h/12h to Hong Kong midnight; Binance aligns to UTC.
        ("6h", ms(2024, 7, 17, 5, 59), ms(2024, 7, 17, 0)),
        ("6h", ms(2024, 7, 17, 13, 0), ms(2024, 7, 17, 12)),
        ("12h", ms(2024, 7, 17, 23, 0), ms(2024, 7, 17, 12)),
        ("1d", ms(2024, 7, 17, 23, 59), ms(2024, 7, 17)),
        # Weeks open on Monday: the doc sample 1499040000000 is Mon 2017-07-03.
        ("1w", ms(2017, 7, 9, 23, 59), 1499040000000),
        ("1M", ms(2024, 2, 29, 12), ms(2024, 2, 1)),
    ],
)
def test_floor_aligns_like_binance(name: str, t: int, expected_open: int) -> None:
    assert parse_interval(name).floor(t) == expected_open


def test_close_time_is_next_open_minus_one_ms() -> None:
    one_minute = parse_interval("1m")
    assert one_minute.close_time(1672515780000) == 1672515839999
    week = parse_interval("1w")
    assert week.close_time(1499040000000) == 1499644799999


def test_months_have_calendar_lengths() -> None:
    month = parse_interval("1M")
    assert month.add(ms(2024, 1, 1)) == ms(2024, 2, 1)
    assert month.add(ms(2024, 12, 1)) == ms(2025, 1, 1)
    assert month.add(ms(2024, 3, 1), -2) == ms(2024, 1, 1)
    assert month.count(ms(2023, 11, 1), ms(2024, 2, 1)) == 4


def test_count_and_last_closed() -> None:
    five = parse_interval("5m")
    assert five.count(ms(2024, 1, 1), ms(2024, 1, 1, 1)) == 13
    assert five.count(ms(2024, 1, 1, 1), ms(2024, 1, 1)) == 0
    assert five.last_closed_open(ms(2024, 1, 1, 0, 7)) == ms(2024, 1, 1, 0, 0)
    assert five.is_aligned(ms(2024, 1, 1, 0, 5))
    assert not five.is_aligned(ms(2024, 1, 1, 0, 5, 1))


@pytest.mark.parametrize("bad", ["", "1", "2m", "1H", "m1", "60s", None, 5])
def test_unknown_intervals_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="unknown interval"):
        parse_interval(bad)  # type: ignore[arg-type]


def test_every_binance_interval_parses() -> None:
    assert [parse_interval(n).name for n in ALL_INTERVALS] == list(ALL_INTERVALS)
