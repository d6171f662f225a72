"""The recorder's brain: which candles we hold, which we lack, and which periods are complete.

Pure and synchronous (h11-style): :class:`Book` holds explicit state, each ``on_*`` method
consumes one input and returns the commands it implies (:class:`~bmac_trio.recorder.events.Fetch`
requests and :class:`PeriodReport` s). An illegal input raises :class:`BookError` and leaves the
state unchanged. The dispatcher feeds it and carries out what it returns; nothing else decides
what to fetch or when a period is complete.

The rules, each a fix for a BMAC v2 bug (``reference/bmac-v2.md`` §10):

* A gap of any length between what we hold and a newer candle becomes one :class:`Fetch` of
  exactly the missing open times (BMAC refetched 99 candles forever, bug 8). The newer candles
  are kept meanwhile, so the period completes without waiting for the refill.
* Nothing is fetched twice: a wanted range minus the ranges already in flight is what is fetched
  (BMAC queued one request per check, bug 14).
* Per period: the symbols expected at its start, which have the period's candle *on disk*
  (``on_written``), and, at the deadline, a fetch for each late symbol plus a report of what is
  missing. A late completion re-reports the period, so the manifest can be rewritten.
* A candle for a symbol we no longer record is dropped (BMAC recreated deleted files, bug 15).
* A deadline at which no symbol at all has the period's candle (a maintenance window, or every
  stream down) asks REST about a few symbols first (:data:`PROBES`), and the others only once
  one of them has the candle: a long maintenance costs a few requests per period, not one per
  symbol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bmac_trio.binance.intervals import Interval
from bmac_trio.binance.planner import missing_range
from bmac_trio.recorder.events import Fetch, FetchReason, Source

__all__ = ["Book", "BookError", "PeriodReport", "SymbolState", "find_holes", "subtract_ranges"]

#: How many recent periods keep their completeness tracked (late completions re-report).
KEEP_PERIODS = 4
#: Late symbols asked first at a deadline when nothing at all arrived for the period.
PROBES = 3

Range = tuple[int, int]


class BookError(ValueError):
    """An input the book cannot accept (e.g. a period boundary that is not aligned)."""


@dataclass(slots=True)
class SymbolState:
    """What the book knows about one symbol (open times in epoch ms)."""

    #: Newest candle held in memory (merged, maybe not yet written), None before any.
    have_last: int | None = None
    #: Newest open time resolved: held, or confirmed by REST to have no candle.
    horizon: int | None = None
    #: Newest candle written to disk.
    written_last: int | None = None
    #: Ranges (first, last open, inclusive) of fetches in flight.
    inflight: tuple[Range, ...] = ()
    #: Whether new periods wait for this symbol (False: it is leaving, only its tail is due).
    expected: bool = True


@dataclass(slots=True)
class _Period:
    expected: frozenset[str]
    complete: set[str] = field(default_factory=set)
    deadline_passed: bool = False
    reported_complete: bool = False
    #: The newest ``received`` of a closing candle of this period (monotonic seconds).
    last_received: float | None = None
    #: Deadline fetches sent as probes while the other late symbols wait for their answer.
    probes: frozenset[Fetch] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodReport:
    """The state of the period ending at ``run_time_ms``: write its manifest.

    ``last_received`` is when its last closing candle arrived (monotonic seconds), for the lag.
    """

    run_time_ms: int
    complete: tuple[str, ...]
    missing: tuple[str, ...]
    deadline_passed: bool
    last_received: float | None

    @property
    def is_complete(self) -> bool:
        """Every expected symbol has the period's candle on disk."""
        return not self.missing


def subtract_ranges(want: Range, have: Iterable[Range]) -> list[Range]:
    """``want`` minus the union of ``have``, in ascending order; every range is inclusive.

    Works on any integers (open times of one interval are a multiple of it apart, so subtracting
    inclusive ranges and stepping by one interval give the same pieces once mapped back).
    """
    pieces = [want]
    for lo, hi in have:
        nxt: list[Range] = []
        for a, b in pieces:
            if hi < a or lo > b:
                nxt.append((a, b))
                continue
            if a < lo:
                nxt.append((a, lo - 1))
            if hi < b:
                nxt.append((hi + 1, b))
        pieces = nxt
    return sorted(pieces)


def find_holes(opens: Sequence[int], interval: Interval, first_open_ms: int) -> list[Range]:
    """Missing open times in a file's sorted ``opens``, from ``first_open_ms`` to its newest.

    A recorder killed while a history page or a gap refill was in flight leaves such holes;
    a restart must refill them, not only the tail. (A hole that REST cannot fill, such as a
    maintenance window, costs one request per restart.)
    """
    holes: list[Range] = []
    expected = first_open_ms
    for t in opens:
        if t < first_open_ms:
            continue
        if t > expected:
            holes.append((expected, interval.add(t, -1)))
        expected = interval.add(t, 1)
    return holes


