"""A local stand-in for Binance's public market data (spot, USDⓈ-M, COIN-M).

Real HTTP and WebSocket on 127.0.0.1 (hypercorn under trio), deterministic seeded candles,
Binance's limits, weights, errors and stream cadence, a scripted market life and faults on
demand. See the README section "The exchange simulator"::

    async with open_simulator(SimConfig(market="um", symbols=50), clock=clock) as sim:
        sim.rest_url, sim.ws_url, sim.ground_truth("BTCUSDT", "1m")
"""

from bmac_trio.sim._config import Scenario, SimConfig, load_scenario
from bmac_trio.sim._server import Simulator, open_simulator

__all__ = ["Scenario", "SimConfig", "Simulator", "load_scenario", "open_simulator"]
