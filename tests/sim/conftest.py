"""Helpers for the simulator tests: a fixed exchange start time and JSON over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import trio
import trio_websocket

from bmac_trio.clock import TrioClock
from bmac_trio.sim import SimConfig, Simulator, open_simulator

#: 2026-01-01 00:00:00 UTC: a Thursday, well inside a quarter.
START_MS = 1767225600000
PREFIX = {"spot": "/api/v3", "um": "/fapi/v1", "cm": "/dapi/v1"}
WS_ROUTE = {"spot": "", "um": "/market", "cm": ""}


@asynccontextmanager
async def running(
    start_ms: int = START_MS, speed: float = 1.0, **cfg: Any
) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    """A simulator on a TrioClock plus an HTTP client for it."""
    clock = TrioClock(start_ms=start_ms, speed=speed)
    async with (
        open_simulator(SimConfig(**cfg), clock=clock) as sim,
        httpx.AsyncClient(base_url=sim.rest_url + PREFIX[sim.config.market]) as client,
    ):
        yield sim, client


async def get_json(
    client: httpx.AsyncClient, url: str, **params: Any
) -> tuple[int, Any, httpx.Headers]:
    """GET and decode: ``(status, body, headers)``."""
    r = await client.get(url, params=params)
    return r.status_code, orjson.loads(r.content), r.headers


async def ws_json(ws: trio_websocket.WebSocketConnection) -> Any:
    """The next frame, decoded."""
    return orjson.loads(await ws.get_message())


async def next_kline(ws: trio_websocket.WebSocketConnection, *, closed: bool) -> Any:
    """The next kline frame with ``x == closed`` (combined wrapper or raw event)."""
    while True:
        frame = await ws_json(ws)
        event = frame.get("data", frame)
        if event.get("e") == "kline" and event["k"]["x"] is closed:
            return frame


@asynccontextmanager
async def open_ws(url: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A client WebSocket whose TCP stream we own and always close.

    trio-websocket 0.12's client leaves its socket open when the *server* closes the
    connection first (it waits for the TCP close, then never closes its own end), which
    surfaces as a ResourceWarning under ``filterwarnings=error``. Owning the stream and
    wrapping it with the public ``wrap_client_stream`` avoids that.
    """
    parts = urlsplit(url)
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    try:
        async with stream, trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(nursery, stream, parts.hostname, resource)
            try:
                yield ws
            finally:
                await ws.aclose()
                await stream.aclose()
    except BaseExceptionGroup as group:
        rejected, _ = group.split(trio_websocket.ConnectionRejected)
        if rejected is None or len(group.exceptions) != 1:
            raise
        raise rejected.exceptions[0] from None
