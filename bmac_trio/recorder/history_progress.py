"""The start-up history's progress: a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from bmac_trio.recorder.stats import DispatcherStats

__all__ = ["HistoryProgress"]

log = logging.getLogger("bmac_trio.dispatcher")


class HistoryProgress:
    """Which symbols still wait for their start-up history (on disk, not just fetched).

    Args:
        stats: ``history_started`` / ``history_finished`` / ``history_symbols`` are set there.
        on_change: called when the history is complete.
    """

    def __init__(self, stats: DispatcherStats, on_change: Callable[[], None]) -> None:
        self.stats = stats
        self.on_change = on_change
        #: Symbols whose history is not on disk yet.
        self.pending: set[str] = set()
        #: History fetched, its last write still running: ready when that write lands.
        self.after_write: set[str] = set()
        self._bar: Any = None

    def start(self, total: int) -> None:
        """The history of ``total`` symbols starts now."""
        self.stats.history_started = trio.current_time()
        self.stats.history_symbols = total
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc="Init history", unit="sym")

    def wait_for(self, symbols: Iterable[str]) -> None:
        """These symbols' history is being fetched."""
        self.pending.update(symbols)

    def done(self, symbol: str) -> None:
        """``symbol``'s history is on disk (or will never be: it left)."""
        self.after_write.discard(symbol)
        if symbol in self.pending:
            self.pending.discard(symbol)
            self.update()

    def update(self) -> None:
        """Show progress; log and notify when the history is complete."""
        stats = self.stats
        if stats.history_started is None or stats.history_finished is not None:
            return
        total = stats.history_symbols
        done = total - len(self.pending)
        if self._bar is not None:
            self._bar.n = done
            self._bar.refresh()
        elif done == total or done % max(1, total // 10) == 0:
            log.info("Init history: %d/%d symbols ready", done, total)
        if not self.pending:
            stats.history_finished = trio.current_time()
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            log.info(
                "History initialized in %.2f s (real)",
                stats.history_finished - stats.history_started,
            )
            self.on_change()
