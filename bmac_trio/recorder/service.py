"""Wiring: the recorder's nurseries, channels, start order, shutdown and recovery.

::

    run_recorder ─ root nursery ─┬─ alerter task, signal watcher
                                 └─ live phase (a fresh nursery per attempt)
                                     ├─ dispatcher            (owns the disk; started first)
                                     └─ producers nursery     (cancelled first on shutdown)
                                         ├─ WS listeners      (started: subscribed)
                                         ├─ REST fetchers × num_rest_fetchers
                                         ├─ alarm             (PeriodStart / PeriodDeadline)
                                         └─ refresher         (exchangeInfo, funding)

Start: exchangeInfo → selection → the selected symbols' files are read once → the dispatcher
starts → the listeners connect and subscribe (``nursery.start``) → only then is the selection
handed to the dispatcher, which fetches each symbol's missing tail; the stream and the backfill
overlap and the book drops the duplicates, so there is no gap even when the start crosses a
boundary.

Channels: one bounded inbox (fan-in by ``clone()``); the dispatcher → fetchers and dispatcher →
listeners channels are part of a cycle (their consumers feed the inbox), so they are unbounded,
which cannot grow without bound because the book never has two fetches in flight for one
candle and stream sets are sent at most once per period.

Shutdown (SIGINT/SIGTERM): the producers' scope is cancelled; their channel clones close; the
dispatcher's inbox ends, it flushes what is dirty (bounded, shielded) and returns; exit 0.
An unexpected error is logged with its traceback, alerted, and the live phase starts again
after a backoff in a fresh nursery (no zombie tasks, BMAC bug 2) without wiping anything.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import trio

from bmac_trio.bus.hooks import FanOut
from bmac_trio.bus.publisher import DEFAULT_HWM, BusPublisher
from bmac_trio.errors import StorageError
from bmac_trio.ops.alerts import NullAlerter
from bmac_trio.recorder.alarm import run_alarm, run_refresher, selection_message
from bmac_trio.recorder.dispatcher import Dispatcher, DispatcherStats, run_dispatcher
from bmac_trio.recorder.events import Fetch, Inbox, SetSymbols
from bmac_trio.recorder.rest import RestClient, retrying, run_rest_fetcher
from bmac_trio.recorder.ws import ListenerStats, WsSettings, run_ws_listeners

if TYPE_CHECKING:
    from bmac_trio.clock import Clock
    from bmac_trio.ops.alerts import Alerter
    from bmac_trio.ops.metrics import Metrics
    from bmac_trio.ops.status import StatusTracker
    from bmac_trio.store.config import Config

__all__ = ["EarlySignals", "RecorderHandle", "RecorderOptions", "run_recorder"]

log = logging.getLogger("bmac_trio")

#: Inbox capacity: a period's closing pushes for a few hundred symbols fit without blocking.
INBOX_SIZE = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderOptions:
    """Knobs that are not in config.json (tests and the benchmark change them)."""

    #: Exchange seconds before a WS connection is replaced (Binance cuts at 24 h).
    ws_max_age_s: float = 23.5 * 3600
    #: Real seconds without frames before a connection is probed / the probe may wait.
    ws_probe_after_s: float = 30.0
    ws_probe_timeout_s: float = 10.0
    #: Symbol files written in parallel.
    write_threads: int = 4
    #: Real seconds between a crash and the restart of the live phase.
    restart_backoff_s: float = 5.0
    #: Whether SIGINT/SIGTERM stop the recorder (only in the main thread).
    handle_signals: bool = False
    #: Signals caught before the recorder started (see :class:`EarlySignals`).
    early_signals: EarlySignals | None = None
    #: fsync data files (off only in benchmarks that measure something else).
    durable: bool = True
    #: Messages queued per bus subscriber before it counts as slow and is dropped from.
    bus_hwm: int = DEFAULT_HWM
    #: Kernel send buffer per bus subscriber in bytes (0: the OS default; tests shrink it).
    bus_sndbuf: int = 0
    #: ``gc.freeze()`` once the start-up history is on disk (``bmac-trio run`` sets it; off
    #: for a recorder embedded in another process, whose collector is not ours to change).
    freeze_gc: bool = False
    #: ``sys.setswitchinterval`` for the process (``None``: leave it). At a boundary the event
    #: loop waits for the GIL behind the writer threads; a shorter interval hands it back
    #: sooner (bus candle p99 197-274 ms against 379-1358 ms at CPython's 5 ms, bench_bus).
    switch_interval_s: float | None = None

    @classmethod
    def standalone(cls, **changes: Any) -> RecorderOptions:
        """The options of a recorder that owns its process (``bmac-trio run``, the benchmarks):
        the collector frozen after the history and a 0.5 ms GIL switch interval."""
        return cls(**({"freeze_gc": True, "switch_interval_s": 0.0005} | changes))


@dataclass(slots=True)
class RecorderHandle:
    """What a running recorder exposes to its caller (tests, benchmark, CLI)."""

    config: Config
    stats: DispatcherStats = field(default_factory=DispatcherStats)
    listeners: ListenerStats = field(default_factory=ListenerStats)
    rest: list[RestClient] = field(default_factory=list)
    restarts: int = 0
    dispatcher: Dispatcher | None = None
    #: The live bus (None with ``"publish": false``).
    bus: BusPublisher | None = None
    #: The JetStream publisher when the config has a ``nats`` key.
    nats: Any = None
    _changed: trio.Event = field(default_factory=trio.Event)
    _stop: Callable[[], None] | None = None

    @property
    def weight_spent(self) -> int:
        """Request weight spent by this recorder, over every live phase."""
        return sum(r.weight_spent for r in self.rest)

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols being recorded now."""
        return frozenset() if self.dispatcher is None else frozenset(self.dispatcher.book.symbols)

    def poke(self) -> None:
        """Wake :meth:`wait_until` callers."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[RecorderHandle], bool]) -> None:
        """Wait (no polling) until ``predicate(handle)`` holds after some progress."""
        while not predicate(self):
            await self._changed.wait()

    def stop(self) -> None:
        """Graceful stop, as on SIGTERM: producers cancelled, dirty files flushed."""
        if self._stop is not None:
            self._stop()


class _Stopper:
    """Cancels whatever the recorder is doing right now, once a stop is requested."""

    def __init__(self) -> None:
        self.requested = False
        self.scope: trio.CancelScope | None = None

    def stop(self) -> None:
        self.requested = True
        if self.scope is not None:
            self.scope.cancel()

    @contextlib.contextmanager
    def guard(self, scope: trio.CancelScope) -> Any:
        self.scope = scope
        if self.requested:
            scope.cancel()
        try:
            yield scope
        finally:
            self.scope = None


class EarlySignals:
    """Notes SIGINT/SIGTERM from the moment a command starts until the recorder's own receiver
    takes over, so that a stop sent during start-up exits 0 instead of killing the process."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> EarlySignals:
        """Replace the default handlers (main thread only)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame: object) -> None:
        self.received.append(signum)


def _stop_on(signum: int, stopper: _Stopper) -> None:
    log.warning(
        "%s received: finishing the writes in progress, then exiting",
        signal.Signals(signum).name,
    )
    stopper.stop()


async def _watch_signals(
    stopper: _Stopper,
    early: EarlySignals | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        for signum in early.received if early is not None else ():
            _stop_on(signum, stopper)
        task_status.started()
        async for signum in signals:
            _stop_on(signum, stopper)


async def run_recorder(
    config: Config,
    *,
    clock: Clock,
    http_client: httpx.AsyncClient | None = None,
    alerter: Alerter | NullAlerter | None = None,
    metrics: Metrics | None = None,
    status: StatusTracker | None = None,
    options: RecorderOptions | None = None,
    task_status: trio.TaskStatus[RecorderHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record ``config``'s market until stopped (signal or :meth:`RecorderHandle.stop`).

    ``task_status.started(handle)`` once the listeners are subscribed and the history is
    under way. Returns normally after a graceful stop.
    """
    options = options or RecorderOptions()
    if options.switch_interval_s is not None:
        sys.setswitchinterval(options.switch_interval_s)
    handle = RecorderHandle(config=config)
    stopper = _Stopper()
    handle._stop = stopper.stop
    started = False

    def ready() -> None:
        nonlocal started
        if not started:
            started = True
            task_status.started(handle)

    async with trio.open_nursery() as watcher:
        if options.handle_signals:
            # first of all: a SIGTERM from here on is a graceful stop, never a kill
            await watcher.start(_watch_signals, stopper, options.early_signals)
        if status is not None:
            watcher.start_soon(status.run_saver)
        run = _Run(
            config=config,
            clock=clock,
            alerter=alerter if alerter is not None else NullAlerter(),
            metrics=metrics,
            status=status,
            options=options,
            handle=handle,
            stopper=stopper,
            ready=ready,
        )
        with _errors_to(status):
            await _record(run, http_client)
        watcher.cancel_scope.cancel()
    if status is not None:  # stopped on purpose: `status` must not show it as running
        status.update(state="stopped")
        with contextlib.suppress(StorageError):
            await status.save()
    log.info("bmac-trio stopped")


