"""The one exception hierarchy of bmac-trio.

Third-party errors (httpx, trio-websocket, OSError from the disk) are translated into these at
the adapters, so the rest of the service only ever catches its own classes::

    BmacError
     ├── ConfigError            bad config.json, refused before anything is written
     ├── LockHeld               another recorder already owns the data directory
     ├── UnsafeSymbol           a symbol name that would escape the data directory
     ├── ProtocolError
     │    ├── RemoteProtocolError   Binance (or the simulator) sent something malformed
     │    └── BusProtocolError      a live-bus message does not follow bmac-trio's wire format
     ├── TransportError
     │    ├── WsDisconnected        a WebSocket dropped, went silent or was cut
     │    ├── RestUnavailable       timeout, connection error, 5xx, or an error body
     │    └── RateLimited           429 (or a 418 ban, ``banned=True``) with Retry-After
     └── StorageError           a write failed; the previous file is intact
"""

from __future__ import annotations

__all__ = [
    "BmacError",
    "BusProtocolError",
    "BusUnavailable",
    "ConfigError",
    "LockHeld",
    "ProtocolError",
    "RateLimited",
    "RemoteProtocolError",
    "RestUnavailable",
    "StorageError",
    "TransportError",
    "UnsafeSymbol",
    "WsDisconnected",
]


class BmacError(Exception):
    """Base of every error bmac-trio raises on purpose."""


class ConfigError(BmacError):
    """config.json is missing, not JSON, or has a key with a bad value.

    The message names the key, the bad value and what is allowed.
    """


class LockHeld(BmacError):
    """Another recorder holds the lock of this data directory (cron started a second copy)."""


class UnsafeSymbol(BmacError):
    """A symbol name that cannot be used as a file name (path separators, dots, control chars)."""


class ProtocolError(BmacError):
    """A payload does not follow the Binance protocol."""


class RemoteProtocolError(ProtocolError):
    """The exchange sent a frame or body we cannot interpret; nothing on disk changes."""


class BusProtocolError(ProtocolError):
    """A live-bus message (or request) does not follow bmac-trio's wire format (docs/bus.md)."""


class TransportError(BmacError):
    """The network failed; retrying later is expected to help."""


class WsDisconnected(TransportError):
    """A WebSocket connection closed, went silent, or reached its lifetime."""


class WsStreamsRefused(WsDisconnected):
    """The exchange refused a connection's stream names (HTTP 400 "Invalid stream name", or an
    error reply to SUBSCRIBE): retrying the same streams will not help."""


class BusUnavailable(TransportError):
    """The message bus (a NATS server, JetStream) could not be reached or refused a request."""


class RestUnavailable(TransportError):
    """A REST call timed out, could not connect, or got a 5xx or an error body.

    ``status`` is the HTTP status (0 when no response arrived), ``code`` Binance's error code.
    """

    def __init__(self, message: str, *, status: int = 0, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimited(TransportError):
    """HTTP 429 (too much weight) or 418 (IP banned): wait ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, banned: bool) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.banned = banned


class StorageError(BmacError):
    """Writing to the data directory failed; the previous version of the file is intact."""
