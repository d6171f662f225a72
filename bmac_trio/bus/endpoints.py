"""Where the bus listens: the default ipc endpoint of a data directory, and the request socket
beside each PUB endpoint. Pure string work, shared by the publisher, the kit and ``tail``."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from bmac_trio.store.config import default_publish_endpoint

__all__ = ["SOCKET_NAME", "default_endpoint", "is_endpoint", "request_endpoint"]

#: The PUB socket's file in the data directory.
SOCKET_NAME: Final = "bmac.sock"


def default_endpoint(base_dir: Path | str) -> str:
    """``ipc://<base_dir>/bmac.sock`` (absolute; an abstract socket when the path is too long,
    see :func:`bmac_trio.store.config.default_publish_endpoint`)."""
    return default_publish_endpoint(Path(base_dir))


def is_endpoint(text: str) -> bool:
    """Whether ``text`` names a ZeroMQ endpoint rather than a data directory."""
    return text.startswith(("ipc://", "tcp://"))


def request_endpoint(pub_endpoint: str) -> str:
    """The request socket beside a PUB endpoint.

    ``ipc://X.sock`` → ``ipc://X.req.sock`` (``ipc://X`` → ``ipc://X.req``);
    ``tcp://host:port`` → ``tcp://host:port+1``.

    Raises:
        ValueError: not an ipc:// or tcp:// endpoint with a port.
    """
    if pub_endpoint.startswith("ipc://"):
        if pub_endpoint.endswith(".sock"):
            return pub_endpoint[: -len(".sock")] + ".req.sock"
        return pub_endpoint + ".req"
    if pub_endpoint.startswith("tcp://"):
        host, _, port = pub_endpoint[len("tcp://") :].rpartition(":")
        if host and port.isdigit():
            return f"tcp://{host}:{int(port) + 1}"
    raise ValueError(f"not an ipc:// or tcp://host:port endpoint: {pub_endpoint!r}")