@contextlib.contextmanager
def _errors_to(status: StatusTracker | None) -> Iterator[None]:
    """While the recorder runs, its logged errors reach ``status`` (its saver writes them)."""
    if status is None:
        yield
        return
    from bmac_trio.ops.status import StatusErrorLog

    handler = StatusErrorLog(status)
    logger = logging.getLogger("bmac_trio")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """What every part of one :func:`run_recorder` call shares."""

    config: Config
    clock: Clock
    alerter: Alerter | NullAlerter
    metrics: Metrics | None
    status: StatusTracker | None
    options: RecorderOptions
    handle: RecorderHandle
    stopper: _Stopper
    ready: Callable[[], None]


async def _record(run: _Run, http_client: httpx.AsyncClient | None) -> None:
    """Prepare the directories, then run live phases until stopped, restarting after crashes."""
    from bmac_trio.binance.weights import WeightBudget
    from bmac_trio.store.candles import CandleStore, ExginfoStore

    config, status, handle, stopper = run.config, run.status, run.handle, run.stopper
    options, alerter = run.options, run.alerter

    store = CandleStore(
        config.candle_dir,
        config.save_type,
        config.timezone,
        config.num_candles,
        config.interval,
        trade_type=config.trade_type_name,
        durable=options.durable,
    )
    exginfo_store = ExginfoStore(config.exginfo_dir, config.timezone, durable=options.durable)

    def prepare() -> None:
        from bmac_trio.store.adopt import adopt_other_save_type

        removed = store.cleanup_temp_files() + exginfo_store.cleanup_temp_files()
        if removed:
            log.warning("removed %d temp files left by a killed writer", removed)
        adopt_other_save_type(store)  # a changed save_type keeps the history
        store.write_meta(config.to_meta())
        exginfo_store.write_meta(config.to_meta())

    await trio.to_thread.run_sync(prepare)
    budget = WeightBudget(config.market.default_weight_limit)
    bus = None
    if config.publish_endpoints:
        metrics = run.metrics
        bus = BusPublisher(
            config.publish_endpoints,
            market=config.market.name,
            interval=config.interval,
            hwm=options.bus_hwm,
            sndbuf=options.bus_sndbuf,
            on_drop=None if metrics is None else metrics.bus_dropped,
            on_sent=None if metrics is None else metrics.bus_sent,
        )
        bus.open()
        handle.bus = bus
    if status is not None:
        status.watch(
            lambda: {
                "connections_open": handle.listeners.open,
                "reconnects": sum(handle.listeners.replaced.values()),
                "rest_weight_used": budget.used,
                "rest_weight_limit": budget.limit,
                "rest_weight_spent": handle.weight_spent,
                "bus_messages_sent": 0 if bus is None else bus.stats.sent,
                "bus_messages_dropped": 0 if bus is None else bus.stats.dropped,
            }
        )
    log.info(
        "Start bmac-trio: interval=%s, type=%s, num_candles=%d, funding_rate=%s, keep_symbols=%s",
        config.interval,
        config.trade_type_name,
        config.num_candles,
        config.funding_rate,
        None if config.keep_symbols is None else sorted(config.keep_symbols),
    )
    async with contextlib.AsyncExitStack() as stack:
        if bus is not None:
            stack.callback(bus.close)
        if http_client is None:
            http_client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=config.http_timeout_sec + 1.0)
            )
        async with trio.open_nursery() as root:
            await root.start(alerter.run)
            if bus is not None:
                await root.start(bus.run)
            if config.nats is not None:  # loaded only when configured
                from bmac_trio.bus.nats_publisher import NatsPublisher

                handle.nats = NatsPublisher(
                    config, alert=alerter.notify, status=status, now_ms=run.clock.now_ms
                )
                await root.start(handle.nats.run)
            while not stopper.requested:
                try:
                    await _live(run, http_client, store, exginfo_store, budget)
                except* Exception as group:
                    handle.restarts += 1
                    log.exception(
                        "recorder crashed; restarting the live phase in %.1f s (data kept)",
                        options.restart_backoff_s,
                        exc_info=group,
                    )
                    first = group.exceptions[0]
                    alerter.notify("crash", f"recorder crashed ({first!r}); restarting")
                    if status is not None:
                        status.error(first)
                    with stopper.guard(trio.CancelScope()) as scope, scope:
                        await trio.sleep(options.restart_backoff_s)
            root.cancel_scope.cancel()


