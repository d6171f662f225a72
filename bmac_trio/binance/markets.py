"""The three Binance markets and the BMAC trade types (plus ``usdt_tradifi_perp``), as data.

Everything that differs between spot, USDⓈ-M (``um``) and COIN-M (``cm``) — paths, limits,
weights, stream caps, the name of the status key — lives here, so that the protocol code, the
recorder and the simulator read the same facts (see ``reference/binance-api.md`` §1-§3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CM",
    "MARKETS",
    "SPOT",
    "SPOT_STABLECOINS",
    "TRADE_TYPES",
    "TRADE_TYPE_ALIASES",
    "UM",
    "Market",
    "MarketName",
    "TradeType",
    "futures_kline_weight",
    "resolve_trade_type",
]

MarketName = Literal["spot", "um", "cm"]

_FUTURES_INTERVALS = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
)  # fmt: skip


def futures_kline_weight(limit: int) -> int:
    """Weight of a UM/CM klines call: [1,100) → 1, [100,500) → 2, [500,1000] → 5, above → 10."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def _spot_kline_weight(limit: int) -> int:
    del limit
    return 2


@dataclass(frozen=True, slots=True)
class Market:
    """Facts about one Binance market."""

    name: MarketName
    #: REST path prefix appended to the base URL, e.g. ``/fapi/v1``.
    rest_prefix: str
    #: WebSocket route prefix for kline streams (USDⓈ-M klines live on ``/market``).
    ws_route: str
    default_rest_url: str
    default_ws_url: str
    kline_default_limit: int
    kline_max_limit: int
    #: REQUEST_WEIGHT per minute when exchangeInfo does not say otherwise.
    default_weight_limit: int
    exchange_info_weight: int
    #: Streams a client may put on one connection (we use 200 on futures, as the spec asks).
    max_streams_per_connection: int
    #: Client messages (control frames, pings, pongs) per second before the server cuts us off.
    max_client_messages_per_second: int
    #: The key of a symbol's trading status in exchangeInfo (COIN-M says ``contractStatus``).
    status_key: str
    intervals: tuple[str, ...]
    #: Seconds between server pings.
    ping_interval_s: float
    #: The newest candles before ``endTime`` (COIN-M) instead of the oldest after ``startTime``.
    klines_newest_first: bool
    #: At most this many days between startTime and endTime on one klines call (COIN-M: 200).
    klines_max_span_days: int | None
    is_futures: bool

    def kline_weight(self, limit: int) -> int:
        """Request weight of one klines call with this ``limit``."""
        return futures_kline_weight(limit) if self.is_futures else _spot_kline_weight(limit)

    def stream_update_ms(self, interval: str) -> int:
        """How often a kline stream pushes: spot 2 s (1 s for ``1s``), futures 250 ms."""
        if self.is_futures:
            return 250
        return 1000 if interval == "1s" else 2000


SPOT = Market(
    name="spot",
    rest_prefix="/api/v3",
    ws_route="",
    default_rest_url="https://api.binance.com",
    default_ws_url="wss://stream.binance.com:9443",
    kline_default_limit=500,
    kline_max_limit=1000,
    default_weight_limit=6000,
    exchange_info_weight=20,
    max_streams_per_connection=1024,
    max_client_messages_per_second=5,
    status_key="status",
    intervals=("1s", *_FUTURES_INTERVALS),
    ping_interval_s=20.0,
    klines_newest_first=False,
    klines_max_span_days=None,
    is_futures=False,
)
UM = Market(
    name="um",
    rest_prefix="/fapi/v1",
    ws_route="/market",
    default_rest_url="https://fapi.binance.com",
    default_ws_url="wss://fstream.binance.com",
    kline_default_limit=500,
    kline_max_limit=1500,
    default_weight_limit=2400,
    exchange_info_weight=1,
    max_streams_per_connection=200,
    max_client_messages_per_second=10,
    status_key="status",
    intervals=_FUTURES_INTERVALS,
    ping_interval_s=180.0,
    klines_newest_first=False,
    klines_max_span_days=None,
    is_futures=True,
)
CM = Market(
    name="cm",
    rest_prefix="/dapi/v1",
    ws_route="",
    default_rest_url="https://dapi.binance.com",
    default_ws_url="wss://dstream.binance.com",
    kline_default_limit=500,
    kline_max_limit=1500,
    default_weight_limit=2400,
    exchange_info_weight=1,
    max_streams_per_connection=200,
    max_client_messages_per_second=10,
    status_key="contractStatus",
    intervals=_FUTURES_INTERVALS,
    ping_interval_s=180.0,
    klines_newest_first=True,
    klines_max_span_days=200,
    is_futures=True,
)
MARKETS: dict[str, Market] = {m.name: m for m in (SPOT, UM, CM)}

