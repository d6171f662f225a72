"""Delisted symbols keep every candle they had: the final one, a history still in flight, and
the tail of a symbol delisted while the recorder was down.

Found by the day-long soak: the file kept aside in ``_delisted/`` must hold every candle the
symbol had up to its delisting, whichever moment the delisting catches the recorder in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import polars as pl
import trio

from bmac_trio.recorder.events import FetchDone, PeriodStart, SymbolsChanged
from bmac_trio.store.candles import CandleStore
from bmac_trio.store.config import load_config

from .test_dispatcher_properties import (
    T0,
    M,
    dispatching,
    frame_of,
    opens_of,
    rest_body,
    values_ok,
    write_config,
    ws_frame,
)


async def _until(h: object, predicate: Callable[[], Awaitable[bool]]) -> None:
    """Wait (no polling: woken by the dispatcher's ``on_change``) until ``predicate()``."""
    dispatcher = h.dispatcher  # type: ignore[attr-defined]
    while True:
        changed = trio.Event()
        dispatcher.on_change = changed.set
        if await predicate():
            return
        await changed.wait()


async def _until_kept_aside(h: object, symbol: str) -> None:
    """Wait until the dispatcher has moved the file of ``symbol`` into ``_delisted/``."""
    store = h.dispatcher.store  # type: ignore[attr-defined]
    aside = trio.Path(store.directory / "_delisted" / f"{symbol}.pqt")
    live = trio.Path(store.path(symbol))

    async def moved() -> bool:
        return await aside.exists() and not await live.exists()

    await _until(h, moved)


def _store(base: Path) -> CandleStore:
    config = load_config(base)
    return CandleStore(
        config.candle_dir, config.save_type, config.timezone, config.num_candles,
        config.interval, durable=False,
    )  # fmt: skip


def _aside(h: object, symbol: str) -> pl.DataFrame:
    directory = h.dispatcher.store.directory  # type: ignore[attr-defined]
    return pl.read_parquet((directory / "_delisted" / f"{symbol}.pqt").read_bytes())


async def test_delisted_symbol_keeps_its_final_candle(tmp_path: Path) -> None:
    # exchangeInfo says SETTLING from the delisting boundary on, but the closing push of the
    # last candle arrives a moment later: it must still land, in the file kept aside
    history = [T0 + i * M for i in range(-40, 10)]
    with trio.fail_after(10):
        async with dispatching(tmp_path / "data") as h:
            await h.symbols({"AAAUSDT", "BBBUSDT"})
            for fetch in h.drain_fetches():
                assert await h.feed_rest(fetch.symbol, rest_body(fetch.symbol, history))
                await h.inbox.send(FetchDone(fetch=fetch, through_open_ms=fetch.last_open_ms))
            await h.settle()
            delisted_at = T0 + 11 * M
            h.clock.now = delisted_at + 100
            await h.inbox.send(
                SymbolsChanged(run_time_ms=delisted_at, symbols=frozenset({"BBBUSDT"}))
            )
            await h.settle()
            for symbol in ("AAAUSDT", "BBBUSDT"):
                assert await h.feed_ws(ws_frame(symbol, T0 + 10 * M))
            await h.settle()
            h.clock.now = T0 + 12 * M
            await h.inbox.send(PeriodStart(run_time_ms=T0 + 12 * M))
            await h.settle()
            assert "AAAUSDT" not in h.dispatcher.book.symbols
    aside = h.dispatcher.store.directory / "_delisted" / "AAAUSDT.pqt"
    assert not h.dispatcher.store.path("AAAUSDT").exists()
    assert opens_of(pl.read_parquet(aside.read_bytes())) == [*history[1:], T0 + 10 * M]


async def test_start_moves_aside_files_of_symbols_no_longer_selected(tmp_path: Path) -> None:
    # a symbol delisted while the recorder was down (found by the soak): its file must not stay
    # among the live ones, announced by its old ready file
    base = tmp_path / "data"
    write_config(base)
    config = load_config(base)
    store = CandleStore(
        config.candle_dir, config.save_type, config.timezone, config.num_candles,
        config.interval, durable=False,
    )  # fmt: skip
    history = [T0 + i * M for i in range(-40, 10)]
    for symbol in ("AAAUSDT", "OLDUSDT"):
        assert store.write(symbol, frame_of(symbol, history), T0 + 10 * M)
    directory = config.candle_dir
    with trio.fail_after(10):
        async with dispatching(base) as h:
            changed = trio.Event()
            h.dispatcher.on_change = changed.set
            await h.symbols({"AAAUSDT"})
            while (directory / "OLDUSDT.pqt").exists():
                await changed.wait()
                changed = trio.Event()
                h.dispatcher.on_change = changed.set
    assert not (directory / "OLDUSDT.pqt").exists()
    assert not list(directory.glob("OLDUSDT_*.ready"))
    kept = pl.read_parquet((directory / "_delisted" / "OLDUSDT.pqt").read_bytes())
    assert opens_of(kept) == history
    assert (directory / "AAAUSDT.pqt").exists()


async def test_symbol_delisted_while_down_gets_its_tail_before_moving_aside(
    tmp_path: Path,
) -> None:
    # stopped at T0+5M; OLDUSDT delisted at T0+8M while down; restarted at T0+10M: the candles
    # T0+6M and T0+7M exist only on REST and must land in the file kept aside
    base = tmp_path / "data"
    write_config(base)
    store = _store(base)
    history = [T0 + i * M for i in range(-40, 6)]
    for symbol in ("AAAUSDT", "OLDUSDT"):
        assert store.write(symbol, frame_of(symbol, history), T0 + 6 * M)
    with trio.fail_after(10):
        async with dispatching(base) as h:
            await h.symbols({"AAAUSDT"})

            async def adopted() -> bool:
                return "OLDUSDT" in h.dispatcher.book.symbols

            await _until(h, adopted)
            fetches = {f.symbol: f for f in h.drain_fetches()}
            tail = fetches["OLDUSDT"]
            assert (tail.first_open_ms, tail.last_open_ms) == (T0 + 6 * M, T0 + 9 * M)
            # the period that ends meanwhile does not wait for the leaving symbol
            await h.inbox.send(PeriodStart(run_time_ms=T0 + 10 * M))
            await h.settle()
            period = h.dispatcher.book.periods[T0 + 10 * M]
            assert "OLDUSDT" not in period.expected
            assert store.path("OLDUSDT").exists()  # not moved before its tail has landed
            assert await h.feed_rest("OLDUSDT", rest_body("OLDUSDT", [T0 + 6 * M, T0 + 7 * M]))
            await h.inbox.send(FetchDone(fetch=tail, through_open_ms=T0 + 9 * M))
            await _until_kept_aside(h, "OLDUSDT")
            await h.settle()
            kept = _aside(h, "OLDUSDT")
    assert opens_of(kept) == [*history, T0 + 6 * M, T0 + 7 * M]
    assert values_ok("OLDUSDT", kept)
    assert "OLDUSDT" not in h.dispatcher.book.symbols
    assert store.path("AAAUSDT").exists()


async def test_history_in_flight_when_delisted_lands_in_the_file_kept_aside(
    tmp_path: Path,
) -> None:
    # a symbol listed, its history requested, then delisted before the history came back:
    # the history is not abandoned
    with trio.fail_after(10):
        async with dispatching(tmp_path / "data") as h:
            await h.symbols({"AAAUSDT", "NEWUSDT"})
            history = {f.symbol: f for f in h.drain_fetches()}["NEWUSDT"]
            h.clock.now = T0 + 11 * M + 100
            await h.inbox.send(
                SymbolsChanged(run_time_ms=T0 + 11 * M, symbols=frozenset({"AAAUSDT"}))
            )
            h.clock.now = T0 + 12 * M
            await h.inbox.send(PeriodStart(run_time_ms=T0 + 12 * M))
            await h.settle()
            assert "NEWUSDT" in h.dispatcher.stats.delisted
            assert "NEWUSDT" not in h.dispatcher.book.periods[T0 + 12 * M].expected
            assert "NEWUSDT" in h.dispatcher.book.symbols  # its history is still in flight
            opens = list(range(history.first_open_ms, history.last_open_ms + 1, M))
            assert await h.feed_rest("NEWUSDT", rest_body("NEWUSDT", opens))
            await h.inbox.send(FetchDone(fetch=history, through_open_ms=history.last_open_ms))
            await _until_kept_aside(h, "NEWUSDT")
            await h.settle()
            kept = _aside(h, "NEWUSDT")
    assert opens_of(kept) == opens
    assert values_ok("NEWUSDT", kept)
    assert "NEWUSDT" not in h.dispatcher.book.symbols
