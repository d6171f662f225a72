"""The live bus: the recorder's closed candles, periods and symbol changes pushed to subscribers.

:mod:`bmac_trio.bus.messages` is the wire format (pure, no transport): every transport (ZeroMQ
here, NATS JetStream elsewhere) carries the same topics, headers and bodies, documented in
``docs/bus.md`` for subscribers in other languages.
"""

from bmac_trio.bus.messages import (
    SCHEMA_VERSION,
    BusMessage,
    Header,
    candle_msg_id,
    new_epoch,
)

__all__ = ["SCHEMA_VERSION", "BusMessage", "Header", "candle_msg_id", "new_epoch"]
