"""WebSocket listeners against a tiny local server: silent connections, live resubscription."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import orjson
import trio
import trio.testing
import trio_websocket

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.binance.markets import UM
from bmac_trio.clock import TrioClock
from bmac_trio.recorder.events import SetSymbols, StreamsRefused
from bmac_trio.recorder.ws import ListenerStats, StreamPlan, WsSettings, run_ws_listeners


def test_stream_plan_is_deterministic_capped_and_sticky() -> None:
    symbols = [f"S{i:03d}USDT" for i in range(450)]
    a, b = StreamPlan(cap=200, floor=2), StreamPlan(cap=200, floor=2)
    a.update(symbols)
    b.update(reversed(symbols))
    assert a.slots == b.slots  # no salted hash: same plan in every process
    assert len(a.slots) == 3
    assert all(len(s) <= 200 for s in a.slots)
    before = [set(s) for s in a.slots]
    changed = a.update([*symbols[1:], "NEWUSDT"])  # one delisted, one listed
    assert len(changed) <= 2
    for index, members in enumerate(a.slots):
        if index not in changed:
            assert members == before[index]
    assert a.where["NEWUSDT"] in changed
    assert "S000USDT" not in a.where


def test_stream_plan_floor_and_empty() -> None:
    plan = StreamPlan(cap=200, floor=8)
    assert plan.update(["AUSDT", "BUSDT"]) <= set(range(8))
    assert len(plan.slots) == 8
    assert sorted(len(s) for s in plan.slots)[-1] <= 2
    plan.update([])
    assert all(not s for s in plan.slots)


@dataclass
class FakeServer:
    """Accepts connections; answers control frames only when ``answer`` is True."""

    answer: bool = True
    paths: list[str] = field(default_factory=list)
    controls: list[tuple[int, dict[str, object]]] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def handler(self, request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        index = len(self.paths)
        self.paths.append(request.path)
        self.poke()
        try:
            while True:
                message = orjson.loads(await ws.get_message())
                self.controls.append((index, message))
                self.poke()
                if self.answer:
                    await ws.send_message(orjson.dumps({"result": None, "id": message["id"]}))
        except trio_websocket.ConnectionClosed:
            pass

    async def wait(self, predicate: object) -> None:
        while not predicate():  # type: ignore[operator]
            await self.changed.wait()


def _changes(server: FakeServer) -> list[tuple[int, dict[str, object]]]:
    """The SUBSCRIBE / UNSUBSCRIBE frames the server received (not the LIST checks)."""
    return [c for c in server.controls if c[1]["method"] != "LIST_SUBSCRIPTIONS"]


async def _start(nursery: trio.Nursery, server: FakeServer) -> str:
    listener = await nursery.start(
        partial(trio_websocket.serve_websocket, server.handler, "127.0.0.1", 0, ssl_context=None)
    )
    return f"ws://127.0.0.1:{listener.port}"


async def test_silent_connection_is_replaced_new_before_old() -> None:
    server = FakeServer(answer=False)
    stats = ListenerStats()
    reconnects: list[str] = []
    replaced = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await _start(nursery, server)
            settings = WsSettings(
                market=UM,
                interval=parse_interval("1m"),
                ws_url=url,
                clock=TrioClock(start_ms=1_767_225_600_000),
                floor=1,
                probe_after_s=0.1,
                probe_timeout_s=0.1,
            )
            commands_send, commands = trio.open_memory_channel[SetSymbols](1)
            inbox, inbox_recv = trio.open_memory_channel[object](10)
            await nursery.start(
                partial(
                    run_ws_listeners,
                    settings=settings,
                    symbols=frozenset({"BTCUSDT"}),
                    commands=commands,
                    inbox=inbox,
                    stats=stats,
                    on_reconnect=lambda text: (reconnects.append(text), replaced.set()),
                )
            )
            await server.wait(lambda: len(server.paths) >= 2)
            await replaced.wait()  # the new connection is open and has taken over
            nursery.cancel_scope.cancel()
    assert stats.replaced.get("silent", 0) >= 1
    # each replacement reaches the alerter (which alerts when they come too often)
    assert reconnects
    assert reconnects[0] == "WebSocket connection 0 replaced (silent)"
    assert server.paths[0] == server.paths[1] == "/market/stream?streams=btcusdt@kline_1m"
    # the unanswered probe went to the first connection (after its check of the subscriptions)
    assert (0, {"method": "LIST_SUBSCRIPTIONS", "id": 2}) in server.controls
    del commands_send, inbox_recv


async def test_new_symbol_is_subscribed_on_one_connection_only() -> None:
    server = FakeServer(answer=True)
    stats = ListenerStats()
    symbols = frozenset(f"S{i:02d}USDT" for i in range(12))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await _start(nursery, server)
            settings = WsSettings(
                market=UM,
                interval=parse_interval("1m"),
                ws_url=url,
                clock=TrioClock(start_ms=1_767_225_600_000),
                floor=4,
            )
            commands_send, commands = trio.open_memory_channel[SetSymbols](1)
            inbox, inbox_recv = trio.open_memory_channel[object](10)
            await nursery.start(
                partial(
                    run_ws_listeners,
                    settings=settings,
                    symbols=symbols,
                    commands=commands,
                    inbox=inbox,
                    stats=stats,
                )
            )
            assert len(server.paths) == 4
            await commands_send.send(SetSymbols(symbols=(symbols - {"S03USDT"}) | {"NEWUSDT"}))
            await server.wait(lambda: len(_changes(server)) >= 2)
            nursery.cancel_scope.cancel()
    assert len(server.paths) == 4  # nobody reconnected
    methods = sorted((m["method"], tuple(m["params"])) for _, m in _changes(server))  # type: ignore[arg-type]
    assert methods == [("SUBSCRIBE", ("newusdt@kline_1m",)), ("UNSUBSCRIBE", ("s03usdt@kline_1m",))]
    assert len({index for index, _ in _changes(server)}) <= 2
    # each new connection asked once what it is subscribed to (a dropped stream would show)
    checks = [i for i, m in server.controls if m["method"] == "LIST_SUBSCRIPTIONS"]
    assert sorted(checks) == [0, 1, 2, 3]
    del inbox_recv


async def test_a_stream_refused_at_the_handshake_is_bisected_out() -> None:
    # a server that answers a URL naming a bad stream with HTTP 400 (as the issue saw): the
    # refused symbol is found by trial handshakes and left out, the others are streamed
    paths: list[str] = []

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        paths.append(request.path)
        if "btc-usdt" in request.path:
            await request.reject(400, body=b'{"code":-1100,"msg":"Invalid stream name."}')
            return
        ws = await request.accept()
        # as Binance: LIST_SUBSCRIPTIONS names the URL's streams (an empty list, as this server
        # answered before, says every one was dropped: a client reading the answer before the
        # test ended refused them all)
        streams = request.path.partition("streams=")[2].split("/")
        try:
            while True:
                message = orjson.loads(await ws.get_message())
                result = streams if message["method"] == "LIST_SUBSCRIPTIONS" else None
                await ws.send_message(orjson.dumps({"result": result, "id": message["id"]}))
        except trio_websocket.ConnectionClosed:
            pass

    symbols = frozenset({f"S{i:02d}USDT" for i in range(7)} | {"BTC-USDT"})
    stats = ListenerStats()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(
                partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, ssl_context=None)
            )
            settings = WsSettings(
                market=UM,
                interval=parse_interval("1m"),
                ws_url=f"ws://127.0.0.1:{listener.port}",
                clock=TrioClock(start_ms=1_767_225_600_000),
                floor=1,
            )
            commands_send, commands = trio.open_memory_channel[SetSymbols](1)
            inbox, inbox_recv = trio.open_memory_channel[object](10)
            await nursery.start(
                partial(
                    run_ws_listeners,
                    settings=settings,
                    symbols=symbols,
                    commands=commands,
                    inbox=inbox,
                    stats=stats,
                )
            )
            refused = await inbox_recv.receive()
            while stats.open < 1:
                await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert refused == StreamsRefused(symbols=frozenset({"BTC-USDT"}))
    assert stats.refused == {"BTC-USDT"}
    assert stats.trial_connects <= 2 * 3  # about two handshakes per halving of 8 streams
    assert "btc-usdt" not in paths[-1]
    assert paths[-1].count("@kline_1m") == 7
    del commands_send
