"""bmac-trio: a rolling window of Binance candles for a whole market, on local disk, on Trio.

Packages by role; imports point one way (``tests/test_layering.py`` enforces it):

* :mod:`~bmac_trio.errors`, :mod:`~bmac_trio.clock`: the one exception hierarchy; injected time;
* :mod:`~bmac_trio.binance`: what Binance is, sans-IO (markets, intervals, protocol, weights);
* :mod:`~bmac_trio.store`: the disk contract (layout, config.json, atomic writes, files, lock);
* :mod:`~bmac_trio.ops`: alerts, metrics and the status file the recorder reports into;
* :mod:`~bmac_trio.recorder`: the service's trio tasks and their wiring;
* :mod:`~bmac_trio.cli`: the ``bmac-trio`` commands; :mod:`~bmac_trio.sim`: the exchange
  simulator, which uses only ``errors``, ``clock`` and ``binance``.
"""

from bmac_trio.binance.intervals import Interval as Interval, parse_interval as parse_interval
from bmac_trio.errors import (
    BmacError as BmacError,
    ConfigError as ConfigError,
    LockHeld as LockHeld,
    ProtocolError as ProtocolError,
    RateLimited as RateLimited,
    RemoteProtocolError as RemoteProtocolError,
    RestUnavailable as RestUnavailable,
    StorageError as StorageError,
    TransportError as TransportError,
    UnsafeSymbol as UnsafeSymbol,
    WsDisconnected as WsDisconnected,
)

__version__ = "0.1.0"
