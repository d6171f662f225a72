"""The recorder's JetStream publisher: every accepted candle, period and symbol change.

The dispatcher calls the :class:`~.hooks.BusHooks` methods, which only append to an in-memory
queue (never blocking the event loop or the disk writes). One task, :meth:`NatsPublisher.run`,
publishes the queue in order through the :class:`~.aio_bridge.AsyncioThread` — pipelined
batches, each message's ``Nats-Msg-Id`` derived from its content — and removes a message only
once JetStream acknowledged it. When NATS is unreachable the queue grows (about 200 bytes a
candle), the outage is alerted and shown in ``status``, and the backlog is published, in order,
when the server is back.

At every start (:meth:`NatsPublisher.resume`) the files are compared with the stream: each
symbol's candles newer than the stream's newest are queued first, so candles a killed recorder
had written but not yet published reach the stream, and the rest is dropped by de-duplication.
A symbol with fewer candles in the stream than in its file up to that newest one (a history
page or a gap's fill queued behind newer live candles, cut off by the kill) has its stream's
open times read, and the file's candles missing there are queued too, back to the stream's
retention (older ones have left it by age, and would only come back as stale copies).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import trio

from bmac_trio.binance.candles import FLOAT_COLUMNS, Candle, epoch_ms
from bmac_trio.bus import messages as bus, nats_codec as codec
from bmac_trio.clock import unix_us
from bmac_trio.errors import BusUnavailable

if TYPE_CHECKING:
    import polars as pl

    from bmac_trio.bus.aio_bridge import AsyncioThread
    from bmac_trio.bus.nats_link import JetStreamLink
    from bmac_trio.ops.status import StatusTracker
    from bmac_trio.store.config import Config

__all__ = ["NatsPublisher", "stream_settings"]

log = logging.getLogger("bmac_trio.nats")

#: Real seconds a batch may wait for its acks before NATS counts as down.
ACK_TIMEOUT_S = 2.0
#: Real seconds between attempts while NATS is down (doubling up to the max).
RETRY_S = 0.2
RETRY_MAX_S = 5.0
#: Real seconds the final flush may take on shutdown.
FLUSH_GRACE_S = 5.0
BATCH = 1000
#: Periods of candles kept to build each ``period`` message.
KEEP_PERIODS = 3
#: Exchange ms for which a period published as incomplete is remembered.
_REMEMBER_LATE_MS = 10**8


def stream_settings(config: Config) -> Any:
    """The :class:`~.nats_link.StreamSettings` of ``config``'s ``nats`` key: retention of the
    rolling window (``num_candles`` intervals) plus two, so a follower can always rebuild it."""
    from bmac_trio.bus.nats_link import StreamSettings

    nats = config.nats
    assert nats is not None
    return StreamSettings(
        name=nats.stream,
        prefix=nats.subject_prefix,
        max_age_s=float(config.interval.seconds) * (config.num_candles + 2),
        replicas=nats.replicas,
    )


class NatsPublisher:
    """Queues the market for JetStream and publishes it (see module doc).

    Args:
        config: the validated config, with a ``nats`` key.
        alert: ``alerter.notify``.
        status: shows ``nats_state``, ``nats_backlog`` and ``nats_published``.
        now_ms: exchange time (names a retirement's message id; the retention at a restart).
    """

    def __init__(
        self,
        config: Config,
        *,
        alert: Callable[[str, str], None] | None = None,
        status: StatusTracker | None = None,
        now_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        assert config.nats is not None
        self.config = config
        self.alert = alert or (lambda kind, text: None)
        self.status = status
        self.now_ms = now_ms
        self.stamper = bus.Stamper()
        self.queue: deque[codec.Outgoing] = deque()
        self.state = "connecting"
        self.published = 0
        self.outages = 0
        self._resume: dict[str, pl.DataFrame | None] | None = None
        #: Recent candles by symbol and open time, for each ``period`` message's frame.
        self._recent: dict[str, dict[int, bus.CandleEvent]] = {}
        self._selection: tuple[str, ...] | None = None
        #: Periods already published as incomplete (at their deadline).
        self._reported_late: set[int] = set()
        #: (content digest, run time) of the last exginfo queued.
        self._exginfo_seen: tuple[str, int] | None = None
        self._wake = trio.Event()
        self._changed = trio.Event()
        if status is not None:
            status.watch(
                lambda: {
                    "nats_state": self.state,
                    "nats_backlog": len(self.queue),
                    "nats_published": self.published,
                }
            )
        self.queue.append(codec.meta_message(config.to_meta()))

    # --- the hooks (sync, never block) ---------------------------------------------------------

    def candles(
        self, symbol: str, candles: Iterable[Candle], *, source: str, received: float
    ) -> None:
        """Closed candles accepted: one message each (one id each: JetStream de-duplicates)."""
        now = unix_us()
        received_us = now - int((trio.current_time() - received) * 1e6)
        recent = self._recent.setdefault(symbol, {})
        interval = self.config.interval
        for candle in candles:
            event = bus.CandleEvent(
                candle=candle,
                end_ms=interval.end(candle.open_ms),
                source=source,
                received_us=received_us,
            )
            recent[candle.open_ms] = event
            self.queue.append(codec.candle_message(self.stamper, event, now_us=now))
        if len(recent) > 2 * KEEP_PERIODS:  # a history page: only the newest can be in a period
            keep = sorted(recent)[-KEEP_PERIODS:]
            self._recent[symbol] = {t: recent[t] for t in keep}
        self._wake.set()

    def period(
        self,
        *,
        run_time_ms: int,
        ready: Iterable[str],
        missing: Iterable[str],
        complete: bool,
        lag_s: float | None,
        last_received: float | None,
    ) -> None:
        """A period report, with its ready symbols' candles (as on the ZeroMQ bus).

        Stored, so only two per period: the first report (at the deadline, with what is
        missing) and the complete one. The recorder reports a late period again after each
        late symbol's write; on a stream that would be one message per late symbol.
        """
        if not complete:
            if run_time_ms in self._reported_late:
                return
            self._reported_late = {
                t for t in self._reported_late if t > run_time_ms - _REMEMBER_LATE_MS
            } | {run_time_ms}
        interval = self.config.interval
        open_ms = interval.add(run_time_ms, -1)
        ready = tuple(ready)
        events = [e for s in ready if (e := self._recent.get(s, {}).get(open_ms)) is not None]
        now = unix_us()
        event = bus.PeriodEvent(
            run_time_ms=run_time_ms,
            interval=interval.name,
            ready=ready,
            missing=tuple(missing),
            complete=complete,
            lag_ms=None if lag_s is None else round(lag_s * 1000, 3),
            candles=bus.candle_events_to_frame(events),
            last_received_us=(
                None
                if last_received is None
                else now - int((trio.current_time() - last_received) * 1e6)
            ),
        )
        self.queue.append(codec.period_message(self.stamper, event, now_us=now))
        oldest = interval.add(open_ms, -(KEEP_PERIODS - 1))
        for symbol, recent in self._recent.items():
            if len(recent) > KEEP_PERIODS or (recent and min(recent) < oldest):
                self._recent[symbol] = {t: e for t, e in recent.items() if t >= oldest}
        self._wake.set()

    def symbols(self, symbols: Iterable[str]) -> None:
        """The selection after a refresh: published when it changed (with the meta, so the
        stream always holds the newest one a follower needs)."""
        now_set = tuple(sorted(symbols))
        before = self._selection
        if before == now_set:
            return
        old = set(before or ())
        event = bus.SymbolsEvent(
            symbols=now_set,
            listed=tuple(s for s in now_set if s not in old),
            delisted=tuple(sorted(old - set(now_set))),
        )
        self._selection = now_set
        for symbol in event.delisted:
            self._recent.pop(symbol, None)
        self.queue.append(codec.meta_message(self.config.to_meta()))
        self.queue.append(codec.symbols_message(self.stamper, event, now_us=unix_us()))
        self._wake.set()

    def exginfo(self, run_time_ms: int, frame: Any) -> None:
        """The refresher's exchangeInfo frame (every period): published when it changed, and
        again after half the retention, so the stream always holds the newest one."""
        message = codec.exginfo_message(run_time_ms, frame)
        digest = message.msg_id.rsplit(".", 1)[-1]
        half_retention_ms = int(self.config.interval.seconds * 500) * self.config.num_candles
        seen = self._exginfo_seen
        if seen is not None and seen[0] == digest and run_time_ms - seen[1] < half_retention_ms:
            return
        self._exginfo_seen = (digest, run_time_ms)
        self.queue.append(codec.meta_message(self.config.to_meta()))
        self.queue.append(message)
        self._wake.set()

    def retired(self, symbol: str) -> None:
        """``symbol``'s file was moved into ``_delisted/``."""
        at = self.config.interval.floor(self.now_ms())
        self.queue.append(codec.retired_message(symbol, at))
        self._wake.set()

    def resume(self, frames: dict[str, pl.DataFrame | None]) -> None:
        """The files read at the start of a live phase: what the stream lacks of them is queued
        before anything live (see module doc)."""
        self._resume = dict(frames)
        self._wake.set()

    # --- waiting (tests, benchmark) -------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Messages not yet acknowledged by JetStream."""
        return len(self.queue) + (1 if self._resume else 0)

    async def wait_until(self, predicate: Callable[[NatsPublisher], bool]) -> None:
        """Wait (no polling) until ``predicate(self)`` holds after some progress."""
        while not predicate(self):
            await self._changed.wait()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # --- the task --------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish until cancelled; then publish what is left for up to FLUSH_GRACE_S."""
        from bmac_trio.bus.aio_bridge import AsyncioThread
        from bmac_trio.bus.nats_link import JetStreamLink

        link = JetStreamLink(self.config.nats.servers, stream_settings(self.config))  # type: ignore[union-attr]
        async with AsyncioThread("bmac-nats") as aio:
            task_status.started()
            try:
                await self._publish_forever(aio, link)
            finally:
                with trio.move_on_after(FLUSH_GRACE_S, shield=True):
                    await self._flush(aio, link)
                    await aio.run(link.close)

    async def _flush(self, aio: AsyncioThread, link: JetStreamLink) -> None:
        """On shutdown: what is queued, while NATS answers (the rest is re-published from the
        files at the next start, see :meth:`resume`)."""
        try:
            while self.state == "connected" and self.queue:
                await self._publish_some(aio, link)
        except BusUnavailable as exc:
            log.warning("NATS: %d messages not published at shutdown: %s", len(self.queue), exc)

    async def _publish_forever(self, aio: AsyncioThread, link: JetStreamLink) -> None:
        retry_s = RETRY_S
        stream_ready = False
        while True:
            try:
                if link.nc is None:
                    await aio.run(link.connect)
                if not stream_ready:
                    await aio.run(link.ensure_stream)
                    stream_ready = True
                if self._resume is not None:
                    await self._reconcile(aio, link)
                if not self.queue:
                    self._set_state("connected")
                    self._wake = trio.Event()
                    if not self.queue and self._resume is None:
                        await self._wake.wait()
                    continue
                await self._publish_some(aio, link)
                retry_s = RETRY_S
            except BusUnavailable as exc:
                self._down(str(exc))
                await trio.sleep(retry_s)
                retry_s = min(retry_s * 2, RETRY_MAX_S)

    async def _publish_some(self, aio: AsyncioThread, link: JetStreamLink) -> None:
        batch = list(itertools.islice(self.queue, BATCH))
        wire = [(m.suffix, m.body, m.headers) for m in batch]
        stored, error = await aio.run(link.publish_batch, wire, ACK_TIMEOUT_S)
        for _ in range(stored):
            self.queue.popleft()
        self.published += stored
        if error is not None:
            raise BusUnavailable(error)
        self._set_state("connected")
        self._poke()

    async def _reconcile(self, aio: AsyncioThread, link: JetStreamLink) -> None:
        frames = self._resume or {}
        symbols = sorted(s for s, f in frames.items() if f is not None and f.height)
        last = await aio.run(link.last_opens, symbols)
        counts = await aio.run(link.candle_counts)
        # older candles have left the stream by age (or will at once): not published again
        horizon = self.now_ms() - round(stream_settings(self.config).max_age_s * 1000)
        missing: list[codec.Outgoing] = []
        for symbol in symbols:
            frame = frames[symbol]
            assert frame is not None
            opens = epoch_ms(frame["candle_begin_time"]).to_list()
            newest = last[symbol]
            held = None
            if newest is not None:
                retained = bisect.bisect_right(opens, newest) - bisect.bisect_left(opens, horizon)
                if counts.get(symbol, 0) < retained:
                    # fewer in the stream than the file holds up to its newest: a page (the
                    # history, a gap's fill) queued behind newer live candles, cut off by a kill
                    held = await aio.run(link.candle_opens, symbol)
            now = unix_us()
            missing.extend(
                codec.candle_message(
                    self.stamper,
                    bus.CandleEvent(
                        candle=c, end_ms=self.config.interval.end(c.open_ms), source="disk"
                    ),
                    now_us=now,
                )
                for c in _candles_not_held(symbol, frame, opens, newest, held, horizon)
            )
        if missing:
            log.info("publishing %d candles from the files that the stream lacks", len(missing))
        # older than anything queued live for the same symbol: they go first
        self.queue.extendleft(reversed(missing))
        self._resume = None
        self._poke()

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        if self.state == "down":
            log.warning("NATS is back: publishing what was queued meanwhile")
            self.alert("nats", "NATS reachable again; the messages queued meanwhile are published")
        self.state = state
        self._poke()

    def _down(self, error: str) -> None:
        if self.state != "down":
            self.outages += 1
            log.error("NATS unreachable (%s); queueing, %d waiting", error, len(self.queue))
            self.alert("nats", f"NATS unreachable, queueing messages: {error}")
            if self.status is not None:
                self.status.error(f"NATS unreachable: {error}")
            self.state = "down"
        self._poke()

    def __repr__(self) -> str:
        return f"<NatsPublisher {self.state}, {len(self.queue)} queued, {self.published} published>"


def _candles_not_held(
    symbol: str,
    frame: pl.DataFrame,
    opens: list[int],
    newest: int | None,
    held: set[int] | None,
    horizon: int,
) -> list[Candle]:
    """The file's candles newer than the stream's ``newest``, and, when the stream's ``held``
    open times are known, the older ones it lacks that opened at or after ``horizon``."""
    start = 0 if newest is None else bisect.bisect_right(opens, newest)
    rows = []
    if held is not None:
        first = bisect.bisect_left(opens, horizon)
        rows = [i for i in range(first, start) if opens[i] not in held]
    rows.extend(range(start, len(opens)))
    if not rows:
        return []
    columns = {name: frame[name].to_list() for name in FLOAT_COLUMNS}
    return [
        Candle(
            symbol=symbol, open_ms=opens[i], **{name: columns[name][i] for name in FLOAT_COLUMNS}
        )
        for i in rows
    ]
