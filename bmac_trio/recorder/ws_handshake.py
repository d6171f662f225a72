"""A trial WebSocket handshake: does the exchange accept a connection with these streams?

Binance answers a combined-stream URL naming a stream it refuses with HTTP 400 ("Invalid
stream name"). trio-websocket raises :class:`~trio_websocket.ConnectionRejected` then but does
not close the socket it opened (0.12), so the listeners ask here first, with wsproto's sans-IO
handshake over a stream this function owns and always closes.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio
import wsproto
from wsproto.events import AcceptConnection, RejectConnection, Request

from bmac_trio.errors import WsDisconnected

__all__ = ["handshake_status"]

#: The status of an accepted WebSocket handshake (Switching Protocols).
ACCEPTED = 101


async def handshake_status(url: str) -> int:
    """The HTTP status the server answers a WebSocket handshake to ``url`` with (101: accepted);
    the connection is closed at once either way. The caller sets the timeout.

    Raises:
        WsDisconnected: no answer (refused connection, closed, not HTTP).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        stream: trio.abc.Stream
        if parts.scheme == "wss":
            stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=ssl.create_default_context()
            )
        else:
            stream = await trio.open_tcp_stream(host, port)
        async with stream:
            client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            await stream.send_all(client.send(Request(host=parts.netloc, target=target)))
            while data := await stream.receive_some(65_536):
                client.receive_data(data)
                for event in client.events():
                    if isinstance(event, AcceptConnection):
                        return ACCEPTED
                    if isinstance(event, RejectConnection):
                        return event.status_code
    except (OSError, trio.BrokenResourceError, wsproto.utilities.RemoteProtocolError) as exc:
        raise WsDisconnected(f"trial handshake failed: {exc!r}") from exc
    raise WsDisconnected("trial handshake: closed before an answer")
