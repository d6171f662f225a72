"""REST: the httpx adapter, the weight gate, and the fetcher tasks.

:class:`RestClient` is the only place that touches httpx. It translates every httpx error, a
timeout (imposed with ``trio.fail_after``, real seconds: it is about the network) and every
error status into our own classes (``errors``): 429/418 → :class:`RateLimited` (the shared
:class:`~bmac_trio.binance.weights.WeightBudget` is told, so every worker pauses, not only this),
5xx/408/connection errors → :class:`RestUnavailable` (retried with backoff), other 4xx →
:class:`RestUnavailable` that is *not* retried (a -1121/-1122 "symbol not tradable" must not loop
forever, BMAC bug 1/8). Before each call the budget is asked for the request's weight, so the
recorder never goes above 90 % of the minute's weight, in the history and the live phase alike.

:func:`run_rest_fetcher` workers turn :class:`~bmac_trio.recorder.events.Fetch` commands into klines
requests planned by ``_planner`` (weight-optimal pages) and send only *closed* candles back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import trio

from bmac_trio.binance.protocol import (
    Candle,
    FundingRate,
    closed_only,
    klines_params,
    parse_error_body,
    parse_klines,
    parse_premium_index,
    parse_retry_after,
    parse_weight_headers,
)
from bmac_trio.errors import RateLimited, RemoteProtocolError, RestUnavailable
from bmac_trio.recorder.events import Fetch, FetchDone, FetchFailed, Inbox, Klines

if TYPE_CHECKING:
    from bmac_trio.binance.exchange_info import ExchangeInfo
    from bmac_trio.binance.intervals import Interval
    from bmac_trio.binance.markets import Market
    from bmac_trio.binance.weights import WeightBudget
    from bmac_trio.clock import Clock
    from bmac_trio.ops.metrics import Metrics

__all__ = ["NOT_TRADABLE_CODES", "RestClient", "retrying", "run_rest_fetcher"]

log = logging.getLogger("bmac_trio.rest")
T = TypeVar("T")

#: Binance codes for "this symbol cannot be asked for": never retried.
NOT_TRADABLE_CODES = frozenset({-1121, -1122})
#: Klines bodies at least this long are parsed in a worker thread.
PARSE_IN_THREAD_BYTES = 16_384
#: Backoff for 5xx / connection errors, exchange seconds.
BACKOFF_START_S = 0.2
BACKOFF_MAX_S = 5.0
#: Fetches retried until they succeed: the candles a period or a file lacks.
UNTIL_DONE = frozenset({"deadline", "gap"})


def _retryable(exc: RestUnavailable) -> bool:
    return exc.status == 0 or exc.status == 408 or exc.status >= 500


class RestClient:
    """Binance's public REST endpoints for one market, gated by a shared weight budget.

    Args:
        http: the injected client (tests may pass a ``MockTransport``).
        market: which market's paths and weights.
        interval: the kline interval.
        base_url: scheme, host and port; Binance's paths are appended.
        budget: the weight budget shared by every worker of this process.
        clock: exchange time (the weight window is an exchange minute).
        timeout_s: real seconds a single call may take.
        metrics: optional counters (``rest_weight``).
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        market: Market,
        interval: Interval,
        base_url: str,
        budget: WeightBudget,
        clock: Clock,
        timeout_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.http = http
        self.market = market
        self.interval = interval
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.clock = clock
        self.timeout_s = timeout_s
        self.metrics = metrics
        #: Weight this client has spent (its own requests), for reports and tests.
        self.weight_spent = 0
        self.requests = 0
        #: The highest X-MBX-USED-WEIGHT-1M the exchange reported, and the 429/418s met.
        self.max_used_weight = 0
        self.rate_limited: dict[int, int] = {}

    async def get(self, endpoint: str, params: dict[str, str] | None, weight: int) -> bytes:
        """GET ``<base><prefix>/<endpoint>`` after reserving ``weight``; the body on 2xx.

        Raises:
            RateLimited: 429 or 418 (``banned``), with Retry-After.
            RestUnavailable: anything else that is not a 2xx.
        """
        while True:
            now = self.clock.now_ms()
            wait_ms = self.budget.reserve(weight, now)
            if wait_ms <= 0:
                break
            log.debug("weight budget full: waiting %.1f s", wait_ms / 1000)
            await self.clock.sleep_until_ms(now + wait_ms)
        url = f"{self.base_url}{self.market.rest_prefix}/{endpoint}"
        self.weight_spent += weight
        self.requests += 1
        if self.metrics is not None:
            self.metrics.rest_call(weight)
        try:
            with trio.fail_after(self.timeout_s):
                response = await self.http.get(url, params=params)
        except BaseException as exc:
            self.budget.release(weight)  # never answered: no longer in flight
            if isinstance(exc, trio.TooSlowError):
                raise RestUnavailable(f"GET {endpoint}: no answer in {self.timeout_s} s") from None
            if isinstance(exc, httpx.HTTPError):
                raise RestUnavailable(f"GET {endpoint}: {type(exc).__name__}: {exc}") from exc
            raise
        now = self.clock.now_ms()
        used = parse_weight_headers(response.headers)
        self.budget.note_used(used, now, reserved=weight)
        if used is not None:
            self.max_used_weight = max(self.max_used_weight, used)
            if self.metrics is not None:
                self.metrics.rest_weight_used(used)
        status = response.status_code
        if status in (418, 429):
            retry_after = parse_retry_after(response.headers)
            retry_after = 60.0 if retry_after is None else retry_after
            banned = status == 418
            self.rate_limited[status] = self.rate_limited.get(status, 0) + 1
            if self.metrics is not None:
                self.metrics.rate_limited(banned)
            self.budget.on_rate_limited(retry_after, banned, now)
            code, msg = parse_error_body(response.content)
            raise RateLimited(
                f"GET {endpoint}: HTTP {status} {code} {msg}",
                retry_after=retry_after,
                banned=banned,
            )
        if status >= 400:
            code, msg = parse_error_body(response.content)
            raise RestUnavailable(
                f"GET {endpoint}: HTTP {status} {code} {msg}", status=status, code=code
            )
        return response.content

    async def klines(self, symbol: str, start_ms: int, end_ms: int, limit: int) -> list[Candle]:
        """Candles opening from ``start_ms`` to ``end_ms`` (included), forming one included."""
        params = klines_params(self.market, symbol, self.interval, start_ms, end_ms, limit)
        body = await self.get("klines", params, self.market.kline_weight(limit))
        if len(body) < PARSE_IN_THREAD_BYTES:
            return parse_klines(body, symbol=symbol, interval=self.interval)
        # a history page (up to 1500 rows) takes milliseconds to check: not on the event loop
        return await trio.to_thread.run_sync(
            partial(parse_klines, body, symbol=symbol, interval=self.interval)
        )

    async def exchange_info(self) -> ExchangeInfo:
        """The market's exchangeInfo, parsed."""
        from bmac_trio.binance.exchange_info import parse_exchange_info

        body = await self.get("exchangeInfo", None, self.market.exchange_info_weight)
        # hundreds of symbols with their filters: parsed off the event loop
        return await trio.to_thread.run_sync(parse_exchange_info, body, self.market)

    async def premium_index(self) -> list[FundingRate]:
        """Every symbol's premiumIndex (weight 10): the current funding rates."""
        return parse_premium_index(await self.get("premiumIndex", None, 10))


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    clock: Clock,
    what: str,
    attempts: int | None = None,
    on_ban: Callable[[str], None] | None = None,
) -> T:
    """Run ``call`` until it succeeds, retrying only :class:`RateLimited` and transient errors.

    RateLimited waits Retry-After (exchange seconds, as the server counts them); 5xx, timeouts
    and connection errors back off exponentially, up to :data:`BACKOFF_MAX_S` exchange seconds
    (an outage is the exchange's: against an accelerated simulator, the retries keep pace
    with its clock). Any other :class:`RestUnavailable` (a 4xx such as -1121) is raised at
    once; ``attempts=None`` retries the transient errors for as long as it takes.

    Raises:
        RestUnavailable: not retryable, or ``attempts`` exhausted.
    """
    backoff = BACKOFF_START_S
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except RateLimited as exc:
            if exc.banned:
                log.error("%s: IP BANNED (418), waiting %.0f s: %s", what, exc.retry_after, exc)
                if on_ban is not None:
                    on_ban(f"{what}: IP banned for {exc.retry_after:.0f} s: {exc}")
            else:
                log.warning("%s: rate limited (429), waiting %.0f s", what, exc.retry_after)
            await clock.sleep_until_ms(clock.now_ms() + int(exc.retry_after * 1000))
        except (RestUnavailable, RemoteProtocolError) as exc:
            retryable = isinstance(exc, RemoteProtocolError) or _retryable(exc)
            if not retryable or (attempts is not None and attempt >= attempts):
                if isinstance(exc, RemoteProtocolError):
                    raise RestUnavailable(f"{what}: malformed answer: {exc}") from exc
                raise
            log.warning("%s: %s; retrying in %.1f s", what, exc, backoff)
            await trio.sleep(clock.to_real(backoff))
            backoff = min(backoff * 2, BACKOFF_MAX_S)


