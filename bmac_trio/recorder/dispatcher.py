"""The dispatcher: the single owner of the disk.

It feeds each inbox message to the :class:`~.book.Book` and carries out what the book decides:
fetches to the REST workers, stream sets to the listeners, candles to the
:class:`~.writer.SymbolWriter` (each symbol written as soon as its candle arrives, off the
event loop), period reports to the :class:`~.period_reporter.PeriodReporter` (logs, alerts,
manifests, status), the symbols' life (joining, leaving, moved aside) to the
:class:`~.roster.SymbolRoster`. It holds those collaborators; they share only
:class:`~.stats.DispatcherStats` and the callbacks it hands them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import trio

from bmac_trio.errors import StorageError
from bmac_trio.recorder.book import Book, BookError
from bmac_trio.recorder.events import (
    Fetch,
    FetchDone,
    FetchFailed,
    FundingRates,
    Inbox,
    Klines,
    PeriodDeadline,
    PeriodStart,
    SetSymbols,
    StreamsRefused,
    SymbolsChanged,
)
from bmac_trio.recorder.history_progress import HistoryProgress
from bmac_trio.recorder.period_reporter import PeriodReporter, symbol_list
from bmac_trio.recorder.roster import SymbolRoster
from bmac_trio.recorder.stats import DispatcherStats
from bmac_trio.recorder.write_failures import WriteFailures
from bmac_trio.recorder.writer import SymbolWriter
from bmac_trio.store.layout import run_time_label

if TYPE_CHECKING:
    import polars as pl

    from bmac_trio.binance.candles import Candle
    from bmac_trio.bus.hooks import BusHooks
    from bmac_trio.clock import Clock
    from bmac_trio.ops.metrics import Metrics
    from bmac_trio.ops.status import StatusTracker
    from bmac_trio.recorder.book import PeriodReport
    from bmac_trio.store.candles import CandleStore, ExginfoStore
    from bmac_trio.store.config import Config

__all__ = ["Dispatcher", "DispatcherStats", "run_dispatcher"]

log = logging.getLogger("bmac_trio.dispatcher")

#: Real seconds the final flush may take on shutdown.
FLUSH_GRACE_S = 10.0
#: Exchange ms a closed stream kline may end after our clock (skew); later ones are forged.
FUTURE_SLACK_MS = 60_000


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
        bus: the live bus (every publisher): accepted candles, period reports, symbol changes,
            exchangeInfo and retired symbols are published (see :mod:`bmac_trio.bus.hooks`).
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
        bus: BusHooks | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
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
        self.limiter = trio.CapacityLimiter(write_threads)
        self.writer = SymbolWriter(
            store=store,
            interval=config.interval,
            limiter=self.limiter,
            spawn=self._spawn,
            on_written=self._on_written,
            on_failed=self._on_write_failed,
            on_finished=self._on_write_finished,
            on_recreated=self._on_folder_recreated,
        )
        self.reporter = PeriodReporter(
            config=config,
            store=store,
            stats=self.stats,
            limiter=self.limiter,
            spawn=self._spawn,
            alert=lambda kind, text: self.alert(kind, text),
            metrics=metrics,
            status=status,
            on_change=lambda: self.on_change(),
            last_updated=lambda: self.writer.last_updated,
            recovering=recovering,
            bus=bus,
        )
        self.history = HistoryProgress(self.stats, lambda: self.on_change())
        self.write_failures = WriteFailures(lambda kind, text: self.alert(kind, text), status)
        #: Symbols whose stream the exchange refuses: fetched over REST at each boundary.
        self.rest_only: set[str] = set()
        self.exginfo_lock = trio.Lock()
        self.roster = SymbolRoster(
            book=self.book,
            clock=clock,
            store=store,
            writer=self.writer,
            history=self.history,
            limiter=self.limiter,
            listen=listen,
            preloaded=self.preloaded,
            stats=self.stats,
            alert=lambda kind, text: self.alert(kind, text),
            on_change=lambda: self.on_change(),
            spawn=self._spawn,
            reports=self._reports,
            send_fetches=self._send_fetches,
            write_exginfo=self._write_exginfo,
            on_retired=getattr(bus, "retired", None),  # optional hooks (NATS)
        )
        self.nursery: trio.Nursery | None = None
        if bus is not None:
            bus.frame_source = self._frames_for_bus  # type: ignore[attr-defined]

    @property
    def writing(self) -> set[str]:
        """Symbols whose file is being written."""
        return self.writer.writing

    @property
    def idle(self) -> trio.Event:
        """Set whenever no write is running."""
        return self.writer.idle

    @property
    def frames(self) -> dict[str, pl.DataFrame]:
        """Every recorded symbol's candles, as on disk (or about to be)."""
        return self.writer.frames

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
                self.roster.retire_due(run_time)
                log.info(
                    "Bmac %s %s update Runtime=%s",
                    self.interval,
                    self.config.trade_type_name,
                    run_time_label(run_time, self.config.timezone),
                )
                self.write_failures.summary(run_time_label(run_time, self.config.timezone))
                self._reports(self.book.on_period_start(run_time))
                period = self.book.periods.get(run_time)
                started = getattr(self.bus, "period_started", None)  # optional hook
                if started is not None and period is not None:
                    started(run_time, period.expected)
                self._send_fetches(self.book.fetch_now(run_time, self.rest_only))
                self.reporter.save_status()
            case PeriodDeadline(run_time_ms=run_time):
                fetches, report = self.book.on_deadline(run_time)
                label = run_time_label(run_time, self.config.timezone)
                period = self.book.periods.get(run_time)
                if period is not None and period.probes:
                    log.warning(
                        "No symbol ready for runtime %s (maintenance? streams down?): "
                        "asking REST about %s first",
                        label,
                        symbol_list([f.symbol for f in fetches]),
                    )
                elif fetches:
                    log.warning(
                        "Symbols not ready for runtime %s: %s, fetching over REST",
                        label,
                        symbol_list([f.symbol for f in fetches]),
                    )
                    if self.metrics is not None:
                        self.metrics.late_symbols(len(fetches))
                self._send_fetches(fetches)
                if report is not None:
                    self._reports([report])
            case SymbolsChanged():
                exginfo = getattr(self.bus, "exginfo", None)
                if exginfo is not None and message.exginfo is not None:
                    exginfo(message.run_time_ms, message.exginfo)
                self.roster.on_symbols(message)
                if self.bus is not None:
                    self.bus.symbols(self.roster.selected)
            case FundingRates(run_time_ms=run_time, frame=rates):
                self._spawn(self._write_funding, rates, run_time)
            case StreamsRefused(symbols=symbols):
                self._on_streams_refused(symbols)
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
        if self.bus is not None:  # before the write: the bus is the fast path
            self.bus.candles(
                symbol, message.candles, source=message.source, received=message.received
            )
            arrived = getattr(self.bus, "arrived", None)  # optional hook (announce early)
            for candle in message.candles if arrived is not None else ():
                run_time = self.interval.add(candle.open_ms, 1)
                period = self.book.periods.get(run_time)
                if period is not None:
                    arrived(run_time, symbol, period.expected)
        self.writer.add(symbol, message.candles, received=message.received)

    def _frames_for_bus(
        self, symbols: Iterable[str] | None
    ) -> dict[str, tuple[pl.DataFrame | None, list[Candle]]]:
        """Each symbol's frame and its candles not merged yet (for the bus's request socket)."""
        names = self.book.symbols if symbols is None else symbols
        return {
            s: (self.writer.frames.get(s), list(self.writer.pending.get(s, ())))
            for s in names
            if s in self.book.symbols
        }

    def _on_streams_refused(self, symbols: frozenset[str]) -> None:
        new = sorted(symbols - self.rest_only)
        if not new:
            return
        self.rest_only.update(new)
        self.alert(
            "stream_refused",
            f"the exchange refuses to stream {new}: their candles are fetched over REST at "
            "each period boundary, every other symbol stays live",
        )
        if self.status is not None:
            self.status.update(symbols_rest_only=tuple(sorted(self.rest_only)))

    def _forget_fetch(self, fetch: Fetch, update: Callable[[], list[Fetch] | None]) -> None:
        try:
            released = update()
        except BookError as exc:
            log.debug("%s", exc)
            released = None
        if released:
            log.warning(
                "%s has the candle on REST: fetching the other %d late symbols",
                fetch.symbol,
                len(released),
            )
            self._send_fetches(released)
        self.roster.settle(fetch.symbol)
        if fetch.reason == "gap" and self.metrics is not None:
            self.metrics.gap_refilled(self.interval.count(fetch.first_open_ms, fetch.last_open_ms))
        if fetch.reason in ("history", "listing") and fetch.symbol in self.history.pending:
            if self.writer.busy(fetch.symbol):
                self.history.after_write.add(fetch.symbol)  # ready once it is on disk
            else:
                self.history.done(fetch.symbol)

    def _send_fetches(self, fetches: list[Fetch]) -> None:
        for fetch in fetches:
            log.debug("fetch %s", fetch)
            self.stats.fetches += 1
            try:
                self.fetches.send_nowait(fetch)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.debug("fetchers gone (shutting down): %s not sent", fetch)

    # --- writing ------------------------------------------------------------------------------

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self.nursery is not None
        self.nursery.start_soon(fn, *args)

    def _reports(self, reports: list[PeriodReport]) -> None:
        self.reporter.report(reports)

    def _on_written(self, symbol: str, last_open_ms: int) -> None:
        self.stats.writes += 1
        self.write_failures.written(symbol)
        reports = self.book.on_written(symbol, last_open_ms)
        for report in reports:
            if report.is_complete and symbol in self.writer.stages:
                self.stats.stages[report.run_time_ms] = dict(self.writer.stages[symbol])
        if len(self.stats.stages) > 64:
            del self.stats.stages[min(self.stats.stages)]
        self._reports(reports)

    def _on_write_failed(self, symbol: str, error: StorageError, retry_s: float) -> None:
        self.stats.write_errors += 1
        self.write_failures.failed(symbol, error)

    def _on_write_finished(self, symbol: str) -> None:
        # ready only once its file is on disk: not when its writes failed until a stop
        if (
            symbol in self.history.after_write
            and symbol not in self.writer.failed
            and symbol not in self.writer.dirty
        ):
            self.history.done(symbol)
        self.roster.settle(symbol)

    def _on_folder_recreated(self) -> None:
        """The data folder was deleted and made again: rewrite every symbol's file from memory
        (the frames hold each file's whole window: nothing needs fetching again)."""
        lost = sorted(self.frames)
        log.error(
            "data folder %s was deleted under the recorder: recreated, rewriting %d files",
            self.store.directory,
            len(lost),
        )
        self.alert(
            "disk",
            f"data folder {self.store.directory} was deleted: recreated, "
            f"rewriting {len(lost)} symbol files",
        )
        for name in lost:
            self.writer.add(name, ())
        self.writer.retry_now()
        self._spawn(self._write_meta)

    async def _write_meta(self) -> None:
        try:
            await trio.to_thread.run_sync(
                self.store.write_meta, self.config.to_meta(), limiter=self.limiter
            )
        except StorageError as exc:
            log.error("metadata write failed: %s", exc)

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
            dispatcher.writer.stop()
            with trio.move_on_after(FLUSH_GRACE_S, shield=True):
                await dispatcher.writer.idle.wait()
                try:
                    await trio.to_thread.run_sync(dispatcher.store.sync_directory)
                except StorageError as exc:
                    log.error("%s", exc)
            if dispatcher.writer.failed:
                unwritten = sorted(dispatcher.writer.failed)
                log.error(
                    "stopped with the newest candles of %d symbols not on disk: %s",
                    len(unwritten),
                    symbol_list(unwritten),
                )
            nursery.cancel_scope.cancel()
