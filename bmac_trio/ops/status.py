"""``<base>/bmac_status.json``: what the recorder is doing, for ``bmac-trio status`` and monitors.

The recorder keeps a :class:`StatusTracker`, updates it as things happen (cheap, in memory) and
saves it atomically once per period and on errors, so a reader never sees a torn file. The file
records the recorder's clock (speed, and the shared-clock spec when it runs on one) so that
``status`` judges staleness on the same time line as the recorder. :func:`assess` is the pure
health rule: data is stale when no period completed within two intervals plus the candle close
timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from bmac_trio.store.layout import STATUS_FILE

__all__ = [
    "STATUS_FORMAT",
    "Health",
    "HealthCode",
    "StatusErrorLog",
    "StatusReport",
    "StatusTracker",
    "assess",
    "default_max_age",
    "format_age",
    "not_running",
    "read_status",
    "status_path",
    "write_status",
]

STATUS_FORMAT: Final = 1
RecorderState = Literal["starting", "history", "live", "stopped", "crashed"]


class HealthCode(IntEnum):
    """``bmac-trio status`` exit codes: anything but 0 is unhealthy."""

    OK = 0
    STALE = 1
    NO_DATA = 2
    #: A recorder wrote the status file but no longer runs: its data only gets older.
    NOT_RUNNING = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """One snapshot of the recorder, as saved in ``bmac_status.json``."""

    format_version: int = STATUS_FORMAT
    # what it records (config summary)
    trade_type: str
    interval: str
    interval_seconds: float
    market: str = ""
    save_type: str = "parquet"
    num_candles: int = 0
    timezone: str = ""
    candle_close_timeout_sec: float = 15.0
    # the process and its clock
    pid: int
    started_at_ms: int
    updated_at_ms: int
    clock_speed: float = 1.0
    clock: str | None = None
    state: RecorderState = "starting"
    # the newest complete period: its end (BMAC's run_time), ready-file label and lag
    last_period_ms: int | None = None
    last_period_label: str | None = None
    last_period_lag_seconds: float | None = None
    periods_completed: int = 0
    symbols_ready: tuple[str, ...] = ()
    symbols_missing: tuple[str, ...] = ()
    #: Symbols the exchange refuses to stream, recorded over REST instead.
    symbols_rest_only: tuple[str, ...] = ()
    # the network
    connections_open: int = 0
    rest_weight_used: int = 0
    rest_weight_limit: int = 0
    rest_weight_spent: int = 0
    reconnects: int = 0
    # the live bus: messages published, and dropped for slow subscribers (HWM reached)
    bus_messages_sent: int = 0
    bus_messages_dropped: int = 0
    last_error: str | None = None
    last_error_at_ms: int | None = None
    # the NATS JetStream publisher (None: no ``nats`` key)
    nats_state: str | None = None
    nats_backlog: int = 0
    nats_published: int = 0

    def to_json(self) -> bytes:
        """The file's bytes (indented: people read it)."""
        return orjson.dumps(dataclasses.asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> StatusReport:
        """Parse the file; unknown keys (a newer recorder) are ignored.

        Raises:
            ValueError: not JSON, or a required field is missing.
        """
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("status file does not hold a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in data.items() if k in names}
        for key in ("symbols_ready", "symbols_missing", "symbols_rest_only"):
            if key in kept:
                kept[key] = tuple(kept[key])
        try:
            return cls(**kept)
        except TypeError as exc:
            raise ValueError(f"status file incomplete: {exc}") from None

    @classmethod
    def for_config(
        cls, config: Any, *, pid: int, now_ms: int, clock_speed: float, clock: str | None = None
    ) -> StatusReport:
        """The first report of a recorder run with ``config`` (a ``_config.Config``)."""
        return cls(
            trade_type=config.trade_type_name,
            interval=config.interval.name,
            interval_seconds=config.interval.seconds,
            market=config.market.name,
            save_type=config.save_type,
            num_candles=config.num_candles,
            timezone=config.timezone.key,
            candle_close_timeout_sec=float(config.candle_close_timeout_sec),
            pid=pid,
            started_at_ms=now_ms,
            updated_at_ms=now_ms,
            clock_speed=clock_speed,
            clock=clock,
        )


def status_path(base_dir: Path) -> Path:
    """``<base>/bmac_status.json``."""
    return Path(base_dir) / STATUS_FILE


def write_status(base_dir: Path, report: StatusReport) -> None:
    """Replace the status file atomically (tempfile in the same dir, fsync, rename).

    Blocking: call it through ``trio.to_thread.run_sync``.

    Raises:
        StorageError: the disk refused; the previous status file is intact.
    """
    from bmac_trio.store.candles import write_bytes_atomic

    write_bytes_atomic(status_path(base_dir), report.to_json())


def read_status(base_dir: Path) -> StatusReport | None:
    """The saved report, or None when the recorder has not written one yet.

    Raises:
        ValueError: the file exists but cannot be parsed.
    """
    try:
        raw = status_path(base_dir).read_bytes()
    except FileNotFoundError:
        return None
    return StatusReport.from_json(raw)


class StatusTracker:
    """The recorder's live status: cheap in-memory updates, :meth:`save` writes the file.

    Every method is sync and non-blocking except :meth:`save`.
    """

    def __init__(self, base_dir: Path, report: StatusReport, clock: Any) -> None:
        self.base_dir = Path(base_dir)
        self.report = report
        self._clock = clock
        self._sources: list[Callable[[], Mapping[str, Any]]] = []
        # error() is called from worker threads too (through StatusErrorLog)
        self._lock = threading.Lock()
        #: An error was noted since the last save (see :meth:`run_saver`).
        self.unsaved_error = False

    def watch(self, source: Callable[[], Mapping[str, Any]]) -> None:
        """Merge ``source()`` into every snapshot, e.g. counters owned by other parts::

        tracker.watch(lambda: {"connections_open": ws.open, "reconnects": ws.reconnects})
        """
        self._sources.append(source)

    def update(self, **changes: Any) -> None:
        """Set fields of the report (e.g. ``state="live"``, ``connections_open=3``)."""
        with self._lock:
            self.report = dataclasses.replace(self.report, **changes)

    def period_complete(
        self,
        *,
        run_time_ms: int,
        label: str,
        lag_seconds: float,
        ready: tuple[str, ...] | list[str],
        missing: tuple[str, ...] | list[str],
    ) -> None:
        """The period ending at ``run_time_ms`` is on disk (``missing`` symbols absent)."""
        self.update(
            last_period_ms=run_time_ms,
            last_period_label=label,
            last_period_lag_seconds=round(lag_seconds, 6),
            periods_completed=self.report.periods_completed + 1,
            symbols_ready=tuple(sorted(ready)),
            symbols_missing=tuple(sorted(missing)),
        )

    def error(self, error: BaseException | str) -> None:
        """Remember the latest error (shown by ``status``)."""
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.update(last_error=text[:500], last_error_at_ms=self._clock.now_ms())
        self.unsaved_error = True

    def snapshot(self) -> StatusReport:
        """The report stamped with the current time, with the watched sources merged in."""
        changes: dict[str, Any] = {}
        for source in self._sources:
            changes.update(source())
        self.update(**changes, updated_at_ms=self._clock.now_ms())
        return self.report

    async def save(self) -> None:
        """Write the file atomically, off the event loop."""
        import trio

        self.unsaved_error = False
        await trio.to_thread.run_sync(write_status, self.base_dir, self.snapshot())

    async def run_saver(self, every_s: float = 1.0) -> None:
        """Save within ``every_s`` real seconds of an error, until cancelled: the periodic saves
        stop when no period completes (the exchange is down), which is when errors matter."""
        import trio

        from bmac_trio.errors import StorageError

        while True:
            await trio.sleep(every_s)
            if self.unsaved_error:
                # a disk error is already logged, and noted in the report for the next try
                with contextlib.suppress(StorageError):
                    await self.save()


class StatusErrorLog(logging.Handler):
    """Passes the recorder's logged errors to a :class:`StatusTracker`, so that ``status``
    shows the latest error of any kind (WebSocket, REST, disk) without every error path
    knowing about the tracker.

    An error is a record at ERROR or above, or a WARNING that carries an exception (as an
    argument or ``exc_info``): "connect failed ...; retrying", "GET ...: HTTP 503", a failed
    write. Plain warnings (a symbol listed, a period incomplete) are not errors.
    """

    def __init__(self, tracker: StatusTracker) -> None:
        super().__init__(level=logging.WARNING)
        self.tracker = tracker

    def emit(self, record: logging.LogRecord) -> None:
        exc = _exception_of(record)
        if record.levelno < logging.ERROR and exc is None:
            return
        try:
            text = record.getMessage()
        except Exception:  # a bad format string must not break logging
            text = str(record.msg)
        prefix = f"{type(exc).__name__}: " if exc is not None else ""
        self.tracker.error(prefix + text)


def _exception_of(record: logging.LogRecord) -> BaseException | None:
    if record.exc_info and record.exc_info[1] is not None:
        return record.exc_info[1]
    args = record.args if isinstance(record.args, tuple) else ()
    return next((a for a in args if isinstance(a, BaseException)), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """The verdict of :func:`assess`."""

    code: HealthCode
    reason: str
    age_seconds: float | None
    max_age_seconds: float | None


def default_max_age(interval_seconds: float, close_timeout_sec: float) -> float:
    """Two intervals plus the candle close timeout, in exchange seconds."""
    return 2 * interval_seconds + close_timeout_sec


def assess(report: StatusReport | None, *, now_ms: int, max_age: float | None = None) -> Health:
    """Healthy, stale or no data, judged at exchange time ``now_ms``."""
    if report is None:
        return Health(
            code=HealthCode.NO_DATA,
            reason="no status file: the recorder has not run here yet",
            age_seconds=None,
            max_age_seconds=None,
        )
    limit = (
        max_age
        if max_age is not None
        else default_max_age(report.interval_seconds, report.candle_close_timeout_sec)
    )
    if report.last_period_ms is None:
        return Health(
            code=HealthCode.NO_DATA,
            reason=f"no complete period yet (recorder {report.state})",
            age_seconds=None,
            max_age_seconds=limit,
        )
    age = (now_ms - report.last_period_ms) / 1000
    if age > limit:
        return Health(
            code=HealthCode.STALE,
            reason=(
                f"the newest complete period ended {format_age(age)} ago "
                f"(limit {format_age(limit)})"
            ),
            age_seconds=age,
            max_age_seconds=limit,
        )
    return Health(
        code=HealthCode.OK,
        reason=f"the newest complete period ended {format_age(age)} ago",
        age_seconds=age,
        max_age_seconds=limit,
    )


def not_running(report: StatusReport, health: Health) -> Health:
    """The verdict for a recorder that wrote ``report`` and is gone (stopped, crashed, killed):
    unhealthy whatever the age of its data, which :func:`assess` judged as ``health``."""
    age = f"; {health.reason}" if health.age_seconds is not None else ""
    return Health(
        code=HealthCode.NOT_RUNNING,
        reason=f"the recorder is not running (last pid {report.pid}, {report.state}){age}",
        age_seconds=health.age_seconds,
        max_age_seconds=health.max_age_seconds,
    )


def format_age(seconds: float) -> str:
    """A duration for people: ``42s``, ``5m12s``, ``3h05m``, ``2d04h``."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