class Book:
    """Recording state of every symbol, and of the last few periods.

    Args:
        interval: the kline interval.
        num_candles: how many candles each file keeps (the history depth).
    """

    def __init__(self, *, interval: Interval, num_candles: int) -> None:
        self.interval = interval
        self.num_candles = num_candles
        self.symbols: dict[str, SymbolState] = {}
        self.periods: dict[int, _Period] = {}
        #: When the newest merged copy of each recent candle arrived (monotonic seconds).
        self.received_at: dict[int, float] = {}

    # --- symbols -------------------------------------------------------------------------------

    def add_symbols(
        self,
        last_open: Mapping[str, int | None],
        *,
        now_ms: int,
        reason: FetchReason = "history",
        holes: Mapping[str, Sequence[Range]] | None = None,
        expected: bool = True,
    ) -> list[Fetch]:
        """Start recording symbols; ``last_open`` is each one's newest candle on disk (or None).

        Returns the fetches of their missing tails (up to the last closed candle at ``now_ms``)
        and of the ``holes`` found in their files (see :func:`find_holes`). Symbols already
        recorded are left alone. ``expected=False`` completes the files of symbols that are
        leaving (delisted while the recorder was down) without making periods wait for them.
        """
        fetches: list[Fetch] = []
        for symbol in sorted(last_open):
            if symbol in self.symbols:
                continue
            have = last_open[symbol]
            state = SymbolState(have_last=have, horizon=have, written_last=have, expected=expected)
            self.symbols[symbol] = state
            for hole in (holes or {}).get(symbol, ()):
                fetches += self._want(symbol, state, hole, reason)
            missing = missing_range(have, now_ms, self.interval, self.num_candles)
            if missing is not None:
                fetches += self._want(symbol, state, missing, reason)
        return fetches

    def window_start(self, now_ms: int) -> int:
        """Open time of the oldest candle a file keeps at ``now_ms``."""
        window = missing_range(None, now_ms, self.interval, self.num_candles)
        assert window is not None
        return window[0]

    def stop_expecting(self, symbol: str) -> list[PeriodReport]:
        """Periods no longer wait for ``symbol``, which stays recorded until its fetches end.

        A delisted symbol leaves this way: a history or refill still in flight must land in
        the file kept aside, not be abandoned. Periods that only waited for it become complete.
        """
        state = self.symbols.get(symbol)
        if state is None:
            raise BookError(f"stop_expecting: {symbol!r} is not recorded")
        state.expected = False
        return self._forget_expected(symbol)

    def resume_expecting(self, symbol: str) -> None:
        """A leaving symbol is selected again: the next periods wait for it once more."""
        state = self.symbols.get(symbol)
        if state is None:
            raise BookError(f"resume_expecting: {symbol!r} is not recorded")
        state.expected = True

    def is_settled(self, symbol: str) -> bool:
        """No fetch of ``symbol`` is in flight."""
        state = self.symbols.get(symbol)
        return state is None or not state.inflight

    def remove_symbol(self, symbol: str) -> list[PeriodReport]:
        """Stop recording ``symbol``; periods that only waited for it become complete."""
        if symbol not in self.symbols:
            raise BookError(f"remove_symbol: {symbol!r} is not recorded")
        del self.symbols[symbol]
        return self._forget_expected(symbol)

    def _forget_expected(self, symbol: str) -> list[PeriodReport]:
        reports = []
        for run_time, period in self.periods.items():
            if symbol in period.expected:
                period.expected = period.expected - {symbol}
                period.complete.discard(symbol)
                reports += self._maybe_report(run_time, period)
        return reports

    # --- candles -------------------------------------------------------------------------------

    def on_klines(
        self, symbol: str, open_times: Sequence[int], *, source: Source, received: float
    ) -> tuple[bool, list[Fetch]]:
        """Closed candles arrived. Returns (merge them?, fetches for a gap before them).

        A WebSocket batch that holds nothing newer than what we have, and nothing inside a
        range being fetched, is a duplicate: not merged (no rewrite). REST pages are always
        merged (they fill holes).

        Raises:
            BookError: an open time that is not aligned to the interval, or an empty batch.
        """
        if not open_times:
            raise BookError(f"on_klines: empty batch for {symbol!r}")
        for t in open_times:
            if not self.interval.is_aligned(t):
                raise BookError(f"on_klines: {symbol} open time {t} is not aligned")
        state = self.symbols.get(symbol)
        if state is None:
            return False, []
        newest = max(open_times)
        fetches: list[Fetch] = []
        if source == "ws":
            new = state.have_last is None or newest > state.have_last
            in_hole = any(lo <= t <= hi for t in open_times for lo, hi in state.inflight)
            if not new and not in_hole:
                return False, []
            oldest = min(open_times)
            ref = state.horizon
            if ref is None:
                ref = self.interval.add(oldest, -self.num_candles)
            if oldest > self.interval.add(ref, 1):
                fetches = self._want(
                    symbol, state, (self.interval.add(ref, 1), self.interval.add(oldest, -1)), "gap"
                )
        self._note_received(open_times, received)
        if state.have_last is None or newest > state.have_last:
            state.have_last = newest
        if state.horizon is None or newest > state.horizon:
            state.horizon = newest
        return True, fetches

    def on_fetch_done(self, fetch: Fetch, through_open_ms: int | None) -> list[Fetch]:
        """A fetch finished; what it covered is resolved even where REST had no candle.

        Returns the fetches of the late symbols held back by a deadline probe, once a probe
        has brought the period's candle (see :meth:`on_deadline`).
        """
        state = self._inflight_state(fetch)
        state.inflight = tuple(r for r in state.inflight if r != _range(fetch))
        if through_open_ms is not None:
            prev = self.interval.add(fetch.first_open_ms, -1)
            if state.horizon is None or state.horizon >= prev:
                state.horizon = max(state.horizon or through_open_ms, through_open_ms)
        return self._after_probe(fetch)

    def on_fetch_failed(self, fetch: Fetch) -> list[Fetch]:
        """A fetch was given up; its range may be asked for again by a later gap or deadline.

        A deadline probe given up (its symbol refused, e.g. no longer tradable) no longer holds
        the period's other late symbols back: they are returned to be fetched now.
        """
        state = self._inflight_state(fetch)
        state.inflight = tuple(r for r in state.inflight if r != _range(fetch))
        for run_time, period in self.periods.items():
            if fetch in period.probes:
                period.probes = frozenset()
                late = [s for s in self._late(run_time, period) if s != fetch.symbol]
                return self._late_fetches(run_time, late)
        return []

    def on_written(self, symbol: str, last_open_ms: int) -> list[PeriodReport]:
        """The data file of ``symbol`` now holds candles up to ``last_open_ms`` on disk."""
        state = self.symbols.get(symbol)
        if state is None:
            return []
        if not self.interval.is_aligned(last_open_ms):
            raise BookError(f"on_written: {symbol} open time {last_open_ms} is not aligned")
        if state.written_last is None or last_open_ms > state.written_last:
            state.written_last = last_open_ms
        reports = []
        for run_time, period in self.periods.items():
            if (
                symbol in period.expected
                and symbol not in period.complete
                and self.interval.add(run_time, -1) <= state.written_last
            ):
                period.complete.add(symbol)
                reports += self._maybe_report(run_time, period)
        return reports

    # --- periods -------------------------------------------------------------------------------

    def on_period_start(self, run_time_ms: int) -> list[PeriodReport]:
        """The period ending at ``run_time_ms`` ended: track which symbols hold its candle.

        Raises:
            BookError: ``run_time_ms`` is not a boundary, or not newer than the last period.
        """
        if not self.interval.is_aligned(run_time_ms):
            raise BookError(f"on_period_start: {run_time_ms} is not a period boundary")
        if self.periods and run_time_ms <= max(self.periods):
            raise BookError(f"on_period_start: {run_time_ms} is not after the last period")
        candle = self.interval.add(run_time_ms, -1)
        period = _Period(expected=frozenset(s for s, st in self.symbols.items() if st.expected))
        period.last_received = self.received_at.get(candle)
        period.complete = {
            s
            for s in period.expected
            if (w := self.symbols[s].written_last) is not None and w >= candle
        }
        self.periods[run_time_ms] = period
        for old in sorted(self.periods)[:-KEEP_PERIODS]:
            del self.periods[old]
        return self._maybe_report(run_time_ms, period)

    def on_deadline(self, run_time_ms: int) -> tuple[list[Fetch], PeriodReport | None]:
        """The deadline of a period passed: fetch what is late, report what is missing.

        When no symbol has the period's candle, only :data:`PROBES` of the late symbols are
        fetched; :meth:`on_fetch_done` releases the others once a probe brings the candle.
        Returns no report for a period that is complete, or no longer (or never was) tracked.
        """
        period = self.periods.get(run_time_ms)
        if period is None:
            return [], None
        late = self._late(run_time_ms, period)
        if period.last_received is None and len(late) > PROBES:
            # most recently active first: a symbol that stopped trading is a poor probe
            late.sort(key=lambda s: (-(self.symbols[s].have_last or 0), s))
            fetches = self._late_fetches(run_time_ms, late[:PROBES])
            period.probes = frozenset(fetches)
        else:
            fetches = self._late_fetches(run_time_ms, late)
        period.deadline_passed = True
        if period.reported_complete:
            return fetches, None  # already complete: nothing new to report
        return fetches, self._report(run_time_ms, period)

    def fetch_now(self, run_time_ms: int, symbols: Iterable[str]) -> list[Fetch]:
        """Fetch the period's candle of ``symbols`` now, without waiting for the deadline
        (symbols whose stream the exchange refuses: REST is their only source)."""
        period = self.periods.get(run_time_ms)
        if period is None:
            return []
        late = self._late(run_time_ms, period)
        wanted = set(symbols)
        return self._late_fetches(run_time_ms, [s for s in late if s in wanted])

    # --- internals -----------------------------------------------------------------------------

    def _late(self, run_time: int, period: _Period) -> list[str]:
        """Expected symbols that do not even hold the period's candle in memory."""
        candle = self.interval.add(run_time, -1)
        return [
            s
            for s in sorted(period.expected - period.complete)
            if (have := self.symbols[s].have_last) is None or have < candle
        ]

    def _late_fetches(self, run_time: int, symbols: Sequence[str]) -> list[Fetch]:
        candle = self.interval.add(run_time, -1)
        fetches: list[Fetch] = []
        for symbol in symbols:
            state = self.symbols[symbol]
            missing = missing_range(
                state.horizon, self.interval.end(candle), self.interval, self.num_candles
            )
            # None: REST said "no candle" before the close; ask once more, it is closed now
            fetches += self._want(symbol, state, missing or (candle, candle), "deadline")
        return fetches

    def _after_probe(self, fetch: Fetch) -> list[Fetch]:
        for run_time, period in self.periods.items():
            if fetch in period.probes:
                if period.last_received is None:
                    period.probes = period.probes - {fetch}  # no candle yet: keep waiting
                    return []
                period.probes = frozenset()  # the candle exists: fetch every late symbol
                return self._late_fetches(run_time, self._late(run_time, period))
        return []

    def _note_received(self, open_times: Sequence[int], received: float) -> None:
        for t in set(open_times):
            if received > self.received_at.get(t, float("-inf")):
                self.received_at[t] = received
            period = self.periods.get(self.interval.end(t))
            if period is not None and period.last_received != self.received_at[t]:
                period.last_received = self.received_at[t]
        if len(self.received_at) > 4 * KEEP_PERIODS:
            for t in sorted(self.received_at)[: -2 * KEEP_PERIODS]:
                del self.received_at[t]

    def _want(
        self, symbol: str, state: SymbolState, want: Range, reason: FetchReason
    ) -> list[Fetch]:
        fetches = []
        for lo, hi in subtract_ranges(want, state.inflight):
            aligned = self.interval.is_aligned(lo)
            first = lo if aligned else self.interval.add(self.interval.floor(lo), 1)
            last = self.interval.floor(hi)
            if first > last:
                continue
            state.inflight = (*state.inflight, (first, last))
            fetches.append(
                Fetch(symbol=symbol, first_open_ms=first, last_open_ms=last, reason=reason)
            )
        return fetches

    def _inflight_state(self, fetch: Fetch) -> SymbolState:
        state = self.symbols.get(fetch.symbol)
        if state is None:
            return SymbolState()  # removed meanwhile: nothing to update
        if _range(fetch) not in state.inflight:
            raise BookError(f"{fetch} is not in flight")
        return state

    def _maybe_report(self, run_time: int, period: _Period) -> list[PeriodReport]:
        if period.complete >= period.expected:
            if period.reported_complete:
                return []
            period.reported_complete = True
            return [self._report(run_time, period)]
        if period.deadline_passed:
            return [self._report(run_time, period)]
        return []

    def _report(self, run_time: int, period: _Period) -> PeriodReport:
        return PeriodReport(
            run_time_ms=run_time,
            complete=tuple(sorted(period.complete & period.expected)),
            missing=tuple(sorted(period.expected - period.complete)),
            deadline_passed=period.deadline_passed,
            last_received=period.last_received,
        )


def _range(fetch: Fetch) -> Range:
    return (fetch.first_open_ms, fetch.last_open_ms)
