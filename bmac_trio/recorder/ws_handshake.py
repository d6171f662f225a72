"""WebSocket streams the listeners own, and a trial handshake over one.

Binance answers a combined-stream URL naming a stream it refuses with HTTP 400 ("Invalid
stream name"), and with 5xx while it is down. The listeners open the TCP/TLS stream themselves
(:func:`open_ws_stream`), run the handshake over it (:class:`~.ws_client.WsClient`) and always
close it. To find which streams are refused they bisect with :func:`handshake_status`, a bare
handshake that is closed as soon as it is answered.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio

from bmac_trio.errors import WsDisconnected
from bmac_trio.recorder.ws_client import WsClient, WsRejected

__all__ = ["ACCEPTED", "handshake_status", "host_and_resource", "open_ws_stream"]

#: The status of an accepted WebSocket handshake (Switching Protocols).
ACCEPTED = 101


def host_and_resource(url: str) -> tuple[str, str]:
    """The Host header (with a port unless the scheme's default) and the request target."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None and parts.port != (443 if parts.scheme == "wss" else 80):
        host = f"{host}:{parts.port}"
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return host, target


async def open_ws_stream(url: str) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """A TCP (``ws://``) or TLS (``wss://``) stream to the URL's host, owned by the caller.

    Raises:
        OSError: cannot connect.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    if parts.scheme == "wss":
        return await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=ssl.create_default_context(), https_compatible=True
        )
    return await trio.open_tcp_stream(host, port)


async def handshake_status(url: str) -> int:
    """The HTTP status the server answers a WebSocket handshake to ``url`` with (101: accepted);
    the connection is closed at once either way. The caller sets the timeout.

    Raises:
        WsDisconnected: no answer (refused connection, closed, not HTTP).
    """
    try:
        stream = await open_ws_stream(url)
    except OSError as exc:
        raise WsDisconnected(f"trial handshake failed: {exc!r}") from exc
    async with stream:
        try:
            await WsClient.connect(stream, *host_and_resource(url))
        except WsRejected as exc:
            return exc.status_code
    return ACCEPTED
