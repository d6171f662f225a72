"""The pure book: exact state after each step (h11 test_state style)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, strategies as st

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.recorder.book import (
    PROBES,
    Book,
    BookError,
    PeriodReport,
    SymbolState,
    subtract_ranges,
)
from bmac_trio.recorder.events import Fetch

M = 60_000
T0 = 1_700_000_040_000 // M * M  # an aligned minute
IV = parse_interval("1m")


def book(num: int = 10) -> Book:
    return Book(interval=IV, num_candles=num)


def test_subtract_ranges() -> None:
    assert subtract_ranges((0, 10), []) == [(0, 10)]
    assert subtract_ranges((0, 10), [(3, 5)]) == [(0, 2), (6, 10)]
    assert subtract_ranges((0, 10), [(0, 10)]) == []
    assert subtract_ranges((0, 10), [(8, 20), (-5, 1)]) == [(2, 7)]


def test_add_symbols_fetches_only_missing_tail() -> None:
    b = book(10)
    now = T0 + 5 * M + 1000  # last closed candle opens at T0 + 4M
    fetches = b.add_symbols({"AAA": T0 + 2 * M, "BBB": None, "CCC": T0 + 4 * M}, now_ms=now)
    assert fetches == [
        Fetch(symbol="AAA", first_open_ms=T0 + 3 * M, last_open_ms=T0 + 4 * M, reason="history"),
        Fetch(symbol="BBB", first_open_ms=T0 - 5 * M, last_open_ms=T0 + 4 * M, reason="history"),
    ]
    assert b.symbols == {
        "AAA": SymbolState(T0 + 2 * M, T0 + 2 * M, T0 + 2 * M, ((T0 + 3 * M, T0 + 4 * M),)),
        "BBB": SymbolState(None, None, None, ((T0 - 5 * M, T0 + 4 * M),)),
        "CCC": SymbolState(T0 + 4 * M, T0 + 4 * M, T0 + 4 * M, ()),
    }
    # adding again changes nothing
    assert b.add_symbols({"AAA": None}, now_ms=now) == []


def test_old_file_fetches_at_most_num_candles() -> None:
    b = book(10)
    fetches = b.add_symbols({"AAA": T0 - 1000 * M}, now_ms=T0 + 1000)
    assert fetches == [
        Fetch(symbol="AAA", first_open_ms=T0 - 10 * M, last_open_ms=T0 - M, reason="history")
    ]


def test_gap_of_any_length_fetches_exactly_the_missing_range_once() -> None:
    b = book(1500)
    b.add_symbols({"AAA": T0}, now_ms=T0 + M)
    merge, fetches = b.on_klines("AAA", [T0 + 300 * M], source="ws", received=1.0)
    assert merge is True
    assert fetches == [
        Fetch(symbol="AAA", first_open_ms=T0 + M, last_open_ms=T0 + 299 * M, reason="gap")
    ]
    assert b.symbols["AAA"] == SymbolState(
        T0 + 300 * M, T0 + 300 * M, T0, ((T0 + M, T0 + 299 * M),)
    )
    # the next candle is contiguous: no fetch; a duplicate push is not merged
    assert b.on_klines("AAA", [T0 + 301 * M], source="ws", received=2.0) == (True, [])
    assert b.on_klines("AAA", [T0 + 301 * M], source="ws", received=3.0) == (False, [])
    # a late WS candle inside the hole being fetched is merged, fetch not repeated
    assert b.on_klines("AAA", [T0 + 5 * M], source="ws", received=3.0) == (True, [])
    assert b.symbols["AAA"].inflight == ((T0 + M, T0 + 299 * M),)
    # the REST refill lands
    assert b.on_klines("AAA", [T0 + M, T0 + 2 * M], source="rest", received=4.0) == (True, [])
    fetch = Fetch(symbol="AAA", first_open_ms=T0 + M, last_open_ms=T0 + 299 * M, reason="gap")
    b.on_fetch_done(fetch, T0 + 299 * M)
    assert b.symbols["AAA"] == SymbolState(T0 + 301 * M, T0 + 301 * M, T0, ())


def test_overlapping_wants_are_split_around_inflight() -> None:
    b = book(100)
    b.add_symbols({"AAA": T0}, now_ms=T0 + M)
    _, f1 = b.on_klines("AAA", [T0 + 10 * M], source="ws", received=0.0)
    assert [(f.first_open_ms, f.last_open_ms) for f in f1] == [(T0 + M, T0 + 9 * M)]
    # deadline for a later period while the gap fetch is in flight asks only for the rest
    b.on_period_start(T0 + 13 * M)
    fetches, report = b.on_deadline(T0 + 13 * M)
    assert [(f.first_open_ms, f.last_open_ms, f.reason) for f in fetches] == [
        (T0 + 11 * M, T0 + 12 * M, "deadline")
    ]
    assert report == PeriodReport(
        run_time_ms=T0 + 13 * M,
        complete=(),
        missing=("AAA",),
        deadline_passed=True,
        last_received=None,
    )
    assert b.symbols["AAA"].inflight == ((T0 + M, T0 + 9 * M), (T0 + 11 * M, T0 + 12 * M))


def test_period_completes_when_all_written() -> None:
    b = book(10)
    b.add_symbols({"AAA": T0, "BBB": T0}, now_ms=T0 + M)
    run_time = T0 + 2 * M
    assert b.on_period_start(run_time) == []
    assert b.on_klines("AAA", [T0 + M], source="ws", received=10.0) == (True, [])
    assert b.on_written("AAA", T0 + M) == []
    assert b.periods[run_time].complete == {"AAA"}
    assert b.on_klines("BBB", [T0 + M], source="ws", received=11.5) == (True, [])
    assert b.on_written("BBB", T0 + M) == [
        PeriodReport(
            run_time_ms=run_time,
            complete=("AAA", "BBB"),
            missing=(),
            deadline_passed=False,
            last_received=11.5,
        )
    ]
    # a second write does not re-report; the deadline finds nothing to fetch
    assert b.on_written("BBB", T0 + M) == []
    assert b.on_deadline(run_time) == ([], None)


def test_deadline_fetches_late_symbol_and_late_completion_rereports() -> None:
    b = book(10)
    b.add_symbols({"AAA": T0, "BBB": T0}, now_ms=T0 + M)
    run_time = T0 + 2 * M
    b.on_period_start(run_time)
    b.on_klines("AAA", [T0 + M], source="ws", received=1.0)
    b.on_written("AAA", T0 + M)
    fetches, report = b.on_deadline(run_time)
    late = Fetch(symbol="BBB", first_open_ms=T0 + M, last_open_ms=T0 + M, reason="deadline")
    assert fetches == [late]
    assert report is not None
    assert (report.complete, report.missing) == (("AAA",), ("BBB",))
    b.on_klines("BBB", [T0 + M], source="rest", received=2.0)
    b.on_fetch_done(late, T0 + M)
    [again] = b.on_written("BBB", T0 + M)
    assert (again.complete, again.missing, again.deadline_passed) == (("AAA", "BBB"), (), True)


def _quiet_deadline(symbols: list[str]) -> tuple[Book, int, list[Fetch]]:
    """Every symbol holds T0; the period ending at T0 + 2M gets no candle from anyone."""
    b = book(10)
    b.add_symbols(dict.fromkeys(symbols, T0), now_ms=T0 + M)
    run_time = T0 + 2 * M
    b.on_period_start(run_time)
    fetches, report = b.on_deadline(run_time)
    assert report is not None
    assert report.missing == tuple(symbols)
    return b, run_time, fetches


def test_probe_given_up_releases_the_other_late_symbols() -> None:
    # a probe refused for good (its symbol no longer tradable) must not hold the period's
    # other late symbols back until the next period
    symbols = [f"S{i:02d}" for i in range(6)]
    b, _, probes = _quiet_deadline(symbols)
    released = b.on_fetch_failed(probes[0])
    assert {f.symbol for f in released} == set(symbols) - {probes[0].symbol} - {
        p.symbol for p in probes
    }
    assert b.on_fetch_failed(probes[1]) == []  # released once


def test_deadline_with_nothing_received_asks_a_few_symbols_first() -> None:
    # a maintenance window: no candle exists; each period costs PROBES requests, not one per
    # symbol, and the requests that find nothing release nobody
    symbols = [f"S{i:02d}" for i in range(20)]
    b, run_time, probes = _quiet_deadline(symbols)
    assert len(probes) == PROBES
    assert all(f.reason == "deadline" and f.last_open_ms == T0 + M for f in probes)
    for probe in probes:
        assert b.on_fetch_done(probe, T0 + M) == []  # REST: no candle
    assert b.periods[run_time].probes == frozenset()


def test_probe_that_finds_the_candle_releases_every_late_symbol_once() -> None:
    # the streams were down but the market was not: the first probe with the candle releases
    # the other late symbols (not those the stream has brought meanwhile, nor the probes)
    symbols = [f"S{i:02d}" for i in range(6)]
    b, _, probes = _quiet_deadline(symbols)
    first, *others = probes
    b.on_klines(first.symbol, [T0 + M], source="rest", received=5.0)
    late_by_ws = next(s for s in symbols if s not in {f.symbol for f in probes})
    b.on_klines(late_by_ws, [T0 + M], source="ws", received=5.1)
    released = b.on_fetch_done(first, T0 + M)
    probed = {f.symbol for f in probes}
    assert {f.symbol for f in released} == set(symbols) - probed - {late_by_ws}
    assert all((f.first_open_ms, f.last_open_ms) == (T0 + M, T0 + M) for f in released)
    assert b.on_fetch_done(others[0], T0 + M) == []  # released once only


def test_deadline_with_some_candle_received_fetches_every_late_symbol() -> None:
    b = book(10)
    symbols = [f"S{i:02d}" for i in range(6)]
    b.add_symbols(dict.fromkeys(symbols, T0), now_ms=T0 + M)
    b.on_period_start(T0 + 2 * M)
    b.on_klines("S00", [T0 + M], source="ws", received=1.0)
    fetches, _ = b.on_deadline(T0 + 2 * M)
    assert sorted(f.symbol for f in fetches) == symbols[1:]


def test_symbol_removed_completes_period_and_drops_its_candles() -> None:
    b = book(10)
    b.add_symbols({"AAA": T0, "BBB": T0}, now_ms=T0 + M)
    b.on_period_start(T0 + 2 * M)
    b.on_written("AAA", T0 + M)
    [report] = b.remove_symbol("BBB")
    assert report.complete == ("AAA",)
    assert report.missing == ()
    assert b.on_klines("BBB", [T0 + M], source="ws", received=0.0) == (False, [])
    assert set(b.symbols) == {"AAA"}


def test_leaving_symbol_keeps_its_fetches_but_no_period_waits_for_it() -> None:
    b = book(10)
    [tail] = b.add_symbols({"OLD": T0}, now_ms=T0 + 4 * M, expected=False)
    b.add_symbols({"AAA": T0 + 3 * M}, now_ms=T0 + 4 * M)
    assert (tail.first_open_ms, tail.last_open_ms) == (T0 + M, T0 + 3 * M)
    [report] = b.on_period_start(T0 + 4 * M)  # AAA holds the candle: complete without OLD
    assert report.complete == ("AAA",)
    assert not b.is_settled("OLD")
    assert b.on_klines("OLD", [T0 + M], source="rest", received=0.0) == (True, [])
    b.on_fetch_done(tail, T0 + 3 * M)
    assert b.is_settled("OLD")


def test_stop_expecting_completes_periods_and_resume_brings_the_symbol_back() -> None:
    b = book(10)
    b.add_symbols({"AAA": T0, "BBB": T0}, now_ms=T0 + M)
    b.on_period_start(T0 + 2 * M)
    b.on_written("AAA", T0 + M)
    [report] = b.stop_expecting("BBB")
    assert (report.complete, report.missing) == (("AAA",), ())
    assert "BBB" in b.symbols  # still recorded: its fetches may land
    b.resume_expecting("BBB")
    b.on_written("AAA", T0 + 2 * M)
    assert b.on_period_start(T0 + 3 * M) == []  # waits for BBB again
    assert b.periods[T0 + 3 * M].expected == {"AAA", "BBB"}


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.on_period_start(T0 + 1),
        lambda b: b.on_klines("AAA", [T0 + 5], source="ws", received=0.0),
        lambda b: b.on_klines("AAA", [], source="ws", received=0.0),
        lambda b: b.remove_symbol("ZZZ"),
        lambda b: b.stop_expecting("ZZZ"),
        lambda b: b.resume_expecting("ZZZ"),
        lambda b: b.on_fetch_done(
            Fetch(symbol="AAA", first_open_ms=T0, last_open_ms=T0, reason="gap"), T0
        ),
        lambda b: b.on_period_start(T0),  # not after the last period
    ],
)
def test_illegal_input_raises_and_leaves_state_unchanged(call: object) -> None:
    b = book(10)
    b.add_symbols({"AAA": T0}, now_ms=T0 + M)
    b.on_period_start(T0 + M)
    before = copy.deepcopy((b.symbols, b.periods))
    with pytest.raises(BookError):
        call(b)  # type: ignore[operator]
    after = (b.symbols, b.periods)
    assert after == before


def test_rest_confirming_no_candle_moves_horizon_without_refetch_loop() -> None:
    b = book(10)
    b.add_symbols({"AAA": T0}, now_ms=T0 + M)
    _, [gap] = b.on_klines("AAA", [T0 + 5 * M], source="ws", received=0.0)
    # REST has nothing for the gap (a maintenance window): horizon stays, inflight cleared
    b.on_fetch_done(gap, T0 + 4 * M)
    assert b.symbols["AAA"] == SymbolState(T0 + 5 * M, T0 + 5 * M, T0, ())
    # next candle contiguous: no new fetch
    assert b.on_klines("AAA", [T0 + 6 * M], source="ws", received=0.0) == (True, [])


def test_new_symbol_ws_before_history_asks_for_nothing_extra() -> None:
    b = book(10)
    [hist] = b.add_symbols({"NEW": None}, now_ms=T0 + 1000)
    assert (hist.first_open_ms, hist.last_open_ms) == (T0 - 10 * M, T0 - M)
    assert b.on_klines("NEW", [T0], source="ws", received=0.0) == (True, [])
    b.on_fetch_done(hist, T0 - M)
    assert b.symbols["NEW"] == SymbolState(T0, T0, None, ())


# --- property: a period is announced complete once ---------------------------------------------

_SYMBOLS = ("AAA", "BBB", "CCC")
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("start")),
        st.tuples(st.just("deadline"), st.integers(0, 5)),
        st.tuples(st.just("written"), st.sampled_from(_SYMBOLS), st.integers(0, 8)),
        st.tuples(st.just("ws"), st.sampled_from(_SYMBOLS), st.integers(0, 8)),
        st.tuples(st.just("leave"), st.sampled_from(_SYMBOLS)),
        st.tuples(st.just("resume"), st.sampled_from(_SYMBOLS)),
        st.tuples(st.just("remove"), st.sampled_from(_SYMBOLS)),
        st.tuples(st.just("fetched"), st.integers(0, 20)),
    ),
    max_size=60,
)


@given(_steps)
def test_each_period_is_reported_complete_at_most_once(steps: list[tuple[object, ...]]) -> None:
    # the lag histogram and the "all symbols ready" line count one per period: whatever the
    # order of writes, deadlines, departures and returns, no period is complete twice
    b = book(10)
    inflight = b.add_symbols(dict.fromkeys(_SYMBOLS, T0), now_ms=T0 + 2 * M)
    boundary = T0 + M
    complete: list[int] = []

    def note(reports: list[PeriodReport]) -> None:
        complete.extend(r.run_time_ms for r in reports if r.is_complete)

    for step in steps:
        match step:
            case ("start",):
                boundary += M
                note(b.on_period_start(boundary))
            case ("deadline", back):
                fetches, report = b.on_deadline(boundary - int(back) * M)
                inflight += fetches
                note([report] if report is not None else [])
            case ("written", symbol, back):
                t = max(T0, boundary - (int(back) + 1) * M)
                note(b.on_written(str(symbol), t))
            case ("ws", symbol, back):
                t = max(T0, boundary - (int(back) + 1) * M)
                if str(symbol) in b.symbols:
                    inflight += b.on_klines(str(symbol), [t], source="ws", received=1.0)[1]
            case ("leave", symbol) if str(symbol) in b.symbols:
                note(b.stop_expecting(str(symbol)))
            case ("resume", symbol) if str(symbol) in b.symbols:
                b.resume_expecting(str(symbol))
            case ("remove", symbol) if str(symbol) in b.symbols:
                note(b.remove_symbol(str(symbol)))
            case ("fetched", index) if inflight:
                fetch = inflight.pop(int(index) % len(inflight))
                if fetch.symbol in b.symbols:
                    inflight += b.on_fetch_done(fetch, fetch.last_open_ms)
    assert len(complete) == len(set(complete)), complete
