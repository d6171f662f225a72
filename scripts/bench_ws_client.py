"""Benchmark: CPU per WebSocket frame of the listeners' client against trio-websocket's.

A local wsproto server sends 20,000 provisional kline frames (Binance's shape) in writes of 1,
5 and 200 frames (frames trickling in, a few per read as the recorder sees them at 500
symbols, and a boundary's burst); the client reads them all. Both run in this thread, so the
figure (thread CPU per frame, median of three runs per client, alternated) includes the
server's share, which is the same for both.

    python scripts/bench_ws_client.py
"""

from __future__ import annotations

import statistics
import time
from functools import partial

import orjson
import trio
import trio_websocket
import wsproto
from wsproto.events import AcceptConnection, Request, TextMessage

from bmac_trio.recorder.ws_client import WsClient

FRAMES = 20_000
KLINE = {
    "t": 1_700_000_000_000, "T": 1_700_000_059_999, "s": "BTCUSDT", "i": "1m", "f": 1, "L": 2,
    "o": "37000.10", "c": "37001.20", "h": "37002.00", "l": "36999.00", "v": "123.456",
    "n": 100, "x": False, "q": "4567890.12", "V": "60.1", "Q": "2222222.2", "B": "0",
}  # fmt: skip
MESSAGE = orjson.dumps(
    {"stream": "btcusdt@kline_1m", "data": {"e": "kline", "E": 1, "s": "BTCUSDT", "k": KLINE}}
).decode()


async def _server(stream: trio.SocketStream, per_write: int) -> None:
    ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    while True:
        ws.receive_data(await stream.receive_some(65_536))
        if any(isinstance(e, Request) for e in ws.events()):
            break
    await stream.send_all(ws.send(AcceptConnection()))
    frame = ws.send(TextMessage(data=MESSAGE))
    for _ in range(0, FRAMES, per_write):
        await stream.send_all(frame * per_write)
        if per_write < 50:
            await trio.sleep(0.0002)  # let the client read: a few frames per read
    await trio.sleep_forever()


async def _read_all(kind: str, stream: trio.SocketStream) -> None:
    got = 0
    if kind == "WsClient":
        ws = await WsClient.connect(stream, "127.0.0.1", "/")
        while got < FRAMES:
            got += sum('"x":false' in m for m in await ws.receive() if isinstance(m, str))
        return
    async with trio.open_nursery() as reader:
        conn = await trio_websocket.wrap_client_stream(
            reader, stream, "127.0.0.1", "/", message_queue_size=64, receive_buffer_size=65_536
        )
        while got < FRAMES:
            got += '"x":false' in await conn.get_message()
        reader.cancel_scope.cancel()


async def _run(kind: str, per_write: int) -> float:
    """Thread CPU seconds per frame."""
    async with trio.open_nursery() as nursery:
        serve = partial(trio.serve_tcp, partial(_server, per_write=per_write), 0, host="127.0.0.1")
        [listener] = await nursery.start(serve)
        stream = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
        async with stream:
            start = time.thread_time()
            await _read_all(kind, stream)
            cpu = time.thread_time() - start
        nursery.cancel_scope.cancel()
    return cpu / FRAMES


def main() -> None:
    for per_write in (1, 5, 200):
        runs: dict[str, list[float]] = {"trio-websocket": [], "WsClient": []}
        for _ in range(3):
            for kind, values in runs.items():
                values.append(trio.run(_run, kind, per_write))
        old, new = (statistics.median(v) * 1e6 for v in runs.values())
        print(
            f"{per_write:3d} frames per write: trio-websocket {old:6.1f} us/frame, "
            f"WsClient {new:6.1f} us/frame, ratio {old / new:.2f}x"
        )


if __name__ == "__main__":
    main()
