"""The REST adapter with an httpx MockTransport: 429/418, Retry-After, -1121, retries."""

from __future__ import annotations

import httpx
import orjson
import pytest
import trio
import trio.testing

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.binance.markets import UM
from bmac_trio.binance.weights import WeightBudget
from bmac_trio.clock import TrioClock
from bmac_trio.errors import RestUnavailable
from bmac_trio.recorder.events import Fetch, FetchDone, FetchFailed, Klines
from bmac_trio.recorder.rest import RestClient, retrying, run_rest_fetcher

M = 60_000
T0 = 1_767_225_600_000


def row(t: int) -> list[object]:
    return [t, "1.0", "2.0", "0.5", "1.5", "10", t + M - 1, "15", 3, "4", "6", "0"]


class Exchange:
    """A scripted answer per call: (status, body, headers); afterwards, klines for the window."""

    def __init__(self, script: list[tuple[int, object, dict[str, str]]]) -> None:
        self.script = script
        self.calls: list[tuple[float, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((trio.current_time(), str(request.url.params.get("startTime"))))
        if self.script:
            status, body, headers = self.script.pop(0)
            return httpx.Response(status, content=orjson.dumps(body), headers=headers)
        start = int(request.url.params["startTime"])
        end = int(request.url.params["endTime"])
        rows = [row(t) for t in range(start, end, M)]
        return httpx.Response(
            200, content=orjson.dumps(rows), headers={"x-mbx-used-weight-1m": "5"}
        )


def client(exchange: Exchange, clock: TrioClock, budget: WeightBudget) -> RestClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(exchange))
    return RestClient(
        http=http,
        market=UM,
        interval=parse_interval("1m"),
        base_url="http://exchange.test",
        budget=budget,
        clock=clock,
        timeout_s=5,
    )


async def test_429_then_418_wait_retry_after_and_alert_the_ban(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = TrioClock(start_ms=T0 + 5 * M + 1000)
    limited = {"code": -1003, "msg": "Too many requests"}
    exchange = Exchange(
        [
            (429, limited, {"Retry-After": "7", "x-mbx-used-weight-1m": "2400"}),
            (418, {"code": -1003, "msg": "IP banned until ..."}, {"Retry-After": "120"}),
        ]
    )
    budget = WeightBudget(2400)
    rest = client(exchange, clock, budget)
    bans: list[str] = []
    t0 = trio.current_time()
    candles = await retrying(
        lambda: rest.klines("BTCUSDT", T0, T0 + 4 * M, 5),
        clock=clock,
        what="klines BTCUSDT",
        on_ban=bans.append,
    )
    assert [c.open_ms for c in candles] == [T0 + i * M for i in range(5)]
    # 429: waited Retry-After (7 s) and the minute's end (the minute is used up: 59 s);
    # 418: waited the whole ban (120 s); then the call went through
    assert [round(t - t0) for t, _ in exchange.calls] == [0, 59, 179]
    assert rest.rate_limited == {429: 1, 418: 1}
    assert len(bans) == 1
    assert "banned" in bans[0]
    assert budget.blocked_until_ms() > 0
    await rest.http.aclose()


async def fetch_once(rest: RestClient, clock: TrioClock, fetch: Fetch) -> list[object]:
    """Run one REST fetcher on ``fetch`` alone; every message it sent to the inbox."""
    fetch_send, fetch_recv = trio.open_memory_channel[Fetch](1)
    inbox_send, inbox_recv = trio.open_memory_channel[object](10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_rest_fetcher(
                fetches=fetch_recv,
                inbox=inbox_send,
                rest=rest,
                clock=clock,  # type: ignore[arg-type]
            )
        )
        async with fetch_send:
            await fetch_send.send(fetch)
        return [m async for m in inbox_recv]


async def test_not_tradable_symbol_is_given_up_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = TrioClock(start_ms=T0 + 5 * M + 1000)
    exchange = Exchange([(400, {"code": -1122, "msg": "Invalid symbol status."}, {})])
    rest = client(exchange, clock, WeightBudget(2400))
    fetch = Fetch(symbol="NEWUSDT", first_open_ms=T0, last_open_ms=T0 + 4 * M, reason="listing")
    messages = await fetch_once(rest, clock, fetch)
    assert len(exchange.calls) == 1
    assert len(messages) == 1
    assert isinstance(messages[0], FetchFailed)
    assert "-1122" in messages[0].error
    await rest.http.aclose()


async def test_server_errors_are_retried_and_only_closed_candles_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = TrioClock(start_ms=T0 + 5 * M + 1000)  # T0+5M is forming
    error = {"code": -1000, "msg": "An unknown error occurred."}
    exchange = Exchange([(503, error, {}), (500, error, {})])
    rest = client(exchange, clock, WeightBudget(2400))
    fetch = Fetch(symbol="BTCUSDT", first_open_ms=T0, last_open_ms=T0 + 9 * M, reason="gap")
    messages = await fetch_once(rest, clock, fetch)
    assert len(exchange.calls) == 3
    klines, done = messages
    assert isinstance(klines, Klines)
    assert [c.open_ms for c in klines.candles] == [T0 + i * M for i in range(5)]
    assert done == FetchDone(fetch=fetch, through_open_ms=T0 + 4 * M, weight=1)
    await rest.http.aclose()


async def test_timeout_is_rest_unavailable(autojump_clock: trio.testing.MockClock) -> None:
    clock = TrioClock(start_ms=T0)

    async def hang(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError

    http = httpx.AsyncClient(transport=httpx.MockTransport(hang))
    budget = WeightBudget(2400)
    rest = RestClient(
        http=http, market=UM, interval=parse_interval("1m"), base_url="http://x.test",
        budget=budget, clock=clock, timeout_s=2,
    )  # fmt: skip
    with pytest.raises(RestUnavailable, match="no answer in 2"):
        await rest.get("time", None, 1)
    assert budget.used == 1  # released from flight, still counted for the minute
    await http.aclose()
