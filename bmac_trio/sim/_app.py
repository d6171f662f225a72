"""The ASGI application: a thin adapter from HTTP/WebSocket events to the pure modules.

HTTP: rate limiting and REST faults around :func:`._rest.handle`, with the weight headers on
every response (and spot's ``X-MBX-TIME-UNIT`` header passed on). WebSocket: the route and its
streams (:mod:`._ws_protocol`), the per-connection stream cap (a URL with too many streams is
refused with HTTP 400), control frames, the incoming message-rate limit (close 1008 when
exceeded, after every reply already due has been sent), the 24 h cut (close 1000), and a
writer that drains the connection's queue filled by :class:`._hub.Hub`.
"""

from __future__ import annotations

from collections import deque
from typing import Any
from urllib.parse import parse_qsl

import orjson
import trio

from bmac_trio.clock import Clock
from bmac_trio.sim._exchange import Exchange
from bmac_trio.sim._faults import Faults
from bmac_trio.sim._hub import Conn, Hub
from bmac_trio.sim._ratelimit import Verdict, WeightLimiter
from bmac_trio.sim._rest import endpoint_of, handle, request_weight
from bmac_trio.sim._stats import SimStats
from bmac_trio.sim._ws_protocol import ConnProtocol, parse_route

__all__ = ["SimApp"]

Scope = dict[str, Any]
_ERROR_BODIES = {
    500: {"code": -1000, "msg": "An unknown error occurred while processing the request."},
    503: {"code": -1008, "msg": "Service Unavailable."},
}


_HEAVY = frozenset({"klines", "uiKlines", "continuousKlines", "fundingRate"})


#: Real seconds a rate-limited connection gets to flush the replies already due.
_FLUSH_BEFORE_CLOSE_S = 1.0


def _answer(
    ex: Exchange, endpoint: str, pairs: list[tuple[str, str]], now: int, micros: bool
) -> tuple[int, bytes]:
    status, body = handle(ex, endpoint, pairs, now, micros=micros)
    return status, orjson.dumps(body)


