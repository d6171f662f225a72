"""Ops test fixtures: a real local HTTP server playing DingDing, WeChat Work and a webhook.

It runs hypercorn on 127.0.0.1, port 0, records every request and verifies DingDing's signature
the way DingDing does (``sign`` must equal base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

SECRET = "SECtest0123456789abcdef"
ACCESS_TOKEN = "token-abc"


@dataclass
class Received:
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    signature_ok: bool | None


@dataclass
class WebhookServer:
    """Records requests; ``mode`` is "ok", "fail" (HTTP 500) or "hang" (never answers)."""

    url: str = ""
    mode: str = "ok"
    received: list[Received] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def wait_for(self, n: int) -> list[Received]:
        """Wait until ``n`` requests have arrived (callers wrap it in fail_after)."""
        while len(self.received) < n:
            await self._changed.wait()
        return self.received

    async def app(self, scope: dict[str, Any], receive: Callable[..., Any], send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        signature_ok = None
        if scope["path"] == "/robot/send":
            expected = base64.b64encode(
                hmac.new(
                    SECRET.encode(), f"{query.get('timestamp')}\n{SECRET}".encode(), hashlib.sha256
                ).digest()
            ).decode()
            signature_ok = query.get("sign") == expected and query.get("access_token") == (
                ACCESS_TOKEN
            )
        self.received.append(Received(scope["path"], query, orjson.loads(body), signature_ok))
        self._changed.set()
        self._changed = trio.Event()
        if self.mode == "hang":
            await trio.sleep_forever()
        if self.mode == "fail":
            status, answer = 500, {"errcode": -1, "errmsg": "internal error"}
        elif signature_ok is False:
            status, answer = 200, {"errcode": 310000, "errmsg": "sign not match"}
        else:
            status, answer = 200, {"errcode": 0, "errmsg": "ok"}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})


@pytest.fixture
async def webhook_server(nursery: trio.Nursery) -> WebhookServer:
    server = WebhookServer()
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    binds = await nursery.start(serve, server.app, config)
    server.url = binds[0]
    return server
