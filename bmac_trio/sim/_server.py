"""Run the simulator: hypercorn under trio serving :class:`._app.SimApp` on one port.

:func:`open_simulator` is the entry point for tests and the CLI. hypercorn's ``serve``
reports its bound addresses through ``task_status.started(binds)`` (``["http://HOST:PORT"]``),
which is how port 0 becomes a real port. Shutdown: every WebSocket is closed by the server,
then hypercorn's shutdown trigger fires and the publisher is cancelled; nothing leaks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from bmac_trio.clock import Clock, SystemClock
from bmac_trio.sim._app import SimApp
from bmac_trio.sim._config import SimConfig
from bmac_trio.sim._exchange import Exchange
from bmac_trio.sim._faults import Faults, MarketEvents
from bmac_trio.sim._hub import Hub
from bmac_trio.sim._ratelimit import WeightLimiter
from bmac_trio.sim._stats import SimStats

__all__ = ["Simulator", "open_simulator"]


class Simulator:
    """A running simulated market (see the README section "The exchange simulator")."""

    def __init__(
        self,
        cfg: SimConfig,
        clock: Clock,
        ex: Exchange,
        hub: Hub,
        limiter: WeightLimiter,
        faults: Faults,
        stats: SimStats,
        port: int,
    ) -> None:
        self.config = cfg
        self.clock = clock
        self.exchange = ex
        self.hub = hub
        self.limiter = limiter
        self.faults = faults
        self.stats = stats
        self.market_events = MarketEvents(ex, hub, clock)
        self.host = cfg.host
        self.port = port
        self.rest_url = f"http://{cfg.host}:{port}"
        self.ws_url = f"ws://{cfg.host}:{port}"

    def trading_symbols(self) -> list[str]:
        """Symbols whose status is TRADING now, in exchangeInfo order."""
        return self.exchange.trading_symbols(self.clock.now_ms())

    def ground_truth(
        self, symbol: str, interval: str, since_ms: int | None = None
    ) -> list[list[Any]]:
        """Every closed candle published so far (REST rows, strings exactly as served)."""
        return self.exchange.ground_truth(symbol, interval, self.clock.now_ms(), since_ms)

    def closing_push_ms(self, symbol: str, interval: str, open_ms: int) -> int:
        """Exchange time ``E`` of the closing push of a candle (for tests)."""
        from bmac_trio.binance.intervals import parse_interval

        iv = parse_interval(interval)
        return iv.end(open_ms) + self.hub.closing_delay_ms(symbol, iv, open_ms)


def _hypercorn_config(cfg: SimConfig, clock: Clock, ping_s: float) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"{cfg.host}:{cfg.port}"]
    hc.accesslog = None
    hc.loglevel = "WARNING"
    hc.graceful_timeout = 0.2
    # Exchange-time period, but never more than four pings a real second at high speed.
    hc.websocket_ping_interval = max(0.25, clock.to_real(ping_s))
    # A combined-stream URL with 1024 streams is ~25 KB: above h11's default 16 KB.
    hc.h11_max_incomplete_size = 256 * 1024
    hc.keep_alive_timeout = 30.0
    hc.include_server_header = False
    return hc


@asynccontextmanager
async def open_simulator(cfg: SimConfig, *, clock: Clock | None = None) -> AsyncIterator[Simulator]:
    """Serve one simulated market on ``cfg.host:cfg.port`` (0: a free port) until exit."""
    clock = clock or SystemClock()
    ex = Exchange(cfg, clock.now_ms())
    stats = SimStats()
    hub = Hub(ex, clock, cfg, stats)
    limit = cfg.weight_limit or ex.market.default_weight_limit
    grace_ms = int(cfg.ban_grace_s * 1000 * clock.speed)
    limiter = WeightLimiter(
        limit, futures=ex.market.is_futures, ban_seconds=cfg.ban_seconds, grace_ms=grace_ms
    )
    faults = Faults(hub, clock, stats)
    app = SimApp(ex, hub, limiter, faults, clock, stats)
    ping_s = cfg.ping_interval_s or ex.market.ping_interval_s
    hc = _hypercorn_config(cfg, clock, ping_s)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, hc, shutdown_trigger=shutdown.wait))
        port = int(binds[0].rsplit(":", 1)[1])
        publisher = trio.CancelScope()

        async def run_publisher() -> None:
            with publisher:
                await hub.run()

        nursery.start_soon(run_publisher)
        try:
            yield Simulator(cfg, clock, ex, hub, limiter, faults, stats, port)
        finally:
            hub.drop(None)
            publisher.cancel()
            shutdown.set()
