import trio
import trio.testing

from bmac_trio.clock import ScaledWallClock, SystemClock, TrioClock, parse_clock_spec

START_MS = 1_700_000_000_000


async def test_trio_clock_runs_a_day_in_no_time(autojump_clock: trio.testing.MockClock) -> None:
    clock = TrioClock(START_MS, speed=1.0)
    await clock.sleep_until_ms(START_MS + 86_400_000)
    assert clock.now_ms() == START_MS + 86_400_000


async def test_trio_clock_speed_scales_sleeps(autojump_clock: trio.testing.MockClock) -> None:
    clock = TrioClock(START_MS, speed=60.0)
    before = trio.current_time()
    await clock.sleep_until_ms(START_MS + 60_000)
    assert trio.current_time() - before == 1.0
    assert clock.to_real(15) == 0.25


def test_clock_spec_round_trip() -> None:
    clock = ScaledWallClock(START_MS, 120.0, 1234.5)
    shared = parse_clock_spec(clock.spec())
    assert shared == clock
    assert isinstance(parse_clock_spec(None), SystemClock)


def test_bad_clock_spec() -> None:
    import pytest

    with pytest.raises(ValueError, match="bad clock spec"):
        parse_clock_spec("nonsense")
    with pytest.raises(ValueError, match="speed must be positive"):
        parse_clock_spec("1:0:1")
