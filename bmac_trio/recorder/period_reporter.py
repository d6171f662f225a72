"""What the recorder says about each period: logs, alerts, metrics, status and the manifest.

Logs are in BMAC's words ("n/m symbols ready", "all symbols ready", "Last updated SYMBOL") plus
each period's lag: from the arrival of the period's last closing kline to the period complete
on disk. The manifest is written when a period completes, or at its deadline with the missing
symbols (rewritten when late symbols complete it); the newest report of a period wins.

On recovery every late symbol that lands re-reports its period: the "n/m symbols ready" progress
is logged at most once a second (BMAC's cadence), and long symbol lists end with a visible
``… (+N more)`` instead of being cut silently.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import trio

from bmac_trio.errors import StorageError
from bmac_trio.store.layout import run_time_label

if TYPE_CHECKING:
    from bmac_trio.bus.hooks import BusHooks
    from bmac_trio.ops.metrics import Metrics
    from bmac_trio.ops.status import StatusTracker
    from bmac_trio.recorder.book import PeriodReport
    from bmac_trio.recorder.stats import DispatcherStats
    from bmac_trio.store.candles import CandleStore
    from bmac_trio.store.config import Config

__all__ = ["PeriodReporter", "symbol_list"]

log = logging.getLogger("bmac_trio.dispatcher")

#: Exchange ms for which a period reported missing at its deadline is remembered.
_REMEMBER_MISSING_MS = 10**8
#: Real seconds between two progress lines of a period still incomplete.
PROGRESS_EVERY_S = 1.0
#: Symbols named in a log line or alert before the list is cut.
LIST_LIMIT = 30


def symbol_list(symbols: Sequence[str], limit: int = LIST_LIMIT) -> str:
    """``['A', 'B', …]`` with at most ``limit`` names, saying how many were left out."""
    shown = repr(list(symbols[:limit]))
    cut = len(symbols) - limit
    return f"{shown} … (+{cut} more)" if cut > 0 else shown


class PeriodReporter:
    """Announces period reports (see module doc).

    Args:
        config: the validated config (time zone of the labels).
        store: where manifests go.
        stats: completed periods and their lags are recorded there.
        limiter: the dispatcher's worker threads.
        spawn: starts a task in the dispatcher's nursery.
        alert: ``alerter.notify``.
        metrics / status: optional ops hooks.
        on_change: called after each report.
        last_updated: the newest symbol written, for the "Last updated" line.
        recovering: the previous live phase crashed; alert ``recovered`` at the first complete
            period.
        bus: the live bus, where each report is published as a ``period`` message.
    """

    def __init__(
        self,
        *,
        config: Config,
        store: CandleStore,
        stats: DispatcherStats,
        limiter: trio.CapacityLimiter,
        spawn: Callable[..., None],
        alert: Callable[[str, str], None],
        metrics: Metrics | None,
        status: StatusTracker | None,
        on_change: Callable[[], None],
        last_updated: Callable[[], str | None],
        recovering: bool = False,
        bus: BusHooks | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.store = store
        self.stats = stats
        self.limiter = limiter
        self._spawn = spawn
        self.alert = alert
        self.metrics = metrics
        self.status = status
        self.on_change = on_change
        self._last_updated = last_updated
        self.recovering = recovering
        self.manifest_lock = trio.Lock()
        #: The newest report of each period whose manifest is still to be written.
        self.manifests: dict[int, tuple[PeriodReport, float | None]] = {}
        #: Periods already reported (and alerted) as missing symbols at their deadline.
        self.reported_missing: set[int] = set()
        #: When the last progress line of an incomplete period was logged (trio seconds).
        self._progress_logged = float("-inf")

    def report(self, reports: list[PeriodReport]) -> None:
        """Log, alert, count and schedule the manifest of each report."""
        for report in reports:
            label = run_time_label(report.run_time_ms, self.config.timezone)
            lag = None
            if report.is_complete and report.last_received is not None:
                lag = max(0.0, trio.current_time() - report.last_received)
            if self.bus is not None:
                self.bus.period(
                    run_time_ms=report.run_time_ms,
                    ready=report.complete,
                    missing=report.missing,
                    complete=report.is_complete,
                    lag_s=lag,
                    last_received=report.last_received,
                )
            if report.is_complete:
                self._complete(report, label, lag)
            else:
                self._incomplete(report, label)
            if self.metrics is not None:
                self.metrics.symbols(len(report.complete), len(report.missing))
            # the newest report of a period wins; one writer per period at a time
            scheduled = report.run_time_ms in self.manifests
            self.manifests[report.run_time_ms] = (report, lag)
            if not scheduled:
                self._spawn(self._write_manifest, report.run_time_ms)
            self.on_change()

    def _complete(self, report: PeriodReport, label: str, lag: float | None) -> None:
        if lag is not None:
            self.stats.lags[report.run_time_ms] = lag
        self.stats.completed.append(report.run_time_ms)
        total = len(report.complete) + len(report.missing)
        log.info(
            "%s, all symbols ready (%d/%d), period lag %s",
            label,
            len(report.complete),
            total,
            "n/a" if lag is None else f"{lag * 1000:.1f} ms",
        )
        log.info("Last updated %s", self._last_updated())
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

    def _incomplete(self, report: PeriodReport, label: str) -> None:
        first_at_deadline = report.run_time_ms not in self.reported_missing
        total = len(report.complete) + len(report.missing)
        now = trio.current_time()
        if first_at_deadline or now - self._progress_logged >= PROGRESS_EVERY_S:
            self._progress_logged = now
            log.log(
                logging.WARNING if first_at_deadline else logging.INFO,
                "%s, %d/%d symbols ready, missing %s",
                label,
                len(report.complete),
                total,
                symbol_list(report.missing),
            )
        if first_at_deadline:
            self.reported_missing = {
                r for r in self.reported_missing if r > report.run_time_ms - _REMEMBER_MISSING_MS
            } | {report.run_time_ms}
            self.alert(
                "symbols_missing",
                f"{label}: {len(report.missing)} symbols missing at the deadline: "
                f"{symbol_list(report.missing)}",
            )

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
                    started = time.perf_counter()
                    await trio.to_thread.run_sync(write, limiter=self.limiter)
                    if report.is_complete and run_time in self.stats.stages:
                        self.stats.stages[run_time]["manifest"] = time.perf_counter() - started
                except StorageError as exc:
                    log.error("manifest write failed: %s", exc)
        self.save_status()

    def save_status(self) -> None:
        """Write the status report soon (in its own task)."""
        if self.status is not None:
            self._spawn(self.status.save)

    def __repr__(self) -> str:
        return f"<PeriodReporter {len(self.stats.completed)} periods complete>"
