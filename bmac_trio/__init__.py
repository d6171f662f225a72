"""bmac-trio: a rolling window of Binance candles for a whole market, on local disk, on Trio.

Layers (imports only point downward):

* pure core, no trio/httpx: ``_errors``, ``_intervals``, ``_markets``, ``_symbols``, and the
  protocol/book/planning modules;
* sync storage (atomic writes, ready files, manifests);
* trio adapters (REST, WebSocket, alarm, dispatcher) and ``_clock``;
* wiring (``_app``) and the command line (``cli``); the simulator lives in ``bmac_trio.sim``.
"""

from bmac_trio._errors import (
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
from bmac_trio._intervals import Interval as Interval, parse_interval as parse_interval

__version__ = "0.1.0"
