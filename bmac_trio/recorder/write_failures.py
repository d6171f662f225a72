"""Failed writes, told once: the first failure of a streak, then one summary line per period.

A full or read-only disk fails every symbol's write, and the writer retries each with backoff:
logging each attempt flooded the log (1,190 ERROR lines in 40 s). Here the first failure of a
streak is logged (file and cause) and alerted, then each period boundary logs one line with
how many writes failed since the last line and the first error among them, and the end of the
streak (every failing symbol written at last) is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bmac_trio.errors import StorageError
    from bmac_trio.ops.status import StatusTracker

__all__ = ["WriteFailures"]

log = logging.getLogger("bmac_trio.dispatcher")


class WriteFailures:
    """The state of a streak of failed writes (see module doc).

    Args:
        alert: ``alerter.notify``: one ``disk`` alert per streak.
        status: told of every failure (its ``last error``).
    """

    def __init__(
        self, alert: Callable[[str, str], None], status: StatusTracker | None = None
    ) -> None:
        self.alert = alert
        self.status = status
        #: Symbols whose newest write attempt failed.
        self.failing: set[str] = set()
        #: Failures since the last summary line, and the first of them.
        self.count = 0
        self.first: str | None = None
        #: Failures in the whole streak.
        self.streak = 0

    def failed(self, symbol: str, error: StorageError) -> None:
        """A write of ``symbol`` failed (it is retried by the writer)."""
        if self.status is not None:
            self.status.error(error)
        self.failing.add(symbol)
        self.count += 1
        self.streak += 1
        if self.first is None:
            self.first = f"{symbol}: {error}"
        if self.streak == 1:
            log.error(
                "write of %s failed, candles kept in memory and retried; further failures "
                "are summed up once per period: %s",
                symbol,
                error,
            )
            self.alert("disk", f"write of {symbol} failed, retrying: {error}")

    def written(self, symbol: str) -> None:
        """A write of ``symbol`` landed."""
        if symbol not in self.failing:
            return
        self.failing.discard(symbol)
        if not self.failing:
            log.warning("writes succeed again, after %d failed attempts", self.streak)
            self.streak = 0
            self.count = 0
            self.first = None

    def gave_up(self, symbol: str) -> None:
        """``symbol`` is no longer written (stopping, or it left)."""
        self.failing.discard(symbol)

    def summary(self, label: str) -> None:
        """At a period boundary: one line for the failures since the previous one."""
        if not self.count:
            return
        log.error(
            "%s: %d writes failed since the last period, %d symbols waiting for the disk; "
            "first: %s",
            label,
            self.count,
            len(self.failing),
            self.first,
        )
        self.count = 0
        self.first = None
