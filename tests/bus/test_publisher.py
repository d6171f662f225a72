"""The publisher alone: a slow subscriber is dropped (counted), the others get everything; the
request socket answers; the config key; ``tail``'s gap detection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import trio
import trio.lowlevel
import zmq

from bmac_trio.binance.candles import FLOAT_COLUMNS, Candle, candles_to_frame
from bmac_trio.binance.intervals import parse_interval
from bmac_trio.bus.endpoints import request_endpoint
from bmac_trio.bus.messages import (
    CandleEvent,
    CandlesReply,
    CandlesRequest,
    ErrorReply,
    LastPeriodRequest,
    PeriodEvent,
    Stamper,
    decode,
    decode_body,
    encode_request,
)
from bmac_trio.bus.publisher import BusPublisher
from bmac_trio.bus.zmq_async import recv_multipart
from bmac_trio.cli.tail import GapTracker
from bmac_trio.errors import ConfigError
from bmac_trio.store.config import parse_config

from ._procs import reap

T0 = 1_767_225_600_000
MINUTE = 60_000
IV = parse_interval("1m")


def candle(symbol: str, open_ms: int) -> Candle:
    return Candle(symbol=symbol, open_ms=open_ms, **{n: 1.0 + open_ms % 7 for n in FLOAT_COLUMNS})


@pytest.fixture
def endpoint() -> str:
    return f"ipc://@bmac-test-{os.urandom(6).hex()}.sock"  # abstract: no path-length limit


@pytest.fixture
def publisher(endpoint: str):
    pub = BusPublisher([endpoint], market="um", interval=IV, hwm=200, sndbuf=4096)
    pub.open()
    yield pub
    pub.close()


def subscriber(ctx: zmq.Context, endpoint: str, *, rcvhwm: int = 100_000) -> zmq.Socket:
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.setsockopt(zmq.SUBSCRIBE, b"candle.")
    sock.connect(endpoint)
    return sock


async def test_slow_subscriber_is_dropped_and_counted_the_others_get_everything(
    publisher: BusPublisher, endpoint: str
):
    ctx = zmq.Context()
    fast = subscriber(ctx, endpoint)
    slow = subscriber(ctx, endpoint, rcvhwm=1)  # never reads
    try:
        with trio.fail_after(20):
            # both connected: a probe reaches the fast one (the slow one gets it too)
            publisher.candles("PROBE", [candle("PROBE", T0)], source="ws", received=0.0)
            while not fast.poll(10):
                publisher.candles("PROBE", [candle("PROBE", T0)], source="ws", received=0.0)
                await trio.lowlevel.checkpoint()
            while fast.poll(0):
                fast.recv_multipart()
            got: list[int] = []
            for batch in range(200):
                for i in range(5):  # within the fast one's HWM
                    t = T0 + (batch * 5 + i) * MINUTE
                    publisher.candles("BTCUSDT", [candle("BTCUSDT", t)], source="ws", received=0.0)
                want = len(got) + 5
                while len(got) < want:
                    got.append(decode(await recv_multipart(fast)).header.topic_seq)
        assert publisher.stats.dropped > 0  # the slow one fell behind and was dropped from
        assert got == list(range(got[0], got[0] + 1000))  # the fast one lost nothing
    finally:
        fast.close()
        slow.close()
        ctx.term()


async def request(endpoint: str, data: bytes):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(request_endpoint(endpoint))
        sock.send_multipart([b"", data])
        with trio.fail_after(10):
            frames = await recv_multipart(sock)
    finally:
        sock.close()
        ctx.term()
    assert frames[0] == b""
    return decode_body(decode(frames[1:]))


async def test_request_socket_answers_candles_since_and_the_last_period(
    publisher: BusPublisher, endpoint: str
):
    on_disk = candles_to_frame([candle("AUSDT", T0 + i * MINUTE) for i in range(5)], IV)
    pending = [candle("AUSDT", T0 + 5 * MINUTE)]
    publisher.frame_source = lambda symbols: {"AUSDT": (on_disk, pending), "BUSDT": (None, [])}
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        reply = await request(endpoint, encode_request(LastPeriodRequest()))
        assert isinstance(reply, ErrorReply)  # nothing reported yet
        reply = await request(
            endpoint, encode_request(CandlesRequest(symbols=None, since_ms=T0 + 3 * MINUTE))
        )
        assert isinstance(reply, CandlesReply)
        opens = reply.candles["candle_begin_time"].dt.epoch("ms").to_list()
        assert opens == [T0 + 3 * MINUTE, T0 + 4 * MINUTE, T0 + 5 * MINUTE]  # disk + pending
        assert set(reply.candles["symbol"]) == {"AUSDT"}
        publisher.candles("AUSDT", pending, source="ws", received=0.0)
        publisher.period(
            run_time_ms=T0 + 6 * MINUTE,
            ready=["AUSDT"],
            missing=["BUSDT"],
            complete=False,
            lag_s=None,
            last_received=None,
        )
        reply = await request(endpoint, encode_request(LastPeriodRequest()))
        assert isinstance(reply, PeriodEvent)
        assert reply.missing == ("BUSDT",)
        assert reply.candles["close"].to_list() == [pending[0].close]
        reply = await request(endpoint, b"garbage")
        assert isinstance(reply, ErrorReply)
        nursery.cancel_scope.cancel()


def test_publish_config_key(tmp_path: Path):
    base = {"interval": "1m", "trade_type": "usdt_perp"}
    default = parse_config(base, base_dir=tmp_path)
    assert default.publish_endpoints == (f"ipc://{tmp_path.resolve() / 'bmac.sock'}",)
    assert parse_config(base | {"publish": False}, base_dir=tmp_path).publish_endpoints == ()
    both = ["ipc:///tmp/x.sock", "tcp://127.0.0.1:6010"]
    assert parse_config(base | {"publish": both}, base_dir=tmp_path).publish_endpoints == tuple(
        both
    )
    long = parse_config(base, base_dir=tmp_path / ("d" * 120)).publish_endpoints[0]
    assert long.startswith("ipc://@bmac-")  # too long for a Unix socket path: abstract
    for bad in ([], "ipc:///x", ["udp://x:1"], ["tcp://host"], ["ipc://" + "p" * 200], [1]):
        with pytest.raises(ConfigError, match="publish"):
            parse_config(base | {"publish": bad}, base_dir=tmp_path)


def test_tail_flags_gaps_and_new_epochs():
    stamper = Stamper("one")

    def event(symbol: str) -> CandleEvent:
        return CandleEvent(candle=candle(symbol, T0), end_ms=T0 + MINUTE, source="ws")

    msgs = [stamper.candle(event(s), now_us=0) for s in ["A", "B", "A", "B", "A"]]
    tracker = GapTracker(by_topic=False)
    notes = [tracker.check(m) for m in msgs[:2] + msgs[3:]]
    assert notes[:2] == [[], []]
    assert "GAP: 1 messages lost" in notes[2][0]
    by_topic = GapTracker(by_topic=True)  # filtering candle.A: B's messages are not a gap
    assert [by_topic.check(m) for m in msgs if m.topic == "candle.A"] == [[], [], []]
    other = Stamper("two").candle(event("A"), now_us=0)
    assert "NEW EPOCH" in tracker.check(other)[0]


async def test_a_period_is_announced_once_every_expected_candle_is_accepted(
    publisher: BusPublisher, endpoint: str
):
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"period")
    sub.connect(endpoint)
    try:
        with trio.fail_after(10):
            while not sub.poll(10):  # connected once a probe period gets through
                publisher.period(
                    run_time_ms=T0,
                    ready=[],
                    missing=[],
                    complete=True,
                    lag_s=None,
                    last_received=None,
                )
                await trio.lowlevel.checkpoint()
            while sub.poll(0):
                sub.recv_multipart()
            run_time = T0 + 2 * MINUTE
            expected = frozenset({"AUSDT", "BUSDT"})
            publisher.candles("AUSDT", [candle("AUSDT", T0 + MINUTE)], source="ws", received=0.0)
            publisher.period_started(run_time, expected)  # B's candle is still due
            assert not sub.poll(50)
            publisher.candles("BUSDT", [candle("BUSDT", T0 + MINUTE)], source="ws", received=0.0)
            publisher.arrived(run_time, "BUSDT", expected)
            publisher.arrived(run_time, "BUSDT", expected)  # a duplicate announces nothing
            event = decode_body(decode(await recv_multipart(sub)))
            assert not sub.poll(50)
    finally:
        sub.close(linger=0)
        ctx.term()
    assert isinstance(event, PeriodEvent)
    assert (event.run_time_ms, event.complete, event.on_disk) == (run_time, True, False)
    assert event.ready == ("AUSDT", "BUSDT")
    assert event.candles["symbol"].to_list() == ["AUSDT", "BUSDT"]


async def test_tail_prints_live_messages_as_json(publisher: BusPublisher, endpoint: str):
    cmd = [sys.executable, "-c", "from bmac_trio.cli import main; main()", "tail", endpoint]
    cmd += ["--topic", "candle.BTCUSDT", "--json", "--count", "3"]
    process = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE)
    assert process.stdout is not None
    try:
        with trio.fail_after(60):
            out = b""
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    nonlocal out
                    async for chunk in process.stdout:
                        out += chunk
                    nursery.cancel_scope.cancel()

                nursery.start_soon(read)
                t = T0
                while True:  # until tail has connected, read three and exited
                    for symbol in ("ETHUSDT", "BTCUSDT"):
                        publisher.candles(symbol, [candle(symbol, t)], source="ws", received=0.0)
                    t += MINUTE
                    await trio.sleep(0.05)
        assert await process.wait() == 0
    finally:
        await reap(process)
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    assert {line["symbol"] for line in lines} == {"BTCUSDT"}
    assert [line["topic_seq"] for line in lines] == list(
        range(lines[0]["topic_seq"], lines[0]["topic_seq"] + 3)
    )


def test_a_period_goes_out_at_its_first_report_and_once_complete(publisher: BusPublisher):
    def report(complete: bool) -> None:
        publisher.period(
            run_time_ms=T0, ready=["AUSDT"], missing=[] if complete else ["BUSDT"],
            complete=complete, lag_s=None, last_received=None,
        )  # fmt: skip

    report(False)  # the deadline: published
    report(False)  # a late symbol written, another still missing: not published
    report(True)  # complete: published
    assert publisher.stats.sent == 2


async def test_a_history_page_keeps_only_the_newest_periods_for_period_messages(publisher) -> None:
    # 1500 candles x 500 symbols kept as events until the first period held ~300 MB
    page = [candle("BTCUSDT", T0 + i * MINUTE) for i in range(1500)]
    publisher.candles("BTCUSDT", page, source="rest", received=trio.current_time())
    kept = publisher._recent["BTCUSDT"]
    assert sorted(kept) == [c.open_ms for c in page[-3:]]
    # the period of the newest candle is still published with that candle
    run_time = page[-1].open_ms + MINUTE
    publisher.period(
        run_time_ms=run_time,
        ready=["BTCUSDT"],
        missing=[],
        complete=True,
        lag_s=0.01,
        last_received=None,
    )
    assert publisher.last_period is not None
    assert publisher.last_period.candles.height == 1