async def run_rest_fetcher(
    *,
    fetches: trio.MemoryReceiveChannel[Fetch],
    inbox: trio.MemorySendChannel[Inbox],
    rest: RestClient,
    clock: Clock,
    attempts: int = 8,
    on_ban: Callable[[str], None] | None = None,
) -> None:
    """A REST worker: carry out :class:`Fetch` commands until the channel closes.

    Each fetch is split by ``_planner.plan_klines`` into weight-optimal requests; only closed
    candles (at the clock's now) are sent on. It ends with :class:`FetchDone` or, when the
    symbol is not tradable or retries ran out, :class:`FetchFailed`. Retries never run out
    for the candles a period or a file lacks (``deadline`` and ``gap`` fetches): while the
    exchange is down they go on backing off (the weight budget still gates each one), so a
    missed period completes within seconds of its return, not a period later.

    Channels:
        receives on ``fetches`` (a clone per worker); sends on ``inbox``, which it closes.

    Cancellation:
        safe at any point: a cancelled fetch is simply not reported (its candles, if any
        were sent, are merged by the dispatcher as usual).
    """
    from bmac_trio.binance.planner import plan_klines

    interval = rest.interval
    with inbox, fetches:
        async for fetch in fetches:
            last_closed = interval.last_closed_open(clock.now_ms())
            last = min(fetch.last_open_ms, last_closed)
            spent = 0  # this fetch's own pages (other workers share the client)
            try:
                if last >= fetch.first_open_ms:
                    plan = plan_klines(
                        rest.market, interval, first_open_ms=fetch.first_open_ms, last_open_ms=last
                    )
                    tries = None if fetch.reason in UNTIL_DONE else attempts
                    for request in plan:
                        await _fetch_page(fetch, request, inbox, rest, clock, tries, on_ban)
                        spent += request.weight
            except RestUnavailable as exc:
                level = logging.INFO if exc.code in NOT_TRADABLE_CODES else logging.WARNING
                log.log(level, "giving up %s %s: %s", fetch.reason, fetch.symbol, exc)
                await inbox.send(FetchFailed(fetch=fetch, error=str(exc)))
                continue
            through = last if last >= fetch.first_open_ms else None
            await inbox.send(FetchDone(fetch=fetch, through_open_ms=through, weight=spent))


async def _fetch_page(
    fetch: Fetch,
    request: Any,
    inbox: trio.MemorySendChannel[Inbox],
    rest: RestClient,
    clock: Clock,
    attempts: int | None,
    on_ban: Callable[[str], None] | None,
) -> None:
    async def call() -> list[Candle]:
        return await rest.klines(fetch.symbol, request.start_ms, request.end_ms, request.limit)

    candles = await retrying(
        call, clock=clock, what=f"klines {fetch.symbol}", attempts=attempts, on_ban=on_ban
    )
    closed = closed_only(candles, rest.interval, clock.now_ms())
    log.debug("page %s %s: %d rows, %d closed", fetch.symbol, request, len(candles), len(closed))
    if closed:
        await inbox.send(
            Klines(
                symbol=fetch.symbol,
                candles=tuple(closed),
                source="rest",
                received=trio.current_time(),
            )
        )
