"""The dispatcher: the single owner of the disk.

It keeps every symbol's frame in memory (read once at start), feeds each inbox message to the
:class:`~bmac_trio._book.Book`, carries out what the book decides (fetches to the REST workers,
stream sets to the listeners) and writes. Writes go through ``trio.to_thread.run_sync`` with a
small :class:`trio.CapacityLimiter`, one symbol at a time per symbol but several symbols in
parallel, and each symbol is written as soon as its closing candle arrives rather than when
the whole period is in: that is what keeps the period lag low (BMAC read-merged-wrote each
parquet synchronously on its event loop, about 50 symbols a second, bug 3). A symbol whose
candles arrive while its write runs is written once more afterwards (coalesced).

It logs in BMAC's words ("n/m symbols ready", "all symbols ready", "Last updated SYMBOL") plus
each period's lag: from the arrival of the period's last closing kline to the period complete on
disk. It writes the period manifest when a period completes, or at its deadline with the missing
symbols (rewritten when late symbols complete it), and the status report.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from bmac_trio._book import Book, BookError, PeriodReport, find_holes
from bmac_trio._errors import StorageError
from bmac_trio._events import (
    Fetch,
    FetchDone,
    FetchFailed,
    FundingRates,
    Inbox,
    Klines,
    PeriodDeadline,
    PeriodStart,
    SetSymbols,
    SymbolsChanged,
)
from bmac_trio._layout import run_time_label
from bmac_trio._protocol import Candle, candles_to_frame

if TYPE_CHECKING:
    import polars as pl

    from bmac_trio._clock import Clock
    from bmac_trio._config import Config
    from bmac_trio._metrics import Metrics
    from bmac_trio._status import StatusTracker
    from bmac_trio._storage import CandleStore, ExginfoStore

__all__ = ["Dispatcher", "DispatcherStats", "run_dispatcher"]

log = logging.getLogger("bmac_trio.dispatcher")

#: Real seconds the final flush may take on shutdown.
FLUSH_GRACE_S = 10.0
#: A frame is made contiguous again once it has this many chunks.
MAX_CHUNKS = 16
#: Exchange ms a closed stream kline may end after our clock (skew); later ones are forged.
FUTURE_SLACK_MS = 60_000
#: Real seconds before a failed write (disk full, read-only) is tried again, doubling to the max.
WRITE_RETRY_S = 0.5
WRITE_RETRY_MAX_S = 30.0


@dataclass(slots=True)
class DispatcherStats:
    """What the dispatcher has done (tests, status, benchmark)."""

    writes: int = 0
    write_errors: int = 0
    #: run_time_ms -> lag seconds of every period completed with a known lag.
    lags: dict[int, float] = field(default_factory=dict)
    completed: list[int] = field(default_factory=list)
    history_started: float | None = None
    history_finished: float | None = None
    history_symbols: int = 0
    #: Klines weight the start-up history cost.
    history_weight: int = 0
    listed: list[str] = field(default_factory=list)
    delisted: list[str] = field(default_factory=list)
    fetches: int = 0


class Dispatcher:
    """State and behaviour of the dispatcher task (see :func:`run_dispatcher`).

    Args:
        config: the validated config.
        clock: exchange time.
        store / exginfo_store: the disk.
        fetches: where fetch commands go (the dispatcher owns and closes this end).
        listen: where stream sets go (owned and closed too).
        preloaded: frames already read from disk at start, by symbol.
        alert: ``alerter.notify`` (never raises).
        metrics / status: optional ops hooks.
        write_threads: how many symbol files are written in parallel.
        on_change: called (no arguments) after each period report and history step, so that
            waiters (tests, the benchmark) can re-check state without polling.
        recovering: the previous live phase crashed; alert ``recovered`` at the first complete
            period.
    """

    def __init__(
        self,
        *,
        config: Config,
        clock: Clock,
        store: CandleStore,
        exginfo_store: ExginfoStore,
        fetches: trio.MemorySendChannel[Fetch],
        listen: trio.MemorySendChannel[SetSymbols],
        preloaded: dict[str, pl.DataFrame | None] | None = None,
        alert: Callable[[str, str], None] | None = None,
        metrics: Metrics | None = None,
        status: StatusTracker | None = None,
        write_threads: int = 4,
        stats: DispatcherStats | None = None,
        on_change: Callable[[], None] | None = None,
        recovering: bool = False,
    ) -> None:
        self.config = config
        #: This live phase replaces one that crashed: say so once a period completes again.
        self.recovering = recovering
        self.interval = config.interval
        self.clock = clock
        self.store = store
        self.exginfo_store = exginfo_store
        self.fetches = fetches
        self.listen = listen
        self.preloaded = dict(preloaded or {})
        self.alert = alert or (lambda kind, text: None)
        self.metrics = metrics
        self.status = status
        self.stats = stats if stats is not None else DispatcherStats()
        self.on_change = on_change or (lambda: None)
        self.book = Book(interval=config.interval, num_candles=config.num_candles)
        self.frames: dict[str, pl.DataFrame] = {}
        #: Candles received but not merged yet (the symbol's writer merges them).
        self.pending: dict[str, list[Candle]] = {}
        self.limiter = trio.CapacityLimiter(write_threads)
        self.locks: dict[str, trio.Lock] = {}
        self.dirty: set[str] = set()
        self.writing: set[str] = set()
        self.idle = trio.Event()
        self.idle.set()
        self.manifest_lock = trio.Lock()
        #: The newest report of each period whose manifest is still to be written.
        self.manifests: dict[int, tuple[PeriodReport, float | None]] = {}
        #: Periods already reported (and alerted) as missing symbols at their deadline.
        self.reported_missing: set[int] = set()
        self.exginfo_lock = trio.Lock()
        self.history_pending: set[str] = set()
        #: The newest exchangeInfo selection.
        self.selected: frozenset[str] = frozenset()
        #: Delisted symbols still recorded until the next boundary (their final closing push
        #: arrives after exchangeInfo already says so), with the run time they left at.
        self.retiring: dict[str, int] = {}
        #: Symbols that left (delisted, or delisted while the recorder was down): moved aside
        #: as soon as no fetch or write of theirs is under way, so that their tail lands first.
        self.leaving: set[str] = set()
        #: History fetched, its last write still running: ready when that write lands.
        self.history_after_write: set[str] = set()
        #: Symbols whose files are being read before they join the book.
        self._adopting: set[str] = set()
        self.last_updated: str | None = None
        self.nursery: trio.Nursery | None = None
        self.progress: Any = None

    # --- the message loop ---------------------------------------------------------------------

    def handle(self, message: Inbox) -> None:
        """Process one inbox message (never awaits: slow work is started as child tasks)."""
        match message:
            case Klines():
                self._on_klines(message)
            case FetchDone(fetch=fetch, through_open_ms=through, weight=weight):
                if fetch.reason == "history":
                    self.stats.history_weight += weight
                self._forget_fetch(fetch, lambda: self.book.on_fetch_done(fetch, through))
            case FetchFailed(fetch=fetch, error=error):
                log.warning("fetch of %s given up: %s", fetch.symbol, error)
                self._forget_fetch(fetch, lambda: self.book.on_fetch_failed(fetch))
            case PeriodStart(run_time_ms=run_time):
                self._retire_due(run_time)
                log.info(
                    "Bmac %s %s update Runtime=%s",
                    self.interval,
                    self.config.trade_type_name,
                    run_time_label(run_time, self.config.timezone),
                )
                self._reports(self.book.on_period_start(run_time))
                self._save_status()
            case PeriodDeadline(run_time_ms=run_time):
                fetches, report = self.book.on_deadline(run_time)
                if fetches:
                    log.warning(
                        "Symbols not ready for runtime %s: %s, fetching over REST",
                        run_time_label(run_time, self.config.timezone),
                        [f.symbol for f in fetches][:50],
                    )
                    if self.metrics is not None:
                        self.metrics.late_symbols(len(fetches))
                self._send_fetches(fetches)
                if report is not None:
                    self._reports([report])
            case SymbolsChanged():
                self._on_symbols(message)
            case FundingRates(run_time_ms=run_time, frame=rates):
                self._spawn(self._write_funding, rates, run_time)
            case _:
                raise TypeError(f"unexpected inbox message {message!r}")

    def _on_klines(self, message: Klines) -> None:
        symbol = message.symbol
        opens = [c.open_ms for c in message.candles]
        if message.source == "ws":
            # REST pages are cut at the clock by closed_only(); a push claiming to be closed
            # long before its end is hostile and would stop the symbol's recording for good
            horizon = self.clock.now_ms() + FUTURE_SLACK_MS
            if any(self.interval.end(t) > horizon for t in opens):
                log.warning("dropped a %s kline that closes in the future: %s", symbol, opens)
                return
        try:
            merge, fetches = self.book.on_klines(
                symbol, opens, source=message.source, received=message.received
            )
        except BookError as exc:
            log.warning("dropped candles: %s", exc)
            return
        if fetches:
            log.info(
                "gap in %s: fetching %s",
                symbol,
                ", ".join(f"{f.first_open_ms}..{f.last_open_ms}" for f in fetches),
            )
        self._send_fetches(fetches)
        if not merge:
            return
        # merged into the frame by the symbol's writer, in its thread: polars costs about
        # a millisecond per tiny merge, too much for the event loop at a boundary
        self.pending.setdefault(symbol, []).extend(message.candles)
        self._schedule_write(symbol)

    def _forget_fetch(self, fetch: Fetch, update: Callable[[], None]) -> None:
        try:
            update()
        except BookError as exc:
            log.debug("%s", exc)
        self._settle(fetch.symbol)
        if fetch.reason == "gap" and self.metrics is not None:
            self.metrics.gap_refilled(self.interval.count(fetch.first_open_ms, fetch.last_open_ms))
        if fetch.reason in ("history", "listing") and fetch.symbol in self.history_pending:
            if fetch.symbol in self.writing:
                self.history_after_write.add(fetch.symbol)  # ready once it is on disk
            else:
                self.history_pending.discard(fetch.symbol)
                self._history_progress()

    def _send_fetches(self, fetches: list[Fetch]) -> None:
        for fetch in fetches:
            log.debug("fetch %s", fetch)
            self.stats.fetches += 1
            try:
                self.fetches.send_nowait(fetch)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.debug("fetchers gone (shutting down): %s not sent", fetch)

    # --- symbols ------------------------------------------------------------------------------

    def _on_symbols(self, message: SymbolsChanged) -> None:
        if message.exginfo is not None:
            self._spawn(self._write_exginfo, message.exginfo, message.run_time_ms)
        first = not self.book.symbols and not self._adopting
        self.selected = message.symbols
        back = sorted(message.symbols & self.leaving)
        for symbol in back:  # listed again before its file was moved aside
            self.leaving.discard(symbol)
            self.book.resume_expecting(symbol)
        added = sorted(message.symbols - set(self.book.symbols) - self._adopting)
        removed = sorted(
            set(self.book.symbols) - message.symbols - set(self.retiring) - self.leaving
        )
        for symbol in removed:
            self.retiring[symbol] = message.run_time_ms
        if removed:
            log.warning("delisted / no longer selected: %s", removed)
            self.alert("delisting", f"no longer trading, history kept aside: {removed}")
        if first:
            self._spawn(self._complete_stale, message.symbols)
        if added:
            if not first:
                log.warning("new symbols: %s", added)
                self.alert("listing", f"new symbols, fetching their history: {added}")
                self.stats.listed.extend(added)
            self._adopting.update(added)
            self._spawn(self._adopt, added, first)
        if added or removed or back:
            self._listen()

    def _listen(self) -> None:
        try:
            self.listen.send_nowait(SetSymbols(symbols=self.selected | set(self.retiring)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("listeners gone (shutting down)")

    def _retire_due(self, run_time: int) -> None:
        """At a boundary after their delisting, stop streaming delisted symbols; their files
        are moved aside once the fetches and writes under way have landed (:meth:`_settle`)."""
        due = [s for s, left in self.retiring.items() if left < run_time]
        for symbol in due:
            del self.retiring[symbol]
            if symbol in self.selected:
                continue  # listed again meanwhile
            self.stats.delisted.append(symbol)
            if symbol in self.book.symbols:
                self._reports(self.book.stop_expecting(symbol))
            self.leaving.add(symbol)
            self._settle(symbol)
        if due:
            self._listen()

    def _settle(self, symbol: str) -> None:
        """Move a leaving symbol's file aside once nothing of it is in flight or unwritten."""
        if (
            symbol not in self.leaving
            or symbol in self.writing
            or symbol in self.dirty
            or not self.book.is_settled(symbol)
        ):
            return
        self.leaving.discard(symbol)
        if symbol in self.book.symbols:
            self._reports(self.book.remove_symbol(symbol))
        self.frames.pop(symbol, None)
        self.pending.pop(symbol, None)
        self.history_pending.discard(symbol)
        self._spawn(self._retire, symbol)

    async def _adopt(self, symbols: list[str], first: bool) -> None:
        """Read the new symbols' files (unless preloaded), then fetch their missing tails."""
        missing = [s for s in symbols if s not in self.preloaded]

        def read_all() -> dict[str, pl.DataFrame | None]:
            return {s: self.store.read(s) for s in missing}

        loaded = await trio.to_thread.run_sync(read_all, limiter=self.limiter) if missing else {}
        last: dict[str, int | None] = {}
        holes: dict[str, list[tuple[int, int]]] = {}
        now = self.clock.now_ms()
        window_start = self.book.window_start(now)
        for symbol in symbols:
            self._adopting.discard(symbol)
            frame = self.preloaded.pop(symbol, None) if symbol in self.preloaded else loaded[symbol]
            if frame is not None and frame.height:
                self.frames[symbol] = frame
                opens = frame["candle_begin_time"].dt.epoch("ms").to_list()
                last[symbol] = opens[-1]
                holes[symbol] = find_holes(opens, self.interval, window_start)
            else:
                last[symbol] = None
        fetches = self.book.add_symbols(
            last, now_ms=now, reason="history" if first else "listing", holes=holes
        )
        if first:
            self.stats.history_started = trio.current_time()
            self.stats.history_symbols = len(symbols)
            log.info(
                "Init history: %d symbols, %d on disk, fetching the missing tail of %d",
                len(symbols),
                sum(1 for v in last.values() if v is not None),
                len({f.symbol for f in fetches}),
            )
            self._start_progress(len(symbols))
        self.history_pending.update(f.symbol for f in fetches)
        self._send_fetches(fetches)
        self._history_progress()

    async def _complete_stale(self, selected: frozenset[str]) -> None:
        """At start, complete and move aside the files of symbols no longer selected.

        Such a symbol was delisted while the recorder was down (or dropped from keep_symbols):
        its file is first completed with what REST still serves (the candles between the stop
        and the delisting), then kept aside, as a live delisting would be.
        """
        on_disk = await trio.to_thread.run_sync(self.store.symbols_on_disk, limiter=self.limiter)
        stale = sorted(on_disk - selected)
        if not stale:
            self.on_change()
            return
        log.warning("no longer selected, completing then keeping aside: %s", stale)

        def read_all() -> dict[str, pl.DataFrame | None]:
            return {s: self.store.read(s) for s in stale}

        loaded = await trio.to_thread.run_sync(read_all, limiter=self.limiter)
        last: dict[str, int | None] = {}
        holes: dict[str, list[tuple[int, int]]] = {}
        now = self.clock.now_ms()
        window_start = self.book.window_start(now)
        for symbol, frame in loaded.items():
            if symbol in self.book.symbols or symbol in self.selected or symbol in self._adopting:
                continue  # selected again meanwhile: recorded as usual
            self.leaving.add(symbol)
            if frame is None or not frame.height:
                continue  # nothing to complete (unreadable files were moved aside)
            self.frames[symbol] = frame
            opens = frame["candle_begin_time"].dt.epoch("ms").to_list()
            last[symbol] = opens[-1]
            holes[symbol] = find_holes(opens, self.interval, window_start)
        fetches = self.book.add_symbols(
            last, now_ms=now, reason="history", holes=holes, expected=False
        )
        self._send_fetches(fetches)
        for symbol in stale:
            self._settle(symbol)
        self.on_change()

    async def _retire(self, symbol: str) -> None:
        async with self._lock(symbol):
            try:
                moved = await trio.to_thread.run_sync(
                    self.store.move_to_delisted, symbol, limiter=self.limiter
                )
            except StorageError as exc:
                log.error("cannot move %s aside: %s", symbol, exc)
                return
        if moved is not None:
            log.info("%s history kept at %s", symbol, moved)
        self.on_change()

    # --- history progress ---------------------------------------------------------------------

    def _start_progress(self, total: int) -> None:
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.progress = tqdm(total=total, desc="Init history", unit="sym")

    def _history_progress(self) -> None:
        if self.stats.history_started is None or self.stats.history_finished is not None:
            return
        total = self.stats.history_symbols
        done = total - len(self.history_pending)
        if self.progress is not None:
            self.progress.n = done
            self.progress.refresh()
        elif done == total or done % max(1, total // 10) == 0:
            log.info("Init history: %d/%d symbols ready", done, total)
        if not self.history_pending:
            self.stats.history_finished = trio.current_time()
            if self.progress is not None:
                self.progress.close()
                self.progress = None
            log.info(
                "History initialized in %.2f s (real)",
                self.stats.history_finished - self.stats.history_started,
            )
            self.on_change()

    # --- writing ------------------------------------------------------------------------------

    def _lock(self, symbol: str) -> trio.Lock:
        lock = self.locks.get(symbol)
        if lock is None:
            lock = self.locks[symbol] = trio.Lock()
        return lock

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self.nursery is not None
        self.nursery.start_soon(fn, *args)

    def _schedule_write(self, symbol: str) -> None:
        self.dirty.add(symbol)
        if symbol not in self.writing:
            self.writing.add(symbol)
            self.idle = trio.Event()
            self._spawn(self._writer, symbol)

    def _merge_and_write(
        self, symbol: str, old: pl.DataFrame | None, candles: list[Candle]
    ) -> tuple[pl.DataFrame, int, StorageError | None]:
        """In a worker thread: merge the new candles, write the file and its ready file.

        Returns the merged frame even when the write failed (kept for the next attempt).
        """
        frame = old
        if candles:
            frame = self.store.merge(old, candles_to_frame(candles, self.interval))
            if frame.n_chunks() > MAX_CHUNKS:
                # each appended candle adds a chunk: keep frames compact
                frame = frame.rechunk()
        assert frame is not None
        last_open = _last_open_ms(frame)
        try:
            self.store.write(symbol, frame, self.interval.end(last_open))
        except StorageError as exc:
            return frame, last_open, exc
        return frame, last_open, None

    async def _writer(self, symbol: str) -> None:
        retry_s = WRITE_RETRY_S
        try:
            async with self._lock(symbol):
                while symbol in self.dirty:
                    self.dirty.discard(symbol)
                    candles = self.pending.pop(symbol, [])
                    old = self.frames.get(symbol)
                    if old is None and not candles:
                        return
                    frame, last_open, error = await trio.to_thread.run_sync(
                        self._merge_and_write, symbol, old, candles, limiter=self.limiter
                    )
                    if symbol in self.book.symbols:  # not removed meanwhile
                        self.frames[symbol] = frame
                    if error is not None:
                        exc = error
                        # the candles stay in memory and the write is tried again until the
                        # disk takes it (the next candle would otherwise be the only retry)
                        self.stats.write_errors += 1
                        log.error(
                            "write of %s failed (previous file intact), retrying in %.1f s: %s",
                            symbol,
                            retry_s,
                            exc,
                        )
                        self.alert("disk", f"write of {symbol} failed, retrying: {exc}")
                        if self.status is not None:
                            self.status.error(exc)
                        self.dirty.add(symbol)
                        await trio.sleep(retry_s)
                        retry_s = min(retry_s * 2, WRITE_RETRY_MAX_S)
                        continue
                    self.stats.writes += 1
                    self.last_updated = symbol
                    self._reports(self.book.on_written(symbol, last_open))
        finally:
            self.writing.discard(symbol)
            if symbol in self.history_after_write:
                self.history_after_write.discard(symbol)
                self.history_pending.discard(symbol)
                self._history_progress()
            self._settle(symbol)
            if not self.writing:
                self.idle.set()

    def _reports(self, reports: list[PeriodReport]) -> None:
        for report in reports:
            label = run_time_label(report.run_time_ms, self.config.timezone)
            total = len(report.complete) + len(report.missing)
            lag = None
            if report.is_complete and report.last_received is not None:
                lag = max(0.0, trio.current_time() - report.last_received)
            if report.is_complete:
                if lag is not None:
                    self.stats.lags[report.run_time_ms] = lag
                self.stats.completed.append(report.run_time_ms)
                log.info(
                    "%s, all symbols ready (%d/%d), period lag %s",
                    label,
                    len(report.complete),
                    total,
                    "n/a" if lag is None else f"{lag * 1000:.1f} ms",
                )
                log.info("Last updated %s", self.last_updated)
                if self.recovering:
                    self.recovering = False
                    self.alert("recovered", f"recording recovered: period {label} complete")
                if self.metrics is not None and lag is not None:
                    self.metrics.period_complete(lag, report.run_time_ms)
                if self.status is not None:
                    self.status.period_complete(
                        run_time_ms=report.run_time_ms,
                        label=label,
                        lag_seconds=lag or 0.0,
                        ready=report.complete,
                        missing=report.missing,
                    )
            else:
                first_at_deadline = report.run_time_ms not in self.reported_missing
                log.log(
                    logging.WARNING if first_at_deadline else logging.INFO,
                    "%s, %d/%d symbols ready, missing %s",
                    label,
                    len(report.complete),
                    total,
                    list(report.missing[:30]),
                )
                if first_at_deadline:
                    self.reported_missing = {
                        r for r in self.reported_missing if r > report.run_time_ms - 10**8
                    } | {report.run_time_ms}
                    self.alert(
                        "symbols_missing",
                        f"{label}: {len(report.missing)} symbols missing at the deadline: "
                        f"{list(report.missing[:30])}",
                    )
            if self.metrics is not None:
                self.metrics.symbols(len(report.complete), len(report.missing))
            # the newest report of a period wins; one writer per period at a time
            scheduled = report.run_time_ms in self.manifests
            self.manifests[report.run_time_ms] = (report, lag)
            if not scheduled:
                self._spawn(self._write_manifest, report.run_time_ms)
            self.on_change()

    async def _write_manifest(self, run_time: int) -> None:
        async with self.manifest_lock:
            while (pending := self.manifests.pop(run_time, None)) is not None:
                report, lag = pending
                try:
                    write = partial(
                        self.store.write_manifest,
                        report.run_time_ms,
                        complete=report.complete,
                        missing=report.missing,
                        final=report.is_complete,
                        lag_ms=None if lag is None else round(lag * 1000, 3),
                    )
                    await trio.to_thread.run_sync(write, limiter=self.limiter)
                except StorageError as exc:
                    log.error("manifest write failed: %s", exc)
        self._save_status()

    async def _write_exginfo(self, frame: pl.DataFrame, run_time: int) -> None:
        async with self.exginfo_lock:
            try:
                await trio.to_thread.run_sync(
                    self.exginfo_store.write_exginfo, frame, run_time, limiter=self.limiter
                )
            except StorageError as exc:
                log.error("exginfo write failed: %s", exc)

    async def _write_funding(self, rates: Any, run_time: int) -> None:
        keep_after = run_time - int(self.interval.seconds * 1000) * self.config.num_candles
        async with self.exginfo_lock:
            try:
                await trio.to_thread.run_sync(
                    self.exginfo_store.append_funding,
                    rates,
                    run_time,
                    keep_after,
                    limiter=self.limiter,
                )
            except StorageError as exc:
                log.error("funding write failed: %s", exc)

    def _save_status(self) -> None:
        if self.status is not None:
            self._spawn(self.status.save)


def _last_open_ms(frame: pl.DataFrame) -> int:
    return int(frame["candle_begin_time"].dt.epoch("ms")[-1])


async def run_dispatcher(
    *,
    inbox: trio.MemoryReceiveChannel[Inbox],
    dispatcher: Dispatcher,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Own the disk: process the inbox until every producer has closed its end.

    Channels:
        receives on ``inbox`` (closes it); owns and closes ``dispatcher.fetches`` and
        ``dispatcher.listen``, which ends the fetchers and listeners in turn.

    Cancellation:
        a write in progress always finishes (``to_thread`` is not cancellable); when the inbox
        ends (producers stopped), dirty symbols are flushed in a bounded, shielded scope.
    """
    with inbox, dispatcher.fetches, dispatcher.listen:
        async with trio.open_nursery() as nursery:
            dispatcher.nursery = nursery
            task_status.started()
            async for message in inbox:
                dispatcher.handle(message)
            with trio.move_on_after(FLUSH_GRACE_S, shield=True):
                await dispatcher.idle.wait()
            nursery.cancel_scope.cancel()
