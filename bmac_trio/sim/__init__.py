"""A local stand-in for Binance's public market data (spot, USDⓈ-M, COIN-M).

Real HTTP and WebSocket on 127.0.0.1 (hypercorn under trio), deterministic seeded candles,
Binance's limits, weights, errors and stream cadence, a scripted market life and faults on
demand. See the README section "The exchange simulator"::

    async with open_simulator(SimConfig(market="um", symbols=50), clock=clock) as sim:
        sim.rest_url, sim.ws_url, sim.ground_truth("BTCUSDT", "1m")

The server half is imported lazily, so the pure modules (market data, encodings, REST and
WebSocket protocol) load without trio or hypercorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bmac_trio.sim._config import Scenario, SimConfig, load_scenario

if TYPE_CHECKING:
    from bmac_trio.sim._server import Simulator, open_simulator

__all__ = ["Scenario", "SimConfig", "Simulator", "load_scenario", "open_simulator"]


def __getattr__(name: str) -> Any:
    if name in ("Simulator", "open_simulator"):
        from bmac_trio.sim import _server

        return getattr(_server, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
