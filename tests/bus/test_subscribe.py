"""``bmac_kit.subscribe`` against a publisher in this process, under trio and under asyncio:
the window starts from the request socket, live candles land, a lost message is healed and the
period it took is rebuilt from the window."""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, aclosing

import anyio
import polars as pl
import trio

import bmac_kit
from bmac_trio.binance.candles import FLOAT_COLUMNS, Candle, candles_to_frame
from bmac_trio.binance.intervals import parse_interval
from bmac_trio.bus.publisher import BusPublisher

T0 = 1_767_225_600_000
MINUTE = 60_000
IV = parse_interval("1m")
SYMBOLS = ("AUSDT", "BUSDT")


def candle(symbol: str, open_ms: int) -> Candle:
    base = 1.0 + (open_ms // MINUTE) % 13 + len(symbol)
    return Candle(symbol=symbol, open_ms=open_ms, **{n: base for n in FLOAT_COLUMNS})


class Market:
    """The recorder's side, driven by hand: candles in memory, published on demand."""

    def __init__(self) -> None:
        self.endpoint = f"ipc://@bmac-test-{os.urandom(6).hex()}.sock"
        self.pub = BusPublisher([self.endpoint], market="um", interval=IV)
        self.candles: dict[str, list[Candle]] = {
            s: [candle(s, T0 + i * MINUTE) for i in range(5)] for s in SYMBOLS
        }
        #: Each symbol's newest candles published but not written yet (absent from the truth
        #: a heal reads): the recorder publishes a candle before its write lands.
        self.unwritten = 0
        self.pub.frame_source = lambda symbols: {
            s: (candles_to_frame(c[: len(c) - self.unwritten], IV), [])
            for s, c in self.candles.items()
        }

    def close_period(self, run_time: int, *, publish: bool = True) -> None:
        for symbol in self.candles:
            c = candle(symbol, run_time - MINUTE)
            self.candles[symbol].append(c)
            if publish:
                self.pub.candles(symbol, [c], source="ws", received=0.0)
            else:
                self.pub.stamper.seq += 1  # published, and lost on the way
        if publish:
            self.pub.period(
                run_time_ms=run_time,
                ready=tuple(self.candles),
                missing=(),
                complete=True,
                lag_s=0.001,
                last_received=0.0,
            )
        else:
            self.pub.stamper.seq += 1

    def truth(self) -> pl.DataFrame:
        return pl.concat(
            candles_to_frame(c, IV).with_columns(symbol=pl.lit(s)) for s, c in self.candles.items()
        )


async def scenario(market: Market) -> None:
    seen: list[str] = []
    async with bmac_kit.subscribe(market.endpoint) as sub, AsyncExitStack() as stack:
        assert sorted(sub.window.symbols()) == list(SYMBOLS)
        assert sub.window.frame("AUSDT").height == 5
        sub.on_candle(lambda ev: seen.append(ev.symbol))
        periods = await stack.enter_async_context(aclosing(sub.periods()))
        run_time = T0 + 6 * MINUTE
        market.close_period(run_time)
        first = await anext(periods)
        assert (first.run_time_ms, first.healed, first.complete) == (run_time, False, True)
        assert first.candles.height == 2
        market.close_period(run_time + MINUTE, publish=False)  # lost on the wire
        market.close_period(run_time + 2 * MINUTE)
        healed = await anext(periods)
        assert (healed.run_time_ms, healed.healed) == (run_time + MINUTE, True)
        assert sorted(healed.candles["symbol"].to_list()) == list(SYMBOLS)
        after = await anext(periods)
        assert (after.run_time_ms, after.healed) == (run_time + 2 * MINUTE, False)
        assert (sub.stats.gaps, sub.stats.lost) == (1, 3)
        truth = market.truth()
        for symbol in SYMBOLS:
            want = truth.filter(pl.col("symbol") == symbol).drop("symbol")
            assert sub.window.frame(symbol).equals(want), symbol
        assert seen.count("AUSDT") == 2  # the two live candles, not the healed one


async def heal_behind_the_writes(market: Market) -> None:
    """The re-check heal at the first period reads a truth without that period's candles."""
    async with bmac_kit.subscribe(market.endpoint) as sub, AsyncExitStack() as stack:
        periods = await stack.enter_async_context(aclosing(sub.periods()))
        market.unwritten = 1
        run_time = T0 + 6 * MINUTE
        market.close_period(run_time)
        assert (await anext(periods)).run_time_ms == run_time
        while sub.stats.heals < 1:  # the heal the period asked for is done
            await sub._healed.wait()
        market.close_period(run_time + MINUTE)
        assert (await anext(periods)).run_time_ms == run_time + MINUTE
        truth = market.truth()
        keep = sub.window.num_candles  # the publisher's candles a symbol when it healed
        for symbol in SYMBOLS:
            want = truth.filter(pl.col("symbol") == symbol).drop("symbol").tail(keep)
            held = sub.window.frame(symbol)
            opens = [(t - T0) // MINUTE for t in held["candle_begin_time"].dt.epoch("ms")]
            assert opens == list(range(7 - keep, 7)), symbol
            assert held.equals(want), symbol


async def heal_after_a_delisting(market: Market) -> None:
    """A heal replays the last periods' live candles, but not those of a delisted symbol."""
    market.pub.symbols(SYMBOLS)
    async with bmac_kit.subscribe(market.endpoint) as sub, AsyncExitStack() as stack:
        periods = await stack.enter_async_context(aclosing(sub.periods()))
        run_time = T0 + 6 * MINUTE
        market.close_period(run_time)
        assert (await anext(periods)).run_time_ms == run_time
        del market.candles["BUSDT"]
        market.pub.symbols(["AUSDT"])
        market.close_period(run_time + MINUTE, publish=False)  # lost: a heal follows
        market.close_period(run_time + 2 * MINUTE)
        healed = await anext(periods)
        assert (healed.run_time_ms, healed.healed) == (run_time + MINUTE, True)
        assert healed.ready == ("AUSDT",)
        assert (await anext(periods)).run_time_ms == run_time + 2 * MINUTE
        assert sub.window.symbols() == ["AUSDT"]
        assert sub.stats.heals >= 1


async def run_with_publisher(
    market: Market, steps: Callable[[Market], Awaitable[None]] = scenario
) -> None:
    """The publisher's tasks under trio, in this thread; the subscriber runs ``steps``."""
    market.pub.open()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(market.pub.run)
            with trio.fail_after(20):
                await steps(market)
            nursery.cancel_scope.cancel()
    finally:
        market.pub.close()


async def test_subscribe_under_trio_heals_a_lost_period():
    await run_with_publisher(Market())


async def test_a_heal_keeps_the_live_candles_its_truth_does_not_hold_yet():
    await run_with_publisher(Market(), heal_behind_the_writes)


async def test_a_heal_does_not_bring_back_a_delisted_symbol():
    await run_with_publisher(Market(), heal_after_a_delisting)


def test_subscribe_under_asyncio_heals_a_lost_period():
    # the publisher lives in a trio thread (its sockets are used there only); the subscriber
    # runs under asyncio here; each publishing step is handed to the publisher's thread
    market = Market()
    market.pub.open()
    tokens: list[trio.lowlevel.TrioToken] = []
    ready = threading.Event()
    done = threading.Event()

    async def publisher_thread() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(market.pub.run)
            tokens.append(trio.lowlevel.current_trio_token())
            ready.set()
            await trio.to_thread.run_sync(done.wait)
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(publisher_thread,))
    thread.start()
    close_here = market.close_period

    def close_there(run_time: int, *, publish: bool = True) -> None:
        trio.from_thread.run_sync(
            lambda: close_here(run_time, publish=publish), trio_token=tokens[0]
        )

    market.close_period = close_there  # type: ignore[method-assign]

    async def main() -> None:
        with anyio.fail_after(20):
            await scenario(market)

    try:
        assert ready.wait(10)
        anyio.run(main, backend="asyncio")
    finally:
        done.set()
        thread.join(10)
        market.pub.close()
