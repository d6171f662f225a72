"""``bmac-trio follow``: the recorder's files on another host, from the JetStream stream alone.

No Binance access, no weight: the follower consumes the stream with an ordered consumer and
writes through :mod:`bmac_trio.store` exactly what the recorder writes — candle files (merged,
sorted, unique, the last ``num_candles``), ready files, period manifests, ``bmac_meta.json``,
``exginfo.pqt`` and the ``_delisted/`` moves. Messages are applied in batches: a batch's
candles are merged and written (several symbols at once, off the event loop), then its period
manifests, then the stream sequence reached is saved in ``<DIR>/.nats_follow.json``. After a
stop or a crash it resumes from the sequence after that one (merges are idempotent, so a
replayed batch changes nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import orjson
import trio

from bmac_trio.binance.candles import Candle, candles_to_frame, epoch_ms
from bmac_trio.binance.intervals import parse_interval
from bmac_trio.bus import messages as bus, nats_codec as codec
from bmac_trio.clock import unix_us
from bmac_trio.errors import BusUnavailable, ProtocolError
from bmac_trio.store.atomic import write_bytes_atomic
from bmac_trio.store.layout import candle_dir, exginfo_dir, run_time_label

if TYPE_CHECKING:
    import polars as pl

    from bmac_trio.bus.aio_bridge import AsyncioThread
    from bmac_trio.bus.nats_link import JetStreamLink, Received
    from bmac_trio.store.candles import CandleStore, ExginfoStore

__all__ = ["FOLLOW_STATE", "FollowTarget", "Follower", "follow"]

log = logging.getLogger("bmac_trio.follow")

FOLLOW_STATE: Final = ".nats_follow.json"
#: Messages applied per batch (a catch-up writes each symbol once per batch).
BATCH: Final = 20_000
RETRY_MAX_S: Final = 5.0
#: A batch at least this big is logged with its rate (a catch-up).
CATCH_UP_LOG: Final = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowTarget:
    """Where to follow from: servers, and the stream / prefix (None: found on the server)."""

    servers: tuple[str, ...]
    stream: str | None = None
    prefix: str | None = None


@dataclass(slots=True)
class Follower:
    """The follower's state; :func:`follow` drives it.

    ``on_period(run_time_ms, final)`` is called after a period's manifest is on disk.
    """

    base: Path
    durable: bool = True
    write_threads: int = 4
    on_period: Callable[[int, bool], None] | None = None
    store: CandleStore | None = None
    exginfo: ExginfoStore | None = None
    meta: dict[str, Any] | None = None
    frames: dict[str, pl.DataFrame] = field(default_factory=dict)
    last_seq: int = 0
    applied: int = 0
    periods: list[int] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    # --- state on disk ------------------------------------------------------------------------

    def load_state(self, stream: str) -> int:
        """The stream sequence already applied (0: none, or another stream's)."""
        try:
            data = orjson.loads((self.base / FOLLOW_STATE).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return 0
        if not isinstance(data, dict) or data.get("stream") != stream:
            return 0
        seq = data.get("last_seq")
        return seq if isinstance(seq, int) and seq > 0 else 0

    def save_state(self, stream: str) -> None:
        """Atomic, not fsynced: written after the batch's files (fsynced), so after a power cut
        it is never ahead of them; at worst a batch is applied again (idempotent)."""
        write_bytes_atomic(
            self.base / FOLLOW_STATE,
            orjson.dumps({"stream": stream, "last_seq": self.last_seq}),
            durable=False,
        )

    def configure(self, meta: dict[str, Any]) -> None:
        """Open the stores the recorder's ``bmac_meta.json`` describes and write it here."""
        from bmac_trio.store.candles import CandleStore, ExginfoStore

        interval = parse_interval(meta["interval"])
        tz = ZoneInfo(meta["timezone"])
        if self.store is None:
            self.store = CandleStore(
                candle_dir(self.base, meta["trade_type"], interval.name),
                meta["save_type"],
                tz,
                int(meta["num_candles"]),
                interval,
                trade_type=meta["trade_type"],
                durable=self.durable,
            )
            self.exginfo = ExginfoStore(
                exginfo_dir(self.base, interval.name), tz, durable=self.durable
            )
            self.store.cleanup_temp_files()
        assert self.exginfo is not None
        if meta != self.meta:
            self.store.write_meta(meta)
            self.exginfo.write_meta(meta)
        self.meta = meta

    # --- applying a batch ---------------------------------------------------------------------

    async def apply(self, batch: list[Received], limiter: trio.CapacityLimiter) -> None:
        """Apply stored messages in stream order (see module doc)."""
        pending: dict[str, list[Candle]] = {}
        periods: list[bus.PeriodEvent] = []
        retired: list[str] = []
        exginfo: tuple[Any, int] | None = None
        started = time.perf_counter()
        for received in batch:
            try:
                decoded = codec.decode(received.suffix, received.headers, received.body)
            except ProtocolError as exc:
                log.warning("skipped message %d: %s", received.seq, exc)
                continue
            if decoded.kind == "meta":
                await trio.to_thread.run_sync(self.configure, decoded.value, limiter=limiter)
            elif self.store is None:
                log.warning("message %d before any meta: skipped", received.seq)
            elif decoded.kind in ("candle", "candles"):
                if decoded.kind == "candle":
                    candles = [decoded.value.candle]
                else:  # a page of one symbol's candles (Arrow)
                    candles = codec.frame_candles(decoded.value.candles)
                for candle in candles:
                    pending.setdefault(candle.symbol, []).append(candle)
                    if candle.symbol in retired:
                        retired.remove(candle.symbol)  # listed again
            elif decoded.kind == "period":
                periods.append(decoded.value)
            elif decoded.kind == "retired":
                retired.append(decoded.value)
            elif decoded.kind == "exginfo":
                exginfo = (decoded.value, decoded.run_time_ms or 0)
        async with trio.open_nursery() as nursery:
            for symbol, candles in pending.items():
                nursery.start_soon(self._write, symbol, candles, limiter)
            if exginfo is not None and self.exginfo is not None:
                nursery.start_soon(
                    lambda: trio.to_thread.run_sync(
                        self.exginfo.write_exginfo,
                        *exginfo,
                        limiter=limiter,  # type: ignore[union-attr]
                    )
                )
        for symbol in retired:
            self.frames.pop(symbol, None)
            assert self.store is not None
            await trio.to_thread.run_sync(self.store.move_to_delisted, symbol, limiter=limiter)
        for note in periods:
            await self._manifest(note, limiter)
        if batch:
            self.last_seq = batch[-1].seq
        self.applied += len(batch)
        if len(batch) >= CATCH_UP_LOG:
            seconds = time.perf_counter() - started
            log.info(
                "caught up %d messages (%d candles) to sequence %d in %.3f s",
                len(batch),
                sum(len(c) for c in pending.values()),
                self.last_seq,
                seconds,
            )
        self._poke()

    async def _write(
        self, symbol: str, candles: list[Candle], limiter: trio.CapacityLimiter
    ) -> None:
        store = self.store
        assert store is not None
        old = self.frames.get(symbol)

        def merge_and_write() -> pl.DataFrame:
            base = old if old is not None else store.read(symbol)
            frame = store.merge(base, candles_to_frame(candles, store.interval))
            if frame.n_chunks() > 16:
                frame = frame.rechunk()
            last_open = int(epoch_ms(frame["candle_begin_time"])[-1])
            store.write(symbol, frame, store.interval.end(last_open))
            return frame

        self.frames[symbol] = await trio.to_thread.run_sync(merge_and_write, limiter=limiter)

    async def _manifest(self, note: bus.PeriodEvent, limiter: trio.CapacityLimiter) -> None:
        store = self.store
        assert store is not None

        def write() -> None:
            store.write_manifest(
                note.run_time_ms,
                complete=note.ready,
                missing=note.missing,
                final=note.complete,
                lag_ms=note.lag_ms,
            )

        await trio.to_thread.run_sync(write, limiter=limiter)
        if note.complete:
            self.periods.append(note.run_time_ms)
            label = run_time_label(note.run_time_ms, store.tz)
            # from the recorder's arrival of the period's last closing kline (its wall clock)
            since = (
                "n/a"
                if note.last_received_us is None
                else f"{(unix_us() - note.last_received_us) / 1000:.1f} ms"
            )
            log.info(
                "period %s complete (%d symbols, %d missing), %s after its last closing frame",
                label,
                len(note.ready),
                len(note.missing),
                since,
            )
        if self.on_period is not None:
            self.on_period(note.run_time_ms, note.complete)

    # --- waiting ------------------------------------------------------------------------------

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[Follower], bool]) -> None:
        while not predicate(self):
            await self._changed.wait()


