"""Which symbols are recorded: joining, leaving, and their files moved aside.

Held by the :class:`~.dispatcher.Dispatcher`, which hands it the book, the writer and the
callbacks it needs. New symbols'
files are read and their missing tails and holes fetched. A delisted symbol is still streamed
until the boundary after its delisting (its final closing push arrives after exchangeInfo
already says so), then no period waits for it, and its file is moved into ``_delisted/`` once
every fetch and write of it has landed: a history or refill in flight is never abandoned. At
start, the files of symbols delisted while the recorder was down are completed with what REST
still serves, then moved aside the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from bmac_trio.binance.candles import epoch_ms
from bmac_trio.errors import StorageError
from bmac_trio.recorder.book import find_holes
from bmac_trio.recorder.events import SetSymbols

if TYPE_CHECKING:
    import polars as pl

    from bmac_trio.binance.intervals import Interval
    from bmac_trio.clock import Clock
    from bmac_trio.recorder.book import Book, PeriodReport
    from bmac_trio.recorder.events import Fetch, FetchReason, SymbolsChanged
    from bmac_trio.recorder.history_progress import HistoryProgress
    from bmac_trio.recorder.stats import DispatcherStats
    from bmac_trio.recorder.writer import SymbolWriter
    from bmac_trio.store.candles import CandleStore

__all__ = ["SymbolRoster"]

log = logging.getLogger("bmac_trio.dispatcher")


class SymbolRoster:
    """The symbols' life: which are selected, joining, retiring and leaving.

    Args:
        book / writer / history / store / limiter: the dispatcher's collaborators it drives.
        listen: where stream sets go (the dispatcher owns and closes it).
        preloaded: frames read at start, by symbol (consumed as symbols join).
        spawn / reports / send_fetches / write_exginfo: the dispatcher's actions.
        on_retired: told of each symbol whose file was moved into ``_delisted/`` (the bus).
    """

    def __init__(
        self,
        *,
        book: Book,
        clock: Clock,
        store: CandleStore,
        writer: SymbolWriter,
        history: HistoryProgress,
        limiter: trio.CapacityLimiter,
        listen: trio.MemorySendChannel[SetSymbols],
        preloaded: dict[str, pl.DataFrame | None],
        stats: DispatcherStats,
        alert: Callable[[str, str], None],
        on_change: Callable[[], None],
        spawn: Callable[..., None],
        reports: Callable[[list[PeriodReport]], None],
        send_fetches: Callable[[list[Fetch]], None],
        write_exginfo: Callable[[pl.DataFrame, int], Awaitable[None]],
        on_retired: Callable[[str], None] | None = None,
    ) -> None:
        self.book = book
        self.clock = clock
        self.interval: Interval = book.interval
        self.store = store
        self.writer = writer
        self.history = history
        self.limiter = limiter
        self.listen = listen
        self.preloaded = preloaded
        self.stats = stats
        self.alert = alert
        self.on_change = on_change
        self._spawn = spawn
        self._reports = reports
        self._send_fetches = send_fetches
        self._write_exginfo = write_exginfo
        self._on_retired = on_retired
        #: The newest exchangeInfo selection.
        self.selected: frozenset[str] = frozenset()
        #: Delisted symbols still streamed until the next boundary, with the run time they left.
        self.retiring: dict[str, int] = {}
        #: Symbols that left: moved aside as soon as no fetch or write of theirs is under way.
        self.leaving: set[str] = set()
        #: Symbols whose files are being read before they join the book.
        self._adopting: set[str] = set()

    def on_symbols(self, message: SymbolsChanged) -> None:
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

    def retire_due(self, run_time: int) -> None:
        """At a boundary after their delisting, stop streaming delisted symbols; their files
        are moved aside once the fetches and writes under way have landed (:meth:`settle`)."""
        due = [s for s, left in self.retiring.items() if left < run_time]
        for symbol in due:
            del self.retiring[symbol]
            if symbol in self.selected:
                continue  # listed again meanwhile
            self.stats.delisted.append(symbol)
            if symbol in self.book.symbols:
                self._reports(self.book.stop_expecting(symbol))
            self.leaving.add(symbol)
            self.settle(symbol)
        if due:
            self._listen()

    def settle(self, symbol: str) -> None:
        """Move a leaving symbol's file aside once nothing of it is in flight or unwritten."""
        if (
            symbol not in self.leaving
            or self.writer.busy(symbol)
            or not self.book.is_settled(symbol)
        ):
            return
        self.leaving.discard(symbol)
        if symbol in self.book.symbols:
            self._reports(self.book.remove_symbol(symbol))
        self.writer.forget(symbol)
        self.history.done(symbol)
        self._spawn(self._retire, symbol)

    async def _read(self, symbols: list[str]) -> dict[str, pl.DataFrame | None]:
        def read_all() -> dict[str, pl.DataFrame | None]:
            return {s: self.store.read(s) for s in symbols}

        return await trio.to_thread.run_sync(read_all, limiter=self.limiter) if symbols else {}

    def _join(
        self, frames: dict[str, pl.DataFrame | None], reason: FetchReason, *, expected: bool = True
    ) -> list[Fetch]:
        """Hand symbols to the book with what their files hold; returns the fetches of their
        missing tails and of the holes in their files."""
        last: dict[str, int | None] = {}
        holes: dict[str, list[tuple[int, int]]] = {}
        now = self.clock.now_ms()
        window_start = self.book.window_start(now)
        for symbol, frame in frames.items():
            last[symbol] = None
            if frame is not None and frame.height:
                self.writer.frames[symbol] = frame
                opens = epoch_ms(frame["candle_begin_time"]).to_list()
                last[symbol] = opens[-1]
                holes[symbol] = find_holes(opens, self.interval, window_start)
        return self.book.add_symbols(
            last, now_ms=now, reason=reason, holes=holes, expected=expected
        )

    async def _adopt(self, symbols: list[str], first: bool) -> None:
        """Read the new symbols' files (unless preloaded), then fetch their missing tails."""
        loaded = await self._read([s for s in symbols if s not in self.preloaded])
        frames = {s: self.preloaded.pop(s) if s in self.preloaded else loaded[s] for s in symbols}
        self._adopting.difference_update(symbols)
        fetches = self._join(frames, "history" if first else "listing")
        if first:
            self.history.start(len(symbols))
            log.info(
                "Init history: %d symbols, %d on disk, fetching the missing tail of %d",
                len(symbols),
                sum(1 for f in frames.values() if f is not None and f.height),
                len({f.symbol for f in fetches}),
            )
        self.history.wait_for(f.symbol for f in fetches)
        self._send_fetches(fetches)
        self.history.update()

    async def _complete_stale(self, selected: frozenset[str]) -> None:
        """At start, complete and move aside the files of symbols no longer selected.

        Such a symbol was delisted while the recorder was down (or dropped from keep_symbols):
        its file is first completed with what REST still serves (the candles between the stop
        and the delisting), then kept aside, as a live delisting would be.
        """
        on_disk = await trio.to_thread.run_sync(self.store.symbols_on_disk, limiter=self.limiter)
        stale = sorted(on_disk - selected)
        if stale:
            log.warning("no longer selected, completing then keeping aside: %s", stale)
        loaded = await self._read(stale)
        recorded = set(self.book.symbols) | self.selected | self._adopting
        leaving = {s: f for s, f in loaded.items() if s not in recorded}  # not selected again
        self.leaving.update(leaving)
        # unreadable files were moved aside: nothing to complete
        self._send_fetches(
            self._join(
                {s: f for s, f in leaving.items() if f is not None and f.height},
                "history",
                expected=False,
            )
        )
        for symbol in leaving:
            self.settle(symbol)
        self.on_change()

    async def _retire(self, symbol: str) -> None:
        async with self.writer.lock(symbol):
            try:
                moved = await trio.to_thread.run_sync(
                    self.store.move_to_delisted, symbol, limiter=self.limiter
                )
            except StorageError as exc:
                log.error("cannot move %s aside: %s", symbol, exc)
                return
        if moved is not None:
            log.info("%s history kept at %s", symbol, moved)
            if self._on_retired is not None:
                self._on_retired(symbol)
        self.on_change()
