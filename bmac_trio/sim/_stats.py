"""Counters a test or the benchmark reads from ``sim.stats``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["SimStats"]


@dataclass(slots=True)
class SimStats:
    """What the simulator has done so far."""

    ws_messages_sent: int = 0
    ws_kline_events: int = 0
    ws_closing_events: int = 0
    ws_connections_opened: int = 0
    ws_connections_closed: int = 0
    ws_connections_refused: int = 0
    ws_client_messages: int = 0
    rest_requests: int = 0
    rest_by_status: Counter[int] = field(default_factory=Counter)
    #: Request weight counted per client IP (all minutes together).
    weight_per_ip: dict[str, int] = field(default_factory=dict)
    #: Faults actually applied, by kind (drop, silence, malformed, duplicate, out_of_order,
    #: rest_error, slow_rest, rate_limit).
    faults: Counter[str] = field(default_factory=Counter)

    @property
    def ws_connections_active(self) -> int:
        """Connections open now."""
        return self.ws_connections_opened - self.ws_connections_closed
