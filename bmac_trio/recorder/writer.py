"""Symbol files written as soon as their candles arrive, off the event loop.

Each symbol is written as soon as its closing candle arrives rather than when the whole period
is in: that is what keeps the period lag low (BMAC read-merged-wrote each parquet synchronously
on its event loop, about 50 symbols a second, bug 3). Writes go through
``trio.to_thread.run_sync`` with a small :class:`trio.CapacityLimiter`: one write at a time per
symbol, several symbols in parallel. Candles that arrive while a symbol's write runs are merged
and written once more afterwards (coalesced). A failed write (disk full, read-only) keeps the
candles in memory and is tried again, backing off, until the disk takes it, or until
:meth:`SymbolWriter.stop`: then each failing symbol gets one last attempt and is given up, so a
stop never waits for a disk that keeps refusing. A data folder deleted under the recorder is
created again by the first write that meets its absence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import trio

from bmac_trio.binance.candles import epoch_ms
from bmac_trio.binance.protocol import Candle, candles_to_frame
from bmac_trio.errors import StorageError
from bmac_trio.store.atomic import WriteStages

if TYPE_CHECKING:
    import polars as pl

    from bmac_trio.binance.intervals import Interval
    from bmac_trio.store.candles import CandleStore

__all__ = ["SymbolWriter"]

log = logging.getLogger("bmac_trio.dispatcher")

#: Real seconds before a failed write (disk full, read-only) is tried again, doubling to the max.
WRITE_RETRY_S = 0.5
WRITE_RETRY_MAX_S = 30.0


class SymbolWriter:
    """Every symbol's frame in memory, and the writes that put it on disk.

    Args:
        store: the candle files.
        interval: the kline interval.
        limiter: the worker threads shared by every disk access of the dispatcher.
        spawn: starts a task in the dispatcher's nursery.
        on_written: ``(symbol, newest open ms)`` once a write has landed.
        on_failed: ``(symbol, error, retry seconds)`` when a write failed.
        on_finished: ``(symbol)`` when a symbol has nothing left to write.
        on_recreated: ``()`` when a write found the data folder deleted and created it again
            (every other file is gone too).
    """

    def __init__(
        self,
        *,
        store: CandleStore,
        interval: Interval,
        limiter: trio.CapacityLimiter,
        spawn: Callable[..., None],
        on_written: Callable[[str, int], None],
        on_failed: Callable[[str, StorageError, float], None],
        on_finished: Callable[[str], None],
        on_recreated: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.limiter = limiter
        self._spawn = spawn
        self._on_written = on_written
        self._on_failed = on_failed
        self._on_finished = on_finished
        self._on_recreated = on_recreated
        self.frames: dict[str, pl.DataFrame] = {}
        #: Candles received but not merged yet (the symbol's writer merges them).
        self.pending: dict[str, list[Candle]] = {}
        self.locks: dict[str, trio.Lock] = {}
        self.dirty: set[str] = set()
        self.writing: set[str] = set()
        #: Set whenever no write is running (the final flush waits for it).
        self.idle = trio.Event()
        self.idle.set()
        #: The newest symbol written ("Last updated SYMBOL").
        self.last_updated: str | None = None
        #: When each symbol's pending candles were first handed over: (perf_counter, seconds
        #: they had waited in the inbox since they were received).
        self._handed: dict[str, tuple[float, float]] = {}
        #: Seconds per stage of each symbol's latest landed write (the benchmark's breakdown):
        #: inbox, queued (waiting for a worker thread), merge, encode, fsync, rename,
        #: ready, loop (back on the event loop).
        self.stages: dict[str, dict[str, float]] = {}
        #: Symbols whose newest write attempt failed (their newest candles are not on disk).
        self.failed: set[str] = set()
        #: Set by :meth:`stop`: no more retries after the next attempt.
        self.stopping = False
        #: Set (then replaced) to cut the backoff of the failed writes short.
        self._wake = trio.Event()

    def lock(self, symbol: str) -> trio.Lock:
        """The lock held while ``symbol``'s file is written or moved."""
        lock = self.locks.get(symbol)
        if lock is None:
            lock = self.locks[symbol] = trio.Lock()
        return lock

    def busy(self, symbol: str) -> bool:
        """A write of ``symbol`` is running or due."""
        return symbol in self.writing or symbol in self.dirty

    def add(self, symbol: str, candles: Iterable[Candle], *, received: float | None = None) -> None:
        """Merge ``candles`` into ``symbol``'s file soon (merged in the writer's thread: polars
        costs about a millisecond per tiny merge, too much for the event loop at a boundary).

        ``received`` is when they arrived (trio time), for the stage breakdown.
        """
        if symbol not in self._handed:
            inbox = 0.0 if received is None else max(0.0, trio.current_time() - received)
            self._handed[symbol] = (time.perf_counter(), inbox)
        self.pending.setdefault(symbol, []).extend(candles)
        self.dirty.add(symbol)
        if symbol not in self.writing:
            self.writing.add(symbol)
            self.idle = trio.Event()
            self._spawn(self._write_while_dirty, symbol)

    def stop(self) -> None:
        """Shutting down: failing writes get one last attempt now, then are given up."""
        self.stopping = True
        self.retry_now()

    def retry_now(self) -> None:
        """The disk may take writes again (a folder recreated): retry failed writes now."""
        self._wake.set()
        self._wake = trio.Event()

    def forget(self, symbol: str) -> None:
        """Drop ``symbol``'s frame (it is no longer recorded and nothing of it is due)."""
        self.frames.pop(symbol, None)
        self.pending.pop(symbol, None)
        self.stages.pop(symbol, None)
        self._handed.pop(symbol, None)

    def _merge_and_write(
        self, symbol: str, old: pl.DataFrame | None, candles: list[Candle], stages: WriteStages
    ) -> tuple[pl.DataFrame, int, StorageError | None, bool]:
        """In a worker thread: merge the new candles, write the file and its ready file.

        Returns the merged frame even when the write failed (kept for the next attempt), and
        whether the data folder had vanished and was created again (then written once more).
        """
        stages.mark("queued")
        frame = old
        if candles:
            frame = self.store.merge(old, candles_to_frame(candles, self.interval))
            if frame.n_chunks() > 1:
                # each appended candle adds a chunk; converting a 16-chunk frame to Arrow for
                # the parquet writer took 1.6 ms of CPU (GIL held), a contiguous one 0.09 ms,
                # and rechunking 0.05 ms: every period's write starts contiguous
                frame = frame.rechunk()
        assert frame is not None
        last_open = int(epoch_ms(frame["candle_begin_time"])[-1])
        stages.mark("merge")
        recreated = False
        try:
            try:
                self.store.write(symbol, frame, self.interval.end(last_open), stages=stages)
            except StorageError as exc:
                if not isinstance(exc.__cause__, FileNotFoundError):
                    raise
                # the folder itself was deleted under us (not a full disk): make it again
                recreated = self.store.recreate_directory()
                self.store.write(symbol, frame, self.interval.end(last_open), stages=stages)
        except StorageError as exc:
            return frame, last_open, exc, recreated
        return frame, last_open, None, recreated

    async def _write_while_dirty(self, symbol: str) -> None:
        retry_s = WRITE_RETRY_S
        try:
            async with self.lock(symbol):
                while symbol in self.dirty:
                    self.dirty.discard(symbol)
                    candles = self.pending.pop(symbol, [])
                    handed, inbox = self._handed.pop(symbol, (time.perf_counter(), 0.0))
                    old = self.frames.get(symbol)
                    if old is None and not candles:
                        return
                    stages = WriteStages()
                    stages.marks[0] = ("handed", handed)
                    frame, last_open, error, recreated = await trio.to_thread.run_sync(
                        self._merge_and_write, symbol, old, candles, stages, limiter=self.limiter
                    )
                    stages.mark("loop")
                    self.frames[symbol] = frame
                    if recreated:
                        self._on_recreated()
                    if error is not None:
                        # the candles stay in memory and the write is tried again until the
                        # disk takes it (the next candle would otherwise be the only retry)
                        self.failed.add(symbol)
                        self._on_failed(symbol, error, retry_s)
                        self.dirty.add(symbol)
                        if self.stopping:
                            return  # its last attempt: the stop does not wait for the disk
                        with trio.move_on_after(retry_s):
                            await self._wake.wait()
                        retry_s = min(retry_s * 2, WRITE_RETRY_MAX_S)
                        continue
                    self.failed.discard(symbol)
                    self.last_updated = symbol
                    self.stages[symbol] = {"inbox": inbox, **stages.durations()}
                    self._on_written(symbol, last_open)
        finally:
            self.writing.discard(symbol)
            self._on_finished(symbol)
            if not self.writing:
                self.idle.set()

    def __repr__(self) -> str:
        return f"<SymbolWriter {len(self.frames)} frames, writing {sorted(self.writing)}>"
