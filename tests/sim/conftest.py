"""Helpers for the simulator tests: a fixed exchange start time and JSON over real sockets."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import trio_websocket

#: 2026-01-01 00:00:00 UTC: a Thursday, well inside a quarter.
START_MS = 1767225600000


async def get_json(
    client: httpx.AsyncClient, url: str, **params: Any
) -> tuple[int, Any, httpx.Headers]:
    r = await client.get(url, params=params)
    return r.status_code, orjson.loads(r.content), r.headers


async def ws_json(ws: trio_websocket.WebSocketConnection) -> Any:
    return orjson.loads(await ws.get_message())
