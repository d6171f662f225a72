"""Waiting for a period's data without hammering the disk.

One poll reads the period manifest (one small file) and, while it is not final, finds the
ready symbols with one directory scan (not one stat per symbol); it runs in a worker thread.
Polls start 20 ms apart after progress and back off to 100 ms when nothing changes, so a
waiting calculator touches the disk at most ~50 times a second, whatever the number of
symbols. Every sleep is an AnyIO sleep timed by the injected clock
(:func:`bmac_kit._time.sleep_until_ms`), so waiting runs under asyncio and trio alike, and
under trio's ``MockClock(autojump_threshold=0)`` a 40 s deadline passes instantly.

A symbol handed to ``on_ready`` whose data turns out not to hold the period's candle (a stale
file: e.g. the recorder now writes another format) is not done: it is offered again on every
poll until the deadline, then reported missing. A result never holds an older candle.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from bmac_kit._reader import CandleFileReader
from bmac_kit._time import sleep_until_ms
from bmac_trio.clock import Clock

__all__ = ["PeriodOutcome", "PeriodWatcher", "Poll", "wait_for_period"]

LOGGER = logging.getLogger("bmac_kit.wait")
MIN_POLL_S = 0.02
MAX_POLL_S = 0.1
_BACKOFF = 1.5

UniverseFn = Callable[[], frozenset[str] | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Poll:
    """What one look at the disk found."""

    ready: frozenset[str]
    #: The manifest is final: the recorder will not complete any more symbols of this period.
    final: bool
    #: Every symbol the period should have, once known (exginfo, or the final manifest).
    universe: frozenset[str] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodOutcome:
    """How waiting ended."""

    ready: frozenset[str]
    missing: tuple[str, ...]
    universe: frozenset[str]


@dataclass(slots=True)
class PeriodWatcher:
    """Sync disk checks for one period of one candle directory (run them in a thread).

    Args:
        reader: the candle directory.
        run_time_ms: the period end.
        universe: returns the symbols the period should have once known (None before), e.g.
            from the exginfo file; called on every poll until it answers.
        fallback: the universe to use if ``universe`` never answers by the deadline.
    """

    reader: CandleFileReader
    run_time_ms: int
    universe: UniverseFn
    fallback: Callable[[], frozenset[str]]
    _known: frozenset[str] | None = None

    def poll(self) -> Poll:
        """Look at the manifest and the ready files once."""
        if self._known is None:
            self._known = self.universe()
        manifest = self.reader.read_manifest(self.run_time_ms) or {}
        ready = set(manifest.get("complete") or ())
        final = bool(manifest.get("final"))
        universe = self._known
        if final and universe is None:
            universe = ready | set(manifest.get("missing") or ())
        if not final:
            ready |= self.reader.ready_symbols(self.run_time_ms)
        return Poll(ready=frozenset(ready), final=final, universe=universe)


async def wait_for_period(
    watcher: PeriodWatcher,
    *,
    deadline_ms: int,
    on_ready: Callable[[frozenset[str]], Awaitable[frozenset[str]]],
    clock: Clock,
) -> PeriodOutcome:
    """Hand symbols to ``on_ready`` as their data lands, until all are in or the deadline.

    Sleeps until the period end first (nothing can be ready before it). ``on_ready`` gets each
    batch of newly ready symbols and returns those it took (whose data held the period); the
    others are offered again at the next poll. It runs before the next poll (due at once if the
    batch took longer than the poll interval), so a slow batch never loses a symbol.

    Returns:
        The ready symbols, and those still missing when the deadline passed or the manifest
        went final (never silently dropped). A symbol ``on_ready`` refused (stale data) keeps
        the wait going until the deadline even after the manifest went final.

    Cancellation:
        Safe at any point; nothing is written.
    """
    await sleep_until_ms(clock, watcher.run_time_ms)
    done: set[str] = set()
    stale: set[str] = set()  # announced ready, but their data lacks the period's candle
    delay = MIN_POLL_S
    while True:
        started = clock.now_ms()
        poll = await anyio.to_thread.run_sync(watcher.poll)
        ready = poll.ready if poll.universe is None else poll.ready & poll.universe
        new = ready - done
        if new:
            taken = await on_ready(frozenset(new)) & new
            stale = (stale | new) - taken
            if taken:
                done |= taken
                delay = MIN_POLL_S
        now = clock.now_ms()
        universe = poll.universe
        if universe is None and now >= deadline_ms:
            universe = await anyio.to_thread.run_sync(watcher.fallback)
            LOGGER.warning("period %s: symbol list unknown at the deadline", watcher.run_time_ms)
        if universe is not None:
            pending = universe - done
            # a final manifest ends the wait, except for files that contradict it (stale)
            final = poll.final and not pending & stale
            if not pending or final or now >= deadline_ms:
                return PeriodOutcome(
                    ready=frozenset(done & universe),
                    missing=tuple(sorted(pending)),
                    universe=universe,
                )
        # polls start ``delay`` apart: after a slow batch the next poll is due at once
        wake = started + int(delay * 1000 * clock.speed)
        await sleep_until_ms(clock, min(deadline_ms, wake))
        delay = min(MAX_POLL_S, delay * _BACKOFF)
