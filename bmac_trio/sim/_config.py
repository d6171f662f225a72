"""What a simulator run looks like: market, symbols, seed, limits and the scripted scenario.

Pure data. A scenario (listings, delistings, delivery dates, maintenance windows) can come from
:class:`SimConfig` fields or from a JSON file (:func:`load_scenario`), whose keys are the field
names of :class:`Scenario`, e.g.::

    {"listings": [["NEWUSDT", 1767225600000]],
     "delistings": [["SIM003USDT", 1767229200000]],
     "deliveries": [["BTCUSDT_260327", 1767229200000]],
     "maintenance": [[1767230000000, 1767230600000]]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson

from bmac_trio.binance.intervals import ALL_INTERVALS

__all__ = ["Scenario", "SimConfig", "load_scenario"]

MarketLiteral = Literal["spot", "um", "cm"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """The scripted life of the market (all times exchange epoch ms)."""

    #: (symbol, onboard_ms): PENDING_TRADING before, TRADING after; klines only from onboard.
    listings: tuple[tuple[str, int], ...] = ()
    #: (symbol, at_ms): delisted at ``at_ms`` (UM perp SETTLING then CLOSE, spot BREAK).
    delistings: tuple[tuple[str, int], ...] = ()
    #: (symbol, delivery_ms): move a delivery contract's expiry (Binance uses 08:00 UTC).
    deliveries: tuple[tuple[str, int], ...] = ()
    #: [start_ms, end_ms): no candles on REST, streams connected but silent.
    maintenance: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """How to run one simulated market.

    ``symbols`` is either a count of generated symbols or the path of an exchangeInfo JSON
    snapshot (the simulator serves its symbols with their filters and precisions).
    """

    market: MarketLiteral = "um"
    symbols: int | str | Path = 20
    seed: int = 1
    #: The interval clients mostly use: sets how much history exists before the clock start.
    interval_hint: str = "1m"
    #: Candles of ``interval_hint`` that exist before the clock's start time.
    history_candles: int = 3000
    host: str = "127.0.0.1"
    port: int = 0
    #: REQUEST_WEIGHT per exchange-clock minute per client IP (None: the market's default).
    weight_limit: int | None = None
    #: Ban lengths double from this (exchange seconds) up to three days.
    ban_seconds: int = 120
    #: Real seconds after a 429 during which further requests count as already in flight
    #: (answered 429 again, not banned).
    ban_grace_s: float = 0.25
    #: A WebSocket connection is cut after this many exchange seconds (Binance: 24 h).
    ws_max_lifetime_s: float = 24 * 3600.0
    #: Server ping period in exchange seconds (None: 20 s spot, 180 s futures).
    ping_interval_s: float | None = None
    #: Streams allowed per connection (None: 200 futures, 1024 spot).
    max_streams: int | None = None
    #: Client frames per exchange second before the server disconnects (None: 5 spot, 10 fut).
    max_client_messages_per_s: int | None = None
    #: Minimum real seconds between two x:false pushes of one stream (see README).
    min_real_update_s: float | None = None
    #: Share of candles with no trade (besides the ones Binance would also have).
    zero_trade_fraction: float = 0.03
    #: Frames a slow client may have queued before it is disconnected.
    send_queue_frames: int = 20_000
    scenario: Scenario = field(default_factory=Scenario)

    def __post_init__(self) -> None:
        problems = []
        if self.market not in ("spot", "um", "cm"):
            problems.append(f"market must be spot, um or cm, not {self.market!r}")
        if isinstance(self.symbols, bool) or (isinstance(self.symbols, int) and self.symbols < 1):
            problems.append(
                f"symbols must be a positive count or a snapshot path, not {self.symbols!r}"
            )
        if self.interval_hint not in ALL_INTERVALS:
            problems.append(f"interval_hint {self.interval_hint!r} is not a Binance interval")
        if self.history_candles < 0:
            problems.append("history_candles must be >= 0")
        if self.weight_limit is not None and self.weight_limit < 1:
            problems.append("weight_limit must be positive")
        if self.ws_max_lifetime_s <= 0:
            problems.append("ws_max_lifetime_s must be positive")
        if problems:
            raise ValueError("bad SimConfig: " + "; ".join(problems))


def _pairs(raw: object, key: str, types: tuple[type, type]) -> tuple[tuple, ...]:
    if not isinstance(raw, list):
        msg = f"scenario key {key!r} must be a list of pairs, got {raw!r}"
        raise ValueError(msg)
    out = []
    for item in raw:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not isinstance(item[0], types[0])
            or not isinstance(item[1], types[1])
            or isinstance(item[1], bool)
        ):
            msg = f"scenario key {key!r}: bad entry {item!r}"
            raise ValueError(msg)
        out.append((item[0], item[1]))
    return tuple(out)


def scenario_from_mapping(data: object) -> Scenario:
    """Validate a decoded scenario JSON object.

    Raises:
        ValueError: unknown key or badly shaped entry (the message names it).
    """
    if not isinstance(data, dict):
        msg = "a scenario must be a JSON object"
        raise ValueError(msg)
    allowed = {"listings", "delistings", "deliveries", "maintenance"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        msg = f"unknown scenario key(s) {unknown}; allowed: {sorted(allowed)}"
        raise ValueError(msg)
    return Scenario(
        listings=_pairs(data.get("listings", []), "listings", (str, int)),
        delistings=_pairs(data.get("delistings", []), "delistings", (str, int)),
        deliveries=_pairs(data.get("deliveries", []), "deliveries", (str, int)),
        maintenance=_pairs(data.get("maintenance", []), "maintenance", (int, int)),
    )


def load_scenario(path: Path) -> Scenario:
    """Read a scenario JSON file (see the module docstring)."""
    return scenario_from_mapping(orjson.loads(Path(path).read_bytes()))