def _wants_micros(scope: Scope) -> bool:
    """Spot's ``X-MBX-TIME-UNIT: MICROSECOND`` request header (any case)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"x-mbx-time-unit":
            return value.decode("latin-1").strip().upper() == "MICROSECOND"
    return False


class SimApp:
    """ASGI 3 callable serving one simulated market."""

    def __init__(
        self,
        ex: Exchange,
        hub: Hub,
        limiter: WeightLimiter,
        faults: Faults,
        clock: Clock,
        stats: SimStats,
    ) -> None:
        self.ex, self.hub, self.limiter, self.faults = ex, hub, limiter, faults
        self.clock, self.stats = clock, stats
        cfg = ex.cfg
        self.max_msgs = cfg.max_client_messages_per_s or ex.market.max_client_messages_per_second

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # ---------------------------------------------------------------------------- HTTP

    async def _respond(
        self, send: Any, status: int, body: Any, used: int, retry_after: int | None = None
    ) -> None:
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = [
            (b"content-type", b"application/json;charset=UTF-8"),
            (b"content-length", str(len(payload)).encode()),
            (b"x-mbx-used-weight", str(used).encode()),
            (b"x-mbx-used-weight-1m", str(used).encode()),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        self.stats.rest_by_status[status] += 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _http(self, scope: Scope, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] != "http.request" or not msg.get("more_body"):
                break
        self.stats.rest_requests += 1
        ip = (scope.get("client") or ("unknown", 0))[0]
        rf = self.faults.rest
        if self.faults.is_down():
            await self._respond(send, 503, _ERROR_BODIES[503], 0)
            return
        if rf.slow:
            rf.slow -= 1
            self.stats.faults["slow_rest"] += 1
            await trio.sleep(rf.slow_delay_s)
        now = self.clock.now_ms()
        path = scope["path"]
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        endpoint = endpoint_of(self.ex, path) if scope["method"] in ("GET", "HEAD") else None
        weight = request_weight(self.ex, endpoint, pairs) if endpoint else 1
        verdict: Verdict
        if rf.rate_limited:
            rf.rate_limited -= 1
            self.stats.faults["rate_limit"] += 1
            verdict = self.limiter.force_429(ip, now, rf.retry_after_s)
        else:
            verdict = self.limiter.check(ip, weight, now)
        self.stats.weight_per_ip[ip] = self.limiter.weight_by_ip.get(ip, 0)
        if verdict.status != 200:
            body = {"code": verdict.code, "msg": verdict.msg}
            await self._respond(send, verdict.status, body, verdict.used, verdict.retry_after)
            return
        if rf.errors:
            rf.errors -= 1
            self.stats.faults["rest_error"] += 1
            status = rf.error_status
            body = _ERROR_BODIES.get(status, _ERROR_BODIES[500])
            await self._respond(send, status, body, verdict.used)
            return
        if endpoint is None:
            body = {"code": -5000, "msg": f"Path {path}, Method {scope['method']} is invalid"}
            await self._respond(send, 404, body, verdict.used)
            return
        micros = _wants_micros(scope)
        if endpoint in _HEAVY:
            # Up to 1500 candles are computed per call: off the event loop, so WebSocket
            # pushes keep their timing while a client downloads history.
            status, payload = await trio.to_thread.run_sync(
                _answer, self.ex, endpoint, pairs, now, micros
            )
        else:
            status, payload = _answer(self.ex, endpoint, pairs, now, micros)
        await self._respond(send, status, payload, verdict.used)

    # ----------------------------------------------------------------------- WebSocket

    async def _reject(self, send: Any, status: int, body: dict[str, Any]) -> None:
        payload = orjson.dumps(body)
        self.stats.ws_connections_refused += 1
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json;charset=UTF-8")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": payload})

    async def _websocket(self, scope: Scope, receive: Any, send: Any) -> None:
        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
        market = self.ex.market
        if self.faults.is_down():
            await self._reject(send, 503, _ERROR_BODIES[503])
            return
        route = parse_route(market, scope["path"], scope.get("query_string", b""))
        if route is None:
            await self._reject(send, 404, {"code": -1000, "msg": "Not found."})
            return
        if len(set(route.streams)) > self.hub.max_streams:
            msg_ = f"Too many streams; at most {self.hub.max_streams} per connection."
            await self._reject(send, 400, {"code": -1101, "msg": msg_})
            return
        await send({"type": "websocket.accept"})
        proto = ConnProtocol(market, self.hub.max_streams, route.combined)
        for name in route.streams:
            proto.streams[name] = None
        conn, outgoing = self.hub.open_conn(proto, route.klines, micros=route.micros)
        disconnected = False
        try:
            with conn.scope:
                self.hub.subscribe(conn, list(proto.streams))
                async with trio.open_nursery() as nursery:
                    writer_done = trio.Event()
                    nursery.start_soon(self._writer, outgoing, send, writer_done)
                    nursery.start_soon(self._lifetime, conn)
                    disconnected = await self._reader(conn, receive)
                    if not disconnected:
                        # Rate limit broken: send the replies already queued, then close.
                        conn.out.close()
                        with trio.move_on_after(_FLUSH_BEFORE_CLOSE_S):
                            await writer_done.wait()
                    nursery.cancel_scope.cancel()
        finally:
            self.hub.close_conn(conn)
            if not disconnected:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await send(
                        {
                            "type": "websocket.close",
                            "code": conn.close_code,
                            "reason": conn.close_reason,
                        }
                    )

    async def _reader(self, conn: Conn, receive: Any) -> bool:
        """Handle client frames until the client leaves (True) or breaks the rate limit.

        Cancellation: when the server closes the connection (drop, 24 h cut, shutdown).
        """
        recent: deque[int] = deque()
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return True
            now = self.clock.now_ms()
            self.stats.ws_client_messages += 1
            recent.append(now)
            while recent and recent[0] <= now - 1000:
                recent.popleft()
            if len(recent) > self.max_msgs:
                conn.close_code, conn.close_reason = 1008, "Too many requests"
                return False
            text = msg.get("text")
            if text is None:
                text = msg.get("bytes") or b""
            reply, added, removed = conn.proto.handle(text)
            self.hub.subscribe(conn, added)
            self.hub.unsubscribe(conn, removed)
            conn.deliver(reply)

    async def _writer(
        self, outgoing: trio.MemoryReceiveChannel[str], send: Any, done: trio.Event
    ) -> None:
        """Drain the connection's queue into the socket; ``done`` once the queue is closed
        and empty.

        Channels: owns and closes ``outgoing``. Cancellation: with the connection.
        """
        with outgoing:
            async for text in outgoing:
                await send({"type": "websocket.send", "text": text})
                self.stats.ws_messages_sent += 1
        done.set()

    async def _lifetime(self, conn: Conn) -> None:
        """The 24 h cut (configurable), in exchange time.

        Cancellation: with the connection.
        """
        await self.clock.sleep_until_ms(conn.opened_ms + int(self.ex.cfg.ws_max_lifetime_s * 1000))
        conn.kill(1000, "connection lifetime reached")
