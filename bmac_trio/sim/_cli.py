"""``bmac-trio sim``: serve one simulated Binance market until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import trio

from bmac_trio.binance.intervals import ALL_INTERVALS
from bmac_trio.clock import Clock, ScaledWallClock, SystemClock, parse_clock_spec

__all__ = ["sim"]


def _parse_start(text: str) -> int:
    """Epoch ms from an integer or an ISO date/time (UTC unless it says otherwise)."""
    if text.isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _error(msg: str) -> int:
    print(f"bmac-trio sim: error: {msg}", file=sys.stderr)
    return 2


def sim(
    *,
    market: Literal["spot", "um", "cm"] = "um",
    port: int = 0,
    host: str = "127.0.0.1",
    symbols: int = 20,
    seed: int = 1,
    exchange_info: Path | None = None,
    scenario: Path | None = None,
    speed: float = 1.0,
    start: str | None = None,
    clock: str | None = None,
    interval_hint: str = "1m",
    history_candles: int = 3000,
    weight_limit: int | None = None,
    ws_lifetime: float = 86400.0,
) -> int:
    """Serve a simulated Binance market (REST and WebSocket on one port).

    The first line printed is ``REST http://127.0.0.1:PORT WS ws://127.0.0.1:PORT``; clients
    append Binance's own paths (``/fapi/v1/klines``, ``/market/stream?streams=...``). Runs
    until SIGINT or SIGTERM, then exits 0.

    Args:
        market: Which market to serve: spot (/api/v3), um (USDⓈ-M, /fapi/v1) or cm
            (COIN-M, /dapi/v1).
        port: TCP port; 0 picks a free one (printed on the first line).
        host: Address to listen on.
        symbols: How many symbols to generate (ignored with --exchange-info); futures
            markets add the BTC/ETH next quarters and, on um from 6 on, three TradFi
            perpetuals (docs/simulator-fidelity.md).
        seed: Seed of the deterministic market data: same seed, same candles.
        exchange_info: Serve the symbols of this exchangeInfo JSON snapshot instead of
            generated ones.
        scenario: JSON file scripting listings, delistings, deliveries and maintenance
            windows (keys: listings, delistings, deliveries, maintenance).
        speed: Exchange seconds per real second (e.g. 60: an hour of 1m candles per minute).
        start: Exchange time at start-up, epoch ms or ISO 8601 (default: now).
        clock: Share a clock with another process: START_MS:SPEED:ANCHOR_UNIX (overrides
            --speed and --start).
        interval_hint: The interval clients mostly use; history exists for
            --history-candles of it before the start.
        history_candles: Candles of --interval-hint that exist before the start.
        weight_limit: REQUEST_WEIGHT per minute per IP (default: the market's, 6000 spot,
            2400 futures).
        ws_lifetime: Exchange seconds after which a WebSocket is cut (Binance: 24 h).
    """
    from bmac_trio.sim._config import SimConfig, load_scenario
    from bmac_trio.sim._server import open_simulator

    if not 0 <= port <= 65535:
        return _error(f"--port must be 0..65535, got {port}")
    if symbols < 1:
        return _error(f"--symbols must be at least 1, got {symbols}")
    if speed <= 0:
        return _error(f"--speed must be positive, got {speed}")
    if interval_hint not in ALL_INTERVALS:
        return _error(f"--interval-hint {interval_hint!r} is not a Binance interval")
    if exchange_info is not None and not exchange_info.is_file():
        return _error(f"--exchange-info {exchange_info} does not exist")
    try:
        the_clock: Clock
        if clock:
            the_clock = parse_clock_spec(clock)
        elif start is not None or speed != 1.0:
            start_ms = _parse_start(start) if start else SystemClock().now_ms()
            anchor = SystemClock().now_ms() / 1000
            the_clock = ScaledWallClock(start_ms, speed, anchor)
        else:
            the_clock = SystemClock()
        sc = load_scenario(scenario) if scenario is not None else None
    except (ValueError, OSError) as exc:
        return _error(str(exc))
    kwargs = {"scenario": sc} if sc is not None else {}
    cfg = SimConfig(
        market=market,
        symbols=exchange_info if exchange_info is not None else symbols,
        seed=seed,
        host=host,
        port=port,
        interval_hint=interval_hint,
        history_candles=history_candles,
        weight_limit=weight_limit,
        ws_max_lifetime_s=ws_lifetime,
        **kwargs,
    )

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_simulator(cfg, clock=the_clock) as server:
                print(f"REST {server.rest_url} WS {server.ws_url}", flush=True)
                async for _ in signals:
                    break

    busy = _port_problem(host, port)
    if busy is not None:
        return _error(busy)
    try:
        trio.run(main)
    except (ValueError, OSError) as exc:
        return _error(str(exc))
    except ExceptionGroup as group:  # the servers' nursery wraps a bind error
        bind = group.subgroup(lambda e: isinstance(e, OSError | ValueError))
        if bind is None:
            raise
        return _error(str(_first_leaf(bind)))
    return 0


def _port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (checked before the simulator starts), or None."""
    if port == 0:
        return None
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            sock.bind((host, port))
        except OSError as exc:
            return f"cannot listen on {host}:{port}: port in use or refused ({exc.strerror})"
    return None


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