#: Spot pairs BMAC v2 leaves out of ``usdt_spot`` (stablecoins and fiat against USDT).
SPOT_STABLECOINS = frozenset(
    {
        "BKRWUSDT", "USDCUSDT", "USDPUSDT", "TUSDUSDT", "BUSDUSDT", "FDUSDUSDT", "DAIUSDT",
        "EURUSDT", "GBPUSDT", "USBPUSDT", "SUSDUSDT", "PAXGUSDT", "AEURUSDT", "USDSUSDT",
        "USDSBUSDT",
    }
)  # fmt: skip

_DELIVERY = frozenset({"CURRENT_QUARTER", "NEXT_QUARTER"})


@dataclass(frozen=True, slots=True)
class TradeType:
    """A BMAC trade type: which market, and which of its symbols it records."""

    name: str
    market: Market
    #: Required quote asset, or None for any (COIN-M quotes are always USD).
    quote_asset: str | None
    #: Allowed contract types, or None on spot.
    contract_types: frozenset[str] | None
    exclude_stablecoins: bool = False

    @property
    def is_delivery(self) -> bool:
        """Whether its contracts expire (usdt_deli, coin_deli)."""
        return self.contract_types == _DELIVERY

    def describe(self) -> str:
        """What it records, in words (``bmac-trio check`` prints it)."""
        quoted = f" quoted in {self.quote_asset}" if self.quote_asset else ""
        if self.contract_types is None:
            extra = ", stablecoin pairs left out" if self.exclude_stablecoins else ""
            return f"{self.market.name} pairs{quoted}{extra}"
        kinds = "/".join(sorted(self.contract_types))
        return f"{self.market.name} {kinds} contracts{quoted}"


#: Crypto perpetuals only: TradFi perpetuals (equities, ETFs, commodities; contractType
#: TRADIFI_PERPETUAL, on UM since 2026) stay out of BMAC's trade types and a crypto universe.
_PERP = frozenset({"PERPETUAL"})
_TRADIFI_PERP = frozenset({"TRADIFI_PERPETUAL"})
TRADE_TYPES: dict[str, TradeType] = {
    t.name: t
    for t in (
        TradeType("usdt_spot", SPOT, "USDT", None, exclude_stablecoins=True),
        TradeType("usdc_spot", SPOT, "USDC", None),
        TradeType("btc_spot", SPOT, "BTC", None),
        TradeType("usdt_perp", UM, "USDT", _PERP),
        TradeType("usdc_perp", UM, "USDC", _PERP),
        TradeType("btc_perp", UM, "BTC", _PERP),
        TradeType("usdt_deli", UM, "USDT", _DELIVERY),
        TradeType("coin_perp", CM, None, _PERP),
        TradeType("coin_deli", CM, None, _DELIVERY),
        TradeType("usdt_tradifi_perp", UM, "USDT", _TRADIFI_PERP),
    )
}
#: BMAC v1 names kept by v2; the data directory keeps the name the user wrote.
TRADE_TYPE_ALIASES = {"usdt_swap": "usdt_perp", "coin_swap": "coin_perp"}


def resolve_trade_type(name: str) -> TradeType:
    """The :class:`TradeType` for a config value, aliases included.

    Raises:
        KeyError: unknown trade type.
    """
    return TRADE_TYPES[TRADE_TYPE_ALIASES.get(name, name)]
