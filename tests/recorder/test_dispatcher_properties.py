"""The dispatcher + book under hostile input, and its start on files with holes.

A real :class:`Dispatcher` on a temp directory is fed the way the listeners and fetchers feed
it: ``feed_ws`` and ``feed_rest`` run the real parsing path (``parse_ws_message`` /
``parse_klines`` + ``closed_only``) and hand what survives to the dispatcher; ``settle`` waits
(no sleeps) until every write has landed. ``tests/recorder/test_disk_failures.py`` reuses the
harness. Protocol-level properties live in ``tests/binance/test_protocol_properties.py``.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings, strategies as st

from bmac_trio.binance.protocol import KlineEvent, closed_only, parse_klines, parse_ws_message
from bmac_trio.errors import RemoteProtocolError
from bmac_trio.recorder.dispatcher import Dispatcher, run_dispatcher
from bmac_trio.recorder.events import Fetch, Inbox, Klines, SetSymbols, SymbolsChanged
from bmac_trio.store.candles import CandleStore, ExginfoStore
from bmac_trio.store.config import Config, load_config
from bmac_trio.store.layout import FLOAT_COLUMNS

M = 60_000
#: An aligned minute (2026-01-01 00:00 UTC).
T0 = 1_767_225_600_000


@dataclass(slots=True)
class FixedClock:
    """Exchange time that moves only when told to."""

    now: int
    speed: float = 1.0

    def now_ms(self) -> int:
        return self.now

    async def sleep_until_ms(self, t_ms: int) -> None:
        await trio.sleep_forever()

    def to_real(self, exchange_seconds: float) -> float:
        return exchange_seconds


def candle_values(symbol: str, open_ms: int) -> list[str]:
    """The one true candle of ``symbol`` at ``open_ms`` (o, h, l, c, v, q, n, V, Q) as strings."""
    k = (sum(map(ord, symbol)) * 7919 + open_ms // M) % 100_000
    o, c = 100 + k % 97, 100 + (k * 31) % 97
    return [
        f"{o}.5", f"{max(o, c) + 1}.25", f"{min(o, c) - 1}.75", f"{c}.5",
        f"{k}.001", f"{k * 3}.01", str(k % 500), f"{k // 2}.0005", f"{k}.5",
    ]  # fmt: skip


def ws_frame(symbol: str, open_ms: int, *, closed: bool = True) -> str:
    """A combined-stream closing kline frame as Binance sends it."""
    o, h, lo, c, v, q, n, vb, qb = candle_values(symbol, open_ms)
    k = {
        "t": open_ms, "T": open_ms + M - 1, "s": symbol, "i": "1m", "f": 1, "L": 2,
        "o": o, "c": c, "h": h, "l": lo, "v": v, "n": int(n), "x": closed, "q": q,
        "V": vb, "Q": qb, "B": "0",
    }  # fmt: skip
    data = {"e": "kline", "E": open_ms + M + 300, "s": symbol, "k": k}
    return orjson.dumps({"stream": f"{symbol.lower()}@kline_1m", "data": data}).decode()


def rest_body(symbol: str, opens: list[int]) -> bytes:
    """A klines REST answer for ``opens``."""
    rows = []
    for t in opens:
        o, h, lo, c, v, q, n, vb, qb = candle_values(symbol, t)
        rows.append([t, o, h, lo, c, v, t + M - 1, q, int(n), vb, qb, "0"])
    return orjson.dumps(rows)


def frame_of(symbol: str, opens: list[int]) -> pl.DataFrame:
    """The candle frame the dispatcher should write for ``opens``."""
    from bmac_trio.binance.protocol import candles_to_frame

    candles = parse_klines(rest_body(symbol, opens), symbol=symbol, interval="1m")
    return candles_to_frame(candles, "1m")


@dataclass(slots=True)
class Harness:
    config: Config
    clock: FixedClock
    dispatcher: Dispatcher
    inbox: trio.MemorySendChannel[Inbox]
    fetches: trio.MemoryReceiveChannel[Fetch]
    listen: trio.MemoryReceiveChannel[SetSymbols]
    bad_frames: int = 0

    async def settle(self) -> None:
        """Wait until the inbox is drained and every write has landed."""
        while True:
            await trio.testing.wait_all_tasks_blocked()
            if self.dispatcher.writing:
                await self.dispatcher.idle.wait()
                continue
            await trio.testing.wait_all_tasks_blocked()
            if not self.dispatcher.writing:
                return

    async def symbols(self, symbols: set[str]) -> None:
        # read the files first, as the recorder does at start, so that adopting them does not
        # go through a thread (settle() could not tell when it is done)
        store = self.dispatcher.store
        for symbol in symbols - set(self.dispatcher.preloaded):
            self.dispatcher.preloaded[symbol] = store.read(symbol)
        await self.inbox.send(SymbolsChanged(run_time_ms=T0, symbols=frozenset(symbols)))
        await self.settle()

    async def feed_ws(self, data: str | bytes) -> bool:
        """What a listener does with one frame; whether it reached the dispatcher."""
        try:
            event = parse_ws_message(data, interval=self.config.interval)
        except RemoteProtocolError:
            self.bad_frames += 1
            return False
        if not isinstance(event, KlineEvent) or not event.closed:
            return False
        await self.inbox.send(
            Klines(symbol=event.candle.symbol, candles=(event.candle,), source="ws", received=0.0)
        )
        return True

    async def feed_rest(self, symbol: str, body: bytes | str) -> bool:
        """What a REST fetcher does with one page for ``symbol``."""
        try:
            candles = parse_klines(body, symbol=symbol, interval=self.config.interval)
        except RemoteProtocolError:
            return False
        closed = closed_only(candles, self.config.interval, self.clock.now_ms())
        if not closed:
            return False
        await self.inbox.send(
            Klines(symbol=symbol, candles=tuple(closed), source="rest", received=0.0)
        )
        return True

    def drain_fetches(self) -> list[Fetch]:
        out = []
        while True:
            try:
                out.append(self.fetches.receive_nowait())
            except trio.WouldBlock:
                return out

    def read(self, symbol: str) -> pl.DataFrame | None:
        return self.dispatcher.store.read(symbol)


def opens_of(frame: pl.DataFrame | None) -> list[int]:
    return [] if frame is None else frame["candle_begin_time"].dt.epoch("ms").to_list()


def values_ok(symbol: str, frame: pl.DataFrame) -> bool:
    """Every row of ``frame`` equals the one true candle."""
    want = frame_of(symbol, opens_of(frame))
    return all(frame[n].to_list() == want[n].to_list() for n in FLOAT_COLUMNS)


def write_config(base: Path, **keys: Any) -> None:
    base.mkdir(parents=True, exist_ok=True)
    keys = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 50} | keys
    (base / "config.json").write_bytes(orjson.dumps(keys))


@asynccontextmanager
async def dispatching(
    base: Path, *, now_ms: int = T0 + 10 * M + 5_000, preload: bool = True, **keys: Any
) -> AsyncIterator[Harness]:
    """A running dispatcher on ``base`` (files already there are preloaded, as at start)."""
    write_config(base, **keys)
    config = load_config(base)
    clock = FixedClock(now_ms)
    store = CandleStore(
        config.candle_dir,
        config.save_type,
        config.timezone,
        config.num_candles,
        config.interval,
        trade_type=config.trade_type_name,
        durable=False,
    )
    exginfo = ExginfoStore(config.exginfo_dir, config.timezone, durable=False)
    preloaded = {s: store.read(s) for s in store.symbols_on_disk()} if preload else {}
    inbox_send, inbox_recv = trio.open_memory_channel[Inbox](64)
    fetch_send, fetch_recv = trio.open_memory_channel[Fetch](math.inf)
    listen_send, listen_recv = trio.open_memory_channel[SetSymbols](math.inf)
    dispatcher = Dispatcher(
        config=config,
        clock=clock,
        store=store,
        exginfo_store=exginfo,
        fetches=fetch_send,
        listen=listen_send,
        preloaded=preloaded,
        write_threads=2,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_dispatcher, inbox=inbox_recv, dispatcher=dispatcher))
        with inbox_send, fetch_recv, listen_recv:
            yield Harness(config, clock, dispatcher, inbox_send, fetch_recv, listen_recv)


# --- start: a file with holes (left by a recorder killed mid-history or mid-refill) ------------


async def test_start_refills_holes_left_in_files(tmp_path: Path) -> None:
    # A killed recorder can leave a file whose newest candles came from the stream while the
    # history (or a gap refill) was still in flight: on restart the holes must be fetched, not
    # only the tail after the newest candle (found by the soak: files with 38 of 200 candles).
    base = tmp_path / "data"
    write_config(base)
    now = T0 + 10 * M + 5_000  # last closed candle opens at T0 + 9M
    config = load_config(base)
    store = CandleStore(
        config.candle_dir, config.save_type, config.timezone, config.num_candles,
        config.interval, durable=False,
    )  # fmt: skip
    front = [T0 + i * M for i in range(7, 10)]  # history never landed: front hole
    inner = [T0 + i * M for i in range(-40, 10) if not 0 <= i < 5]  # a refill never landed
    whole = [T0 + i * M for i in range(-40, 10)]
    for symbol, opens in (("AAAUSDT", front), ("BBBUSDT", inner), ("CCCUSDT", whole)):
        store.write(symbol, frame_of(symbol, opens), None)
    with trio.fail_after(10):
        async with dispatching(base, now_ms=now) as h:
            await h.symbols({"AAAUSDT", "BBBUSDT", "CCCUSDT"})
            fetches = {(f.symbol, f.first_open_ms, f.last_open_ms) for f in h.drain_fetches()}
    assert ("AAAUSDT", T0 - 40 * M, T0 + 6 * M) in fetches
    assert ("BBBUSDT", T0, T0 + 4 * M) in fetches
    assert not any(f[0] == "CCCUSDT" for f in fetches)


# --- hostile input: what reaches the disk is exactly what the valid input alone puts there -----

SAFE = ("AAAUSDT", "BBBUSDT")
NOW = T0 + 45 * M + 5_000
HOSTILE_SYMBOLS = (
    "../AAAUSDT", "AAA/USDT", "..", ".", "", "AAAUSDT\x00", "A" * 300, "CCCUSDT", "aaausdt",
    "AAA\\USDT", "/etc/passwd", "AAAUSDT/../../x",
)  # fmt: skip
BAD_DECIMALS = ("NaN", "inf", "-1", "1e400", "abc", "", 5, None, "1" * 80, [], {})


@dataclass(frozen=True, slots=True)
class Step:
    """One input: a WebSocket frame, or a REST page for ``symbol``; ``valid`` if untampered."""

    kind: str
    data: str | bytes
    valid: bool
    symbol: str = ""


def _valid_ws() -> st.SearchStrategy[Step]:
    return st.builds(
        lambda s, k: Step("ws", ws_frame(s, T0 + k * M), True),
        st.sampled_from(SAFE),
        st.integers(0, 44),
    )


def _valid_rest() -> st.SearchStrategy[Step]:
    def page(symbol: str, first: int, n: int) -> Step:
        opens = [T0 + (first + i) * M for i in range(n)]
        return Step("rest", rest_body(symbol, opens), True, symbol)

    return st.builds(page, st.sampled_from(SAFE), st.integers(-40, 44), st.integers(1, 6))


def _tamper(frame: dict[str, Any], field: str, value: Any) -> str:
    k = frame["data"]["k"]
    if field in ("s", "E"):
        frame["data"][field] = value
    elif field == "stream":
        frame["stream"] = value
    elif field == "both_s":
        frame["data"]["s"] = k["s"] = value
        frame["stream"] = f"{str(value).lower()}@kline_1m"
    else:
        k[field] = value
    return json.dumps(frame)  # stdlib: writes integers of any size, as a hostile peer may


def _hostile_ws() -> st.SearchStrategy[Step]:
    base = st.builds(
        lambda s, k: ws_frame(s, T0 + k * M), st.sampled_from(SAFE), st.integers(0, 44)
    )
    truncated = st.builds(lambda text, cut: text[: int(cut * len(text))], base, st.floats(0, 0.999))
    times = st.one_of(
        st.sampled_from([-M, 1, T0 + 1, T0 + 30_000, 10**16, 2**63, 1.5e12, "1767225600000"]),
        st.integers(-(2**64), 2**64),
    )
    mutation = st.one_of(
        st.tuples(st.sampled_from(["s", "both_s", "stream"]), st.sampled_from(HOSTILE_SYMBOLS)),
        st.tuples(st.just("i"), st.sampled_from(["5m", "1h", "1M", "", None, 1])),
        st.tuples(st.sampled_from(["t", "T"]), times),
        st.tuples(st.sampled_from(list("ohlcvqVQ")), st.sampled_from(BAD_DECIMALS)),
        st.tuples(st.just("n"), st.sampled_from([-1, "5", 2**60, 1.5, None])),
        st.tuples(st.just("x"), st.sampled_from(["true", 1, None, 0])),
    )
    mutated = st.builds(lambda text, m: _tamper(orjson.loads(text), m[0], m[1]), base, mutation)
    forming = st.builds(
        lambda s, k: ws_frame(s, T0 + k * M, closed=False),
        st.sampled_from(SAFE),
        st.integers(0, 80),
    )
    garbage = st.one_of(st.binary(max_size=200), st.text(max_size=200))
    return st.builds(
        lambda data: Step("ws", data, False), st.one_of(truncated, mutated, forming, garbage)
    )


def _hostile_rest() -> st.SearchStrategy[Step]:
    def bad_row(symbol: str, k: int, index: int, value: Any) -> Step:
        rows = orjson.loads(rest_body(symbol, [T0 + k * M, T0 + (k + 1) * M]))
        rows[1][index] = value
        return Step("rest", json.dumps(rows).encode(), False, symbol)

    def descending(symbol: str, k: int) -> Step:
        return Step("rest", rest_body(symbol, [T0 + (k + 1) * M, T0 + k * M]), False, symbol)

    def truncated(symbol: str, k: int, cut: float) -> Step:
        body = rest_body(symbol, [T0 + k * M, T0 + (k + 1) * M])
        return Step("rest", body[: int(cut * len(body))], False, symbol)

    times = st.sampled_from([T0 + 1, -1, 10**16, 2**63, "1767225600000", 1.5e12])
    sym = st.sampled_from(SAFE)
    return st.one_of(
        st.builds(bad_row, sym, st.integers(-40, 40), st.sampled_from([0, 6]), times),
        st.builds(
            bad_row,
            sym,
            st.integers(-40, 40),
            st.sampled_from([1, 2, 3, 4, 5, 7, 9, 10]),
            st.sampled_from(BAD_DECIMALS),
        ),
        st.builds(
            bad_row, sym, st.integers(-40, 40), st.just(8), st.sampled_from([-1, 2**60, "5", 1.5])
        ),
        st.builds(descending, sym, st.integers(-40, 40)),
        st.builds(truncated, sym, st.integers(-40, 40), st.floats(0, 0.999)),
        st.builds(
            lambda s, data: Step("rest", data, False, s),
            sym,
            st.one_of(st.binary(max_size=100), st.just(b'{"code":-1121,"msg":"Invalid symbol."}')),
        ),
    )


async def _run(base: Path, steps: list[Step]) -> tuple[dict[str, Any], int]:
    async with dispatching(base, now_ms=NOW) as h:
        await h.symbols(set(SAFE))
        h.drain_fetches()
        for step in steps:
            if step.kind == "ws":
                await h.feed_ws(step.data)
            else:
                await h.feed_rest(step.symbol, step.data)
        await h.settle()
        return _snapshot(base, h), h.dispatcher.stats.write_errors


def _snapshot(base: Path, h: Harness) -> dict[str, Any]:
    """Every file under ``base``: data files by content, others by name."""
    out: dict[str, Any] = {}
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base).as_posix()
        if path.suffix == ".pqt":
            frame = h.read(path.stem)
            assert frame is not None, rel
            assert values_ok(path.stem, frame), rel
            out[rel] = opens_of(frame)
        else:
            out[rel] = None
    return out


@given(
    valid=st.lists(st.one_of(_valid_ws(), _valid_rest()), max_size=12),
    hostile=st.lists(st.one_of(_hostile_ws(), _hostile_rest()), min_size=1, max_size=12),
    order=st.randoms(use_true_random=False),
)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
async def test_hostile_frames_and_bodies_never_change_the_disk(
    valid: list[Step], hostile: list[Step], order: Any
) -> None:
    # a random interleaving of valid and hostile input leaves on disk exactly what the valid
    # input alone leaves, every stored candle equals the true one, and nothing appears for a
    # symbol that is not recorded (or outside the candle directory)
    steps = valid + hostile
    order.shuffle(steps)
    with tempfile.TemporaryDirectory() as tmp, trio.fail_after(30):
        mixed, errors = await _run(Path(tmp) / "mixed", steps)
        clean, _ = await _run(Path(tmp) / "clean", [s for s in steps if s.valid])
    assert errors == 0
    assert mixed == clean
    candle_dir = "usdt_perp_1m/"
    for rel in mixed:
        if rel == "config.json":
            continue
        assert rel.startswith(candle_dir), rel
        name = rel.removeprefix(candle_dir)
        assert name.split("_")[0].split(".")[0] in SAFE or name.startswith("bmac_meta"), rel


async def test_closed_kline_from_the_future_is_rejected(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with dispatching(tmp_path / "data", now_ms=NOW) as h:
            await h.symbols({"AAAUSDT"})
            h.drain_fetches()
            assert await h.feed_ws(ws_frame("AAAUSDT", T0 + 44 * M))
            await h.feed_ws(ws_frame("AAAUSDT", T0 + 10**6 * M))  # closes in 2027
            await h.settle()
            assert opens_of(h.read("AAAUSDT"))[-1] == T0 + 44 * M
