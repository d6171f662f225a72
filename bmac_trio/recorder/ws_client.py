"""A client WebSocket read by its owner: wsproto over a trio stream, no reader task.

trio-websocket gives each connection a reader task that hands every message to the caller
through a memory channel, and its close waits for the server's answer (up to the caller's
timeout, a second per connection at every stop). Here the listener's own loop reads the socket
and gets every complete message of one read at once, parsed by wsproto (sans-IO): 19 instead
of 47 us of CPU a frame when a read holds 200 (a boundary's burst), 68 instead of 75 at 5 a
read, about the same at 1 (`scripts/bench_ws_client.py`). Pings are answered as they
are read; a close from the server is answered and ends the reading.

wsproto's and the socket's errors are translated here: a refused handshake is
:class:`WsRejected` (with the HTTP status), anything else that ends the connection is
:class:`~bmac_trio.errors.WsDisconnected`.
"""

from __future__ import annotations

import trio
import wsproto
from wsproto.connection import ConnectionState
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
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from bmac_trio.errors import WsDisconnected

__all__ = ["WsClient", "WsRejected"]

#: Bytes asked of the socket per read: a read holds many frames at a boundary.
RECEIVE_BYTES = 65_536
#: The largest message accepted (Binance's are a few hundred bytes; LIST_SUBSCRIPTIONS of
#: 1024 streams is about 30 KB).
MAX_MESSAGE_BYTES = 2**22

_STREAM_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


class WsRejected(WsDisconnected):
    """The server answered the handshake with an HTTP status other than 101."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"handshake rejected: HTTP {status_code}")
        self.status_code = status_code


class WsClient:
    """One open client connection; the caller owns ``stream`` and closes it.

    Reading (:meth:`receive`) is for one task; sends (:meth:`send_text`, the pongs and the
    close) may come from any task and are serialised by a lock.
    """

    def __init__(self, stream: trio.abc.Stream, protocol: wsproto.WSConnection) -> None:
        self._stream = stream
        self._protocol = protocol
        self._send_lock = trio.Lock()
        self._partial: list[str | bytes] = []
        self._partial_size = 0
        self.closed = False

    @classmethod
    async def connect(cls, stream: trio.abc.Stream, host: str, target: str) -> WsClient:
        """The opening handshake over ``stream``. The caller sets the timeout.

        Raises:
            WsRejected: the server answered with another status than 101.
            WsDisconnected: the stream failed or closed before an answer.
        """
        protocol = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        client = cls(stream, protocol)
        try:
            await stream.send_all(protocol.send(Request(host=host, target=target)))
            while data := await stream.receive_some(RECEIVE_BYTES):
                protocol.receive_data(data)
                for event in protocol.events():
                    if isinstance(event, AcceptConnection):
                        return client
                    if isinstance(event, RejectConnection):
                        raise WsRejected(event.status_code)
        except (*_STREAM_ERRORS, RemoteProtocolError) as exc:
            raise WsDisconnected(f"handshake failed: {exc!r}") from exc
        raise WsDisconnected("closed during the handshake")

    async def receive(self) -> list[str | bytes]:
        """The complete messages of the next read (at least one), in order; ``[]`` once the
        connection is closed (by the server, or the stream ended)."""
        try:
            while not self.closed:
                # what was read already first: the handshake's read may hold frames too
                messages = await self._handle_events()
                if messages or self.closed:
                    return messages
                try:
                    data = await self._stream.receive_some(RECEIVE_BYTES)
                except _STREAM_ERRORS:
                    data = b""
                self._protocol.receive_data(data or None)  # None: the stream ended
        except (RemoteProtocolError, LocalProtocolError):  # malformed, or closed already
            self.closed = True
        return []

    async def _handle_events(self) -> list[str | bytes]:
        messages: list[str | bytes] = []
        for event in self._protocol.events():
            if isinstance(event, TextMessage | BytesMessage):
                if event.message_finished and not self._partial:
                    messages.append(event.data)
                    continue
                self._partial.append(event.data)
                self._partial_size += len(event.data)
                if self._partial_size > MAX_MESSAGE_BYTES:
                    raise RemoteProtocolError(f"message over {MAX_MESSAGE_BYTES} bytes")
                if event.message_finished:
                    joiner = "" if isinstance(event, TextMessage) else b""
                    messages.append(joiner.join(self._partial))  # type: ignore[attr-defined]
                    self._partial, self._partial_size = [], 0
            elif isinstance(event, Ping):
                await self._reply(event.response())
            elif isinstance(event, CloseConnection):
                if self._protocol.state is ConnectionState.REMOTE_CLOSING:
                    await self._reply(event.response())
                self.closed = True
                break
        return messages

    async def _reply(self, event: Pong | CloseConnection) -> None:
        try:
            data = self._protocol.send(event)
        except LocalProtocolError:  # closing already: nothing to answer
            return
        await self._send(data)

    async def send_text(self, text: str) -> None:
        """Send one text message.

        Raises:
            WsDisconnected: the connection is closed or the stream failed.
        """
        try:
            data = self._protocol.send(TextMessage(data=text))
        except LocalProtocolError as exc:  # closed already
            raise WsDisconnected(f"send on a closed connection: {exc}") from exc
        await self._send(data, raise_errors=True)

    async def close(self) -> None:
        """Send a close frame, when still open (the stream is the caller's to close)."""
        if self.closed:
            return
        self.closed = True
        try:
            data = self._protocol.send(CloseConnection(code=1000))
        except LocalProtocolError:
            return
        await self._send(data)

    async def _send(self, data: bytes, *, raise_errors: bool = False) -> None:
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except _STREAM_ERRORS as exc:
                self.closed = True
                if raise_errors:
                    raise WsDisconnected(f"send failed: {exc!r}") from exc
