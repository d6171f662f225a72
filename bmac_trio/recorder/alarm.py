"""Period boundaries: the alarm, and the exchange-info/funding refresher beside it.

:func:`iter_alarms` is pure: the UTC-aligned boundaries after a moment (``Interval`` aligns
6h/12h/1d/1w/1M the way Binance does; BMAC used Hong Kong midnight, bug 10) interleaved with
each boundary's deadline, in time order, even when the deadline is longer than a period.
:func:`run_alarm` sleeps on the injected clock until each and tells the dispatcher.

:func:`run_refresher` refreshes exchangeInfo (and funding rates) every period in its own task,
so the network wait never sits on the write path (BMAC awaited it inside the dispatcher at the
boundary, bug 4), and sends the fresh selection to the dispatcher.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import trio

from bmac_trio.errors import RestUnavailable
from bmac_trio.recorder.events import (
    FundingRates,
    Inbox,
    PeriodDeadline,
    PeriodStart,
    SymbolsChanged,
)
from bmac_trio.recorder.rest import retrying

if TYPE_CHECKING:
    from bmac_trio.binance.exchange_info import ExchangeInfo
    from bmac_trio.binance.intervals import Interval
    from bmac_trio.clock import Clock
    from bmac_trio.recorder.rest import RestClient
    from bmac_trio.store.config import Config

__all__ = ["iter_alarms", "run_alarm", "run_refresher", "selection_message"]

log = logging.getLogger("bmac_trio.alarm")

AlarmKind = Literal["start", "deadline"]

#: Exchange ms after a boundary at which exchangeInfo is refreshed (a quarter period at most).
REFRESH_DELAY_MS = 3_000


def iter_alarms(
    after_ms: int, interval: Interval, deadline_ms: int
) -> Iterator[tuple[int, AlarmKind, int]]:
    """``(when_ms, kind, run_time_ms)`` for every boundary after ``after_ms`` and its deadline.

    Boundaries are strictly after ``after_ms``; events come in time order (a deadline that
    falls on a later boundary comes before that boundary's start).
    """
    run_time = interval.add(interval.floor(after_ms), 1)
    pending: list[tuple[int, int]] = []
    while True:
        if pending and pending[0][0] <= run_time:
            when, rt = heapq.heappop(pending)
            yield when, "deadline", rt
            continue
        yield run_time, "start", run_time
        heapq.heappush(pending, (run_time + deadline_ms, run_time))
        run_time = interval.add(run_time, 1)


async def run_alarm(
    *,
    inbox: trio.MemorySendChannel[Inbox],
    interval: Interval,
    clock: Clock,
    deadline_s: float,
) -> None:
    """Send :class:`PeriodStart` at each boundary and :class:`PeriodDeadline` after it.

    Channels:
        sends on ``inbox``, which it closes.

    Cancellation:
        at any sleep; nothing is half done.
    """
    with inbox:
        for when, kind, run_time in iter_alarms(clock.now_ms(), interval, int(deadline_s * 1000)):
            await clock.sleep_until_ms(when)
            if kind == "start":
                await inbox.send(PeriodStart(run_time_ms=run_time))
            else:
                await inbox.send(PeriodDeadline(run_time_ms=run_time))


def selection_message(info: ExchangeInfo, config: Config, run_time_ms: int) -> SymbolsChanged:
    """Filter exchangeInfo the BMAC way and wrap the result for the dispatcher."""
    from bmac_trio.binance.exchange_info import exginfo_frame, select_symbols

    selection = select_symbols(info, config.trade_type, config.keep_symbols)
    for symbol, why in selection.rejected[:20]:
        log.warning("not recording %r: %s", symbol, why)
    return SymbolsChanged(
        run_time_ms=run_time_ms,
        symbols=frozenset(s.symbol for s in selection.symbols),
        exginfo=exginfo_frame(selection.symbols),
    )


async def run_refresher(
    *,
    inbox: trio.MemorySendChannel[Inbox],
    rest: RestClient,
    config: Config,
    clock: Clock,
) -> None:
    """Every period: exchangeInfo → selection → :class:`SymbolsChanged`; funding if asked.

    A failed refresh is logged and skipped (the next period tries again); it never blocks the
    dispatcher.

    Channels:
        sends on ``inbox``, which it closes.

    Cancellation:
        at any await; a refresh cut short is simply not sent.
    """
    interval = config.interval
    with inbox:
        # a few seconds after the boundary: the closing pushes (0.2-2 s after it) and their
        # writes come first, the refresh's CPU (500 symbols to parse) after them
        delay_ms = min(REFRESH_DELAY_MS, interval.ms // 4) if interval.ms else REFRESH_DELAY_MS
        run_time = interval.add(interval.floor(clock.now_ms()), 1)
        while True:
            await clock.sleep_until_ms(run_time + delay_ms)
            try:
                info = await retrying(
                    rest.exchange_info, clock=clock, what="exchangeInfo", attempts=4
                )
                message = await trio.to_thread.run_sync(selection_message, info, config, run_time)
                await inbox.send(message)
                if config.funding_rate:
                    rates = await retrying(
                        rest.premium_index, clock=clock, what="premiumIndex", attempts=4
                    )
                    await inbox.send(FundingRates(run_time_ms=run_time, frame=rates))
            except RestUnavailable as exc:
                log.warning("refresh for %d skipped: %s", run_time, exc)
            run_time = max(
                interval.add(run_time, 1), interval.add(interval.floor(clock.now_ms()), 1)
            )