async def follow(
    target: FollowTarget,
    follower: Follower,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Follow the stream into ``follower.base`` until cancelled (retrying while NATS is down)."""
    from bmac_trio.bus.aio_bridge import AsyncioThread
    from bmac_trio.bus.nats_link import JetStreamLink, StreamSettings

    link = JetStreamLink(target.servers, StreamSettings(name="", prefix="", max_age_s=1.0))
    limiter = trio.CapacityLimiter(follower.write_threads)
    started = False
    async with AsyncioThread("bmac-follow") as aio:
        try:
            retry_s = 0.2
            while True:
                try:
                    stream = await _open(aio, link, target, follower, limiter)
                    sub = await aio.run(link.subscribe_from, follower.last_seq + 1)
                    if not started:
                        started = True
                        task_status.started()
                    while True:
                        batch = await aio.run(link.take, sub, BATCH, 1.0)
                        if batch:
                            await follower.apply(batch, limiter)
                            await trio.to_thread.run_sync(
                                follower.save_state, stream, limiter=limiter
                            )
                            retry_s = 0.2
                except BusUnavailable as exc:
                    log.warning("NATS: %s; retrying in %.1f s", exc, retry_s)
                    await trio.sleep(retry_s)
                    retry_s = min(2 * retry_s, RETRY_MAX_S)
        finally:
            with trio.move_on_after(3, shield=True):
                await aio.run(link.close)


async def _open(
    aio: AsyncioThread,
    link: JetStreamLink,
    target: FollowTarget,
    follower: Follower,
    limiter: trio.CapacityLimiter,
) -> str:
    """Connect, find the stream and prefix, read the newest meta; returns the stream name."""
    from bmac_trio.bus.nats_link import StreamSettings

    if link.nc is None:
        await aio.run(link.connect, 2.0, "bmac-trio follow")
    stream = target.stream
    if stream is None:
        names = [n for n in await aio.run(link.stream_names) if n.startswith("BMAC_")]
        if len(names) != 1:
            raise BusUnavailable(
                f"{len(names)} BMAC_ streams on the server ({names}): choose one with --stream"
            )
        stream = names[0]
    prefix = target.prefix
    if prefix is None:
        subjects = await aio.run(link.describe, stream)
        prefix = subjects[0].removesuffix(".>") if subjects else ""
    link.settings = StreamSettings(name=stream, prefix=prefix, max_age_s=1.0)
    if follower.meta is None:
        last = await aio.run(link.last_of, "meta")
        if last is None:
            raise BusUnavailable(f"stream {stream} holds no meta message yet")
        try:
            meta = codec.decode("meta", last.headers, last.body).value
        except ProtocolError as exc:
            raise BusUnavailable(f"stream {stream}: unreadable meta message ({exc})") from None
        await trio.to_thread.run_sync(follower.configure, meta, limiter=limiter)
        follower.last_seq = await trio.to_thread.run_sync(follower.load_state, stream)
        log.info(
            "following %s (%s.>) into %s from sequence %d",
            stream,
            prefix,
            follower.base,
            follower.last_seq + 1,
        )
    return stream