def _bus_hooks(handle: RecorderHandle) -> FanOut | None:
    """Every publisher of the recorder (ZeroMQ, NATS) behind the dispatcher's one hook."""
    publishers = [p for p in (handle.bus, handle.nats) if p is not None]
    return FanOut(publishers) if publishers else None


async def _freeze_gc_after_history(handle: RecorderHandle) -> None:
    """Once the history is on disk, move every object alive then (modules, config, the
    symbols' frames) into the collector's permanent generation.

    A full collection scanned all of them at every gen2 pass: 32 ms on an idle box, up to
    153 ms on a busy one, each a pause of the event loop and the writers at a boundary. Frozen,
    the passes scan only what the live phase allocates. One collection first, so no garbage is
    frozen with them.
    """
    await handle.wait_until(lambda h: h.stats.history_finished is not None)
    gc.collect()
    gc.freeze()
    log.info("garbage collector: %d objects of the start-up frozen", gc.get_freeze_count())
    handle.poke()


async def _live(
    run: _Run, http: httpx.AsyncClient, store: Any, exginfo_store: Any, budget: Any
) -> None:
    """One live phase: everything from exchangeInfo to a stop or a crash."""
    config, clock, alerter, metrics, status = (
        run.config, run.clock, run.alerter, run.metrics, run.status,
    )  # fmt: skip
    options, handle, stopper, ready = run.options, run.handle, run.stopper, run.ready
    interval = config.interval
    rest = RestClient(
        http=http,
        market=config.market,
        interval=interval,
        base_url=config.rest_url,
        budget=budget,
        clock=clock,
        timeout_s=config.http_timeout_sec,
        metrics=metrics,
    )
    handle.rest.append(rest)

    def on_ban(text: str) -> None:
        alerter.notify("ban", text)

    with stopper.guard(trio.CancelScope()) as scope, scope:
        info = await retrying(rest.exchange_info, clock=clock, what="exchangeInfo", on_ban=on_ban)
        if getattr(info, "weight_limit", None):
            budget.limit = info.weight_limit
        first = selection_message(info, config, interval.floor(clock.now_ms()))
        symbols = sorted(first.symbols)
        log.info("%d symbols selected for %s", len(symbols), config.trade_type_name)

        def read_all() -> dict[str, Any]:
            return {s: store.read(s) for s in symbols}

        preloaded = await trio.to_thread.run_sync(read_all)
    if scope.cancelled_caught:
        return
    if handle.nats is not None:
        handle.nats.resume(preloaded)

    inbox_send, inbox_recv = trio.open_memory_channel[Inbox](INBOX_SIZE)
    fetch_send, fetch_recv = trio.open_memory_channel[Fetch](math.inf)
    listen_send, listen_recv = trio.open_memory_channel[SetSymbols](math.inf)
    dispatcher = Dispatcher(
        config=config,
        clock=clock,
        store=store,
        exginfo_store=exginfo_store,
        fetches=fetch_send,
        listen=listen_send,
        preloaded=preloaded,
        alert=alerter.notify,
        metrics=metrics,
        status=status,
        write_threads=options.write_threads,
        stats=handle.stats,
        on_change=handle.poke,
        recovering=handle.restarts > 0,
        bus=_bus_hooks(handle),
    )
    handle.dispatcher = dispatcher
    settings = WsSettings(
        market=config.market,
        interval=interval,
        ws_url=config.ws_url,
        clock=clock,
        floor=config.num_socket_listeners,
        max_age_s=options.ws_max_age_s,
        probe_after_s=options.ws_probe_after_s,
        probe_timeout_s=options.ws_probe_timeout_s,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_dispatcher, inbox=inbox_recv, dispatcher=dispatcher))
        with inbox_send:
            async with trio.open_nursery() as producers:
                with stopper.guard(producers.cancel_scope), fetch_recv:
                    for _ in range(config.num_rest_fetchers):
                        producers.start_soon(
                            lambda: run_rest_fetcher(
                                fetches=fetch_recv.clone(),
                                inbox=inbox_send.clone(),
                                rest=rest,
                                clock=clock,
                                on_ban=on_ban,
                            )
                        )
                    await producers.start(
                        lambda task_status: run_ws_listeners(
                            settings=settings,
                            symbols=first.symbols,
                            commands=listen_recv,
                            inbox=inbox_send.clone(),
                            stats=handle.listeners,
                            metrics=metrics,
                            on_reconnect=alerter.note_reconnect,
                            task_status=task_status,
                        )
                    )
                    await inbox_send.send(first)
                    if options.freeze_gc:  # a producer: a stop during the history cancels it
                        producers.start_soon(_freeze_gc_after_history, handle)
                    producers.start_soon(
                        lambda: run_alarm(
                            inbox=inbox_send.clone(),
                            interval=interval,
                            clock=clock,
                            deadline_s=config.candle_close_timeout_sec,
                        )
                    )
                    producers.start_soon(
                        lambda: run_refresher(
                            inbox=inbox_send.clone(), rest=rest, config=config, clock=clock
                        )
                    )
                    if status is not None:
                        status.update(state="live")
                    ready()
                    await trio.sleep_forever()
