"""The listeners' WebSocket client against a raw wsproto server on 127.0.0.1: what the server
sends in one write comes out of one read, pings are answered, closes end the reading."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
import wsproto
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from bmac_trio.errors import WsDisconnected
from bmac_trio.recorder import ws_client
from bmac_trio.recorder.ws_client import WsClient, WsRejected

Script = Callable[[trio.SocketStream, wsproto.WSConnection], Awaitable[None]]


async def _events(stream: trio.SocketStream, ws: wsproto.WSConnection) -> list[object]:
    data = await stream.receive_some(65_536)
    ws.receive_data(data or None)
    return list(ws.events())


async def _accept(stream: trio.SocketStream) -> wsproto.WSConnection:
    ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    while True:
        for event in await _events(stream, ws):
            if isinstance(event, Request):
                await stream.send_all(ws.send(AcceptConnection()))
                return ws


async def _serve(nursery: trio.Nursery, script: Script) -> int:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            await script(stream, await _accept(stream))

    [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listener.socket.getsockname()[1]


async def _client(port: int) -> tuple[trio.SocketStream, WsClient]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        return stream, await WsClient.connect(stream, f"127.0.0.1:{port}", "/stream")
    except BaseException:
        await stream.aclose()
        raise


async def test_one_write_of_many_frames_is_one_read_and_fragments_are_joined() -> None:
    async def script(stream: trio.SocketStream, ws: wsproto.WSConnection) -> None:
        frames = b"".join(ws.send(TextMessage(data=f"m{i}")) for i in range(50))
        frames += ws.send(TextMessage(data="hal", message_finished=False))
        frames += ws.send(TextMessage(data="ves"))
        frames += ws.send(BytesMessage(data=b"\x00raw"))
        await stream.send_all(frames)
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            stream, client = await _client(await _serve(nursery, script))
            got: list[str | bytes] = []
            while len(got) < 52:
                got += await client.receive()
            assert got == [f"m{i}" for i in range(50)] + ["halves", b"\x00raw"]
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_a_ping_is_answered_while_reading_and_a_close_ends_the_reading() -> None:
    seen: list[object] = []

    async def script(stream: trio.SocketStream, ws: wsproto.WSConnection) -> None:
        await stream.send_all(ws.send(Ping(payload=b"are you there")))
        while not any(isinstance(e, Pong) for e in seen):
            seen.extend(await _events(stream, ws))
        await stream.send_all(ws.send(TextMessage(data="after the pong")))
        await stream.send_all(ws.send(CloseConnection(code=1001, reason="going away")))
        seen.extend(await _events(stream, ws))  # the client's answer to the close

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            stream, client = await _client(await _serve(nursery, script))
            async with stream:
                assert await client.receive() == ["after the pong"]
                assert await client.receive() == []
                assert client.closed
                with pytest.raises(WsDisconnected):
                    await client.send_text("too late")
            nursery.cancel_scope.cancel()
    pong = next(e for e in seen if isinstance(e, Pong))
    assert pong.payload == b"are you there"
    assert any(isinstance(e, CloseConnection) and e.code == 1001 for e in seen)


async def test_a_dropped_connection_ends_the_reading_and_our_close_is_sent() -> None:
    closes: list[CloseConnection] = []

    async def dropper(stream: trio.SocketStream, ws: wsproto.WSConnection) -> None:
        await stream.send_all(ws.send(TextMessage(data="bye")))  # then the socket is closed

    async def listener(stream: trio.SocketStream, ws: wsproto.WSConnection) -> None:
        while not closes:
            closes.extend(e for e in await _events(stream, ws) if isinstance(e, CloseConnection))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            stream, client = await _client(await _serve(nursery, dropper))
            async with stream:
                assert await client.receive() == ["bye"]
                assert await client.receive() == []  # EOF without a close frame
                await client.close()  # nothing to send on a dead connection: no error
            stream, client = await _client(await _serve(nursery, listener))
            async with stream:
                await client.close()
                assert client.closed
            nursery.cancel_scope.cancel()
    assert [c.code for c in closes] == [1000]


async def test_a_message_over_the_limit_closes_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ws_client, "MAX_MESSAGE_BYTES", 100)

    async def script(stream: trio.SocketStream, ws: wsproto.WSConnection) -> None:
        for _ in range(3):
            await stream.send_all(ws.send(TextMessage(data="x" * 60, message_finished=False)))
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            stream, client = await _client(await _serve(nursery, script))
            async with stream:
                assert await client.receive() == []
                assert client.closed
            nursery.cancel_scope.cancel()


async def test_a_refused_handshake_carries_its_status() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
            while not any(isinstance(e, Request) for e in await _events(stream, ws)):
                pass
            await stream.send_all(ws.send(RejectConnection(status_code=400)))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            with pytest.raises(WsRejected) as refused:
                await _client(port)
            assert refused.value.status_code == 400
            assert isinstance(refused.value, WsDisconnected)
            nursery.cancel_scope.cancel()
