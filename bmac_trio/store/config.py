"""``<base_dir>/config.json``: BMAC v2's keys with their meanings and defaults, plus ours.

Everything is validated before anything is written: a bad file raises :class:`ConfigError` with
one message naming the key, the bad value and what is allowed (BMAC accepted anything and failed
later, e.g. ``1d`` crashed at the first period). Decisions that differ from BMAC:

* a config BMAC accepted still starts, but nothing is ignored silently: an unknown key (BMAC
  ignored it, so a typo such as ``num_candle`` went unnoticed) and ``funding_rate: true`` on a
  spot trade type (BMAC forced it to false) are kept in :attr:`Config.warnings`, which ``run``
  logs and ``check`` prints, with "did you mean 'num_candles'?" for a near miss;
* a key written twice (``"interval"`` twice: JSON parsers silently keep the last) is refused;
  ``bool`` is not accepted where an ``int`` is expected;
* ``keep_symbols`` must be a non-empty list of safe symbol names (an empty list would record
  nothing);
* ``msg_sender`` accepts BMAC PR #8's ``{"type": "dingding"|"wechat_work", "<channel>": {...}}``
  plus ``"type": "webhook"`` whose channels carry ``{"url": ...}``;
* new keys: ``rest_url`` / ``ws_url`` (base URLs to which Binance's own paths are appended;
  default: the market's Binance hosts) and ``timezone`` (the zone of ready-file names; default
  Asia/Hong_Kong, as in BMAC), ``publish`` (the live bus's endpoints, docs/bus.md);
* ``nats`` (absent or null: off): ``{"servers": ["nats://host:4222", ...], "stream": "...",
  "subject_prefix": "...", "replicas": 1}``, the JetStream stream the recorder also publishes
  to (docs/nats.md). Validated here without importing any NATS code.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from bmac_trio.binance.intervals import Interval, parse_interval
from bmac_trio.binance.markets import TRADE_TYPE_ALIASES, TRADE_TYPES, Market, TradeType
from bmac_trio.binance.symbols import MAX_SYMBOL_LENGTH, is_safe_symbol
from bmac_trio.errors import ConfigError
from bmac_trio.store.layout import (
    DEFAULT_TIMEZONE,
    EXTENSIONS,
    FORMAT_VERSION,
    SaveType,
    candle_dir,
    exginfo_dir,
)

__all__ = [
    "CONFIG_FILE",
    "KNOWN_KEYS",
    "Config",
    "NatsConfig",
    "default_publish_endpoint",
    "load_config",
    "parse_config",
]

CONFIG_FILE: Final = "config.json"
NUM_CANDLES_MAX: Final = 10_000
_MSG_SENDER_TYPES: Final = {
    "dingding": ("access_token", "secret"),
    "wechat_work": ("webhook_url",),
    "webhook": ("url",),
}
_DEFAULT_ZONE: Final = ZoneInfo(DEFAULT_TIMEZONE)
#: Every key config.json may hold.
KNOWN_KEYS: Final = frozenset(
    {
        "interval",
        "trade_type",
        "num_candles",
        "funding_rate",
        "keep_symbols",
        "save_type",
        "http_timeout_sec",
        "candle_close_timeout_sec",
        "num_rest_fetchers",
        "num_socket_listeners",
        "dingding",
        "msg_sender",
        "rest_url",
        "ws_url",
        "timezone",
        "publish",
        "nats",
    }
)
#: Longest ipc:// path libzmq can bind (a Unix socket path, 107 bytes on Linux, minus margin).
MAX_IPC_PATH: Final = 100
_PUBLISH_SCHEMES: Final = ("ipc://", "tcp://")
_NATS_KEYS: Final = frozenset({"servers", "stream", "subject_prefix", "replicas"})
_NATS_SCHEMES: Final = ("nats", "tls")
_NATS_TOKEN_BAD: Final = frozenset(" \t\r\n*>")


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsConfig:
    """The ``nats`` key: where the recorder publishes the market (JetStream)."""

    servers: tuple[str, ...]
    #: The JetStream stream (created if missing): ``BMAC_<trade_type>_<interval>`` by default.
    stream: str
    #: Subjects are ``<prefix>.candle.<SYMBOL>``, ``<prefix>.period``, ... (``bmac.<tt>.<iv>``).
    subject_prefix: str
    #: Copies of the stream in a cluster (1 on a single server).
    replicas: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A validated config.json."""

    base_dir: Path
    interval: Interval
    #: The trade type as the user wrote it (``usdt_swap`` stays ``usdt_swap``): names the dir.
    trade_type_name: str
    trade_type: TradeType
    num_candles: int = 1500
    funding_rate: bool = False
    keep_symbols: frozenset[str] | None = None
    save_type: SaveType = "parquet"
    http_timeout_sec: float = 5
    candle_close_timeout_sec: float = 15
    num_rest_fetchers: int = 8
    #: A floor: more connections open when the per-connection stream cap needs them.
    num_socket_listeners: int = 8
    dingding: dict[str, Any] | None = None
    msg_sender: dict[str, Any] | None = None
    rest_url: str = ""
    ws_url: str = ""
    timezone: ZoneInfo = _DEFAULT_ZONE
    #: What was ignored (unknown keys, spot funding): ``run`` logs them, ``check`` prints them.
    warnings: tuple[str, ...] = ()
    #: The live bus's endpoints; None: the default ``ipc://<base_dir>/bmac.sock``; (): off.
    publish: tuple[str, ...] | None = None
    nats: NatsConfig | None = None

    @property
    def publish_endpoints(self) -> tuple[str, ...]:
        """Where the live bus publishes (empty: ``"publish": false``)."""
        if self.publish is None:
            return (default_publish_endpoint(self.base_dir),)
        return self.publish

    @property
    def market(self) -> Market:
        """The Binance market of the trade type."""
        return self.trade_type.market

    @property
    def candle_dir(self) -> Path:
        """``<base>/<trade_type>_<interval>``."""
        return candle_dir(self.base_dir, self.trade_type_name, self.interval.name)

    @property
    def exginfo_dir(self) -> Path:
        """``<base>/exginfo_<interval>``."""
        return exginfo_dir(self.base_dir, self.interval.name)

    def to_meta(self) -> dict[str, Any]:
        """The metadata file's content: what a reader needs to configure itself."""
        return {
            "format_version": FORMAT_VERSION,
            "interval": self.interval.name,
            "interval_ms": self.interval.ms,
            "trade_type": self.trade_type_name,
            "canonical_trade_type": self.trade_type.name,
            "market": self.market.name,
            "save_type": self.save_type,
            "extension": EXTENSIONS[self.save_type],
            "timezone": self.timezone.key,
            "num_candles": self.num_candles,
            "funding_rate": self.funding_rate,
        }


def default_publish_endpoint(base_dir: Path) -> str:
    """``ipc://<base_dir>/bmac.sock``; when that path is too long for a Unix socket, an
    abstract (Linux) socket named after the directory, ``ipc://@bmac-<hash>.sock``."""
    path = Path(base_dir).resolve() / "bmac.sock"
    if len(str(path).encode()) <= MAX_IPC_PATH:
        return f"ipc://{path}"
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:24]
    return f"ipc://@bmac-{digest}.sock"


def load_config(base_dir: Path) -> Config:
    """Read and validate ``<base_dir>/config.json``.

    Raises:
        ConfigError: the file is missing, not JSON, or a key is missing, unknown or bad.
    """
    path = Path(base_dir) / CONFIG_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        msg = f"{path}: no config file (create it with at least interval and trade_type)"
        raise ConfigError(msg) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    json.loads(raw, object_pairs_hook=partial(_refuse_duplicates, source=str(path)))
    return parse_config(data, base_dir=Path(base_dir), source=str(path))


def parse_config(data: object, *, base_dir: Path, source: str = CONFIG_FILE) -> Config:
    """Validate an already decoded config object (see :func:`load_config`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must hold a JSON object, got {_short(data)}")
    warnings = [_unknown_key_warning(source, key) for key in sorted(set(data) - KNOWN_KEYS)]

    def bad(key: str, allowed: str) -> ConfigError:
        return ConfigError(f"{source}: bad {key!r}: {_short(data.get(key))}; allowed: {allowed}")

    for key in ("interval", "trade_type"):
        if key not in data:
            raise ConfigError(f"{source}: missing required key {key!r}")

    trade_type_name = data["trade_type"]
    all_names = sorted([*TRADE_TYPES, *TRADE_TYPE_ALIASES])
    if not isinstance(trade_type_name, str) or (
        TRADE_TYPE_ALIASES.get(trade_type_name, trade_type_name) not in TRADE_TYPES
    ):
        raise bad("trade_type", ", ".join(all_names))
    trade_type = TRADE_TYPES[TRADE_TYPE_ALIASES.get(trade_type_name, trade_type_name)]
    market = trade_type.market

    interval_name = data["interval"]
    if not isinstance(interval_name, str) or interval_name not in market.intervals:
        raise bad("interval", f"one of {', '.join(market.intervals)} for {trade_type_name}")
    interval = parse_interval(interval_name)

    num_candles = _int(data, "num_candles", 1500, 1, NUM_CANDLES_MAX, bad)
    funding_rate = data.get("funding_rate", False)
    if not isinstance(funding_rate, bool):
        raise bad("funding_rate", "true or false")
    if funding_rate and not market.is_futures:
        warnings.append(
            f"{source}: 'funding_rate' true ignored for {trade_type_name} "
            "(spot has no funding rate; no funding file is written)"
        )
        funding_rate = False

    keep = data.get("keep_symbols")
    keep_symbols: frozenset[str] | None = None
    if keep is not None:
        if not isinstance(keep, list) or not keep or not all(is_safe_symbol(s) for s in keep):
            raise bad(
                "keep_symbols",
                f"null or a non-empty list of symbol names (1-{MAX_SYMBOL_LENGTH} letters, "
                "digits, '_' or '-')",
            )
        keep_symbols = frozenset(keep)

    save_type = data.get("save_type", "parquet")
    if save_type not in EXTENSIONS:
        raise bad("save_type", '"parquet" or "feather"')

    http_timeout = _number(data, "http_timeout_sec", 5, 0.1, 300, bad)
    close_timeout = _number(data, "candle_close_timeout_sec", 15, 1, 3600, bad)
    fetchers = _int(data, "num_rest_fetchers", 8, 1, 64, bad)
    listeners = _int(data, "num_socket_listeners", 8, 1, 256, bad)

    dingding = data.get("dingding")
    if dingding is not None and not _valid_channels(dingding, ("access_token", "secret")):
        raise bad(
            "dingding",
            'null or {"<channel>": {"access_token": "...", "secret": "..."}} (channel "error" '
            "receives the alerts)",
        )
    msg_sender = data.get("msg_sender")
    if msg_sender is not None:
        # "type" at the top (PR #8's examples) or inside each channel (BMAC's report_error)
        ok = isinstance(msg_sender, dict) and msg_sender.get("type", "") in {*_MSG_SENDER_TYPES, ""}
        if ok:
            channels = {k: v for k, v in msg_sender.items() if k != "type"}
            ok = bool(channels) and all(
                isinstance(ch, dict)
                and (kind := ch.get("type", msg_sender.get("type"))) in _MSG_SENDER_TYPES
                and _valid_channels({name: ch}, _MSG_SENDER_TYPES[kind])
                for name, ch in channels.items()
            )
        if not ok:
            raise bad(
                "msg_sender",
                'null or {"type": "dingding"|"wechat_work"|"webhook", "<channel>": {...}} '
                "with access_token+secret (dingding), webhook_url (wechat_work) or url (webhook)",
            )

    rest_url = _url(data, "rest_url", market.default_rest_url, ("http", "https"), bad)
    ws_url = _url(data, "ws_url", market.default_ws_url, ("ws", "wss"), bad)

    tz_name = data.get("timezone")
    if tz_name is None:  # absent or null: BMAC's Hong Kong time
        tz_name = DEFAULT_TIMEZONE
    try:
        if not isinstance(tz_name, str) or not tz_name:
            raise ValueError
        timezone = ZoneInfo(tz_name)
    except (ValueError, ZoneInfoNotFoundError):
        raise bad("timezone", 'an IANA time zone name such as "Asia/Hong_Kong" or "UTC"') from None

    publish = _publish(data, bad)
    nats = _nats(data.get("nats"), trade_type_name, interval.name, bad)

    return Config(
        base_dir=Path(base_dir),
        interval=interval,
        trade_type_name=trade_type_name,
        trade_type=trade_type,
        num_candles=num_candles,
        funding_rate=funding_rate,
        keep_symbols=keep_symbols,
        save_type=save_type,
        http_timeout_sec=http_timeout,
        candle_close_timeout_sec=close_timeout,
        num_rest_fetchers=fetchers,
        num_socket_listeners=listeners,
        dingding=dingding,
        msg_sender=msg_sender,
        rest_url=rest_url,
        ws_url=ws_url,
        timezone=timezone,
        warnings=tuple(warnings),
        publish=publish,
        nats=nats,
    )


def _unknown_key_warning(source: str, key: object) -> str:
    near = difflib.get_close_matches(str(key), sorted(KNOWN_KEYS), n=1)
    hint = f"did you mean {near[0]!r}?" if near else f"known keys: {', '.join(sorted(KNOWN_KEYS))}"
    return f"{source}: unknown key {key!r} ignored ({hint})"


def _refuse_duplicates(pairs: list[tuple[str, Any]], *, source: str) -> dict[str, Any]:
    """``object_pairs_hook``: a key written twice is refused (parsers keep the last silently)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            msg = (
                f"{source}: key {key!r} appears twice ({_short(seen[key])} and {_short(value)}); "
                "keep one"
            )
            raise ConfigError(msg)
        seen[key] = value
    return seen


def _nats(value: object, trade_type: str, interval: str, bad: Any) -> NatsConfig | None:
    """Validate the ``nats`` key (see :class:`NatsConfig`)."""
    if value is None:
        return None
    allowed = (
        'null or {"servers": ["nats://host:port", ...], "stream": NAME, "subject_prefix": '
        '"a.b.c", "replicas": 1-5} (stream and subject_prefix optional, without spaces, '
        "'*', '>' or '.' in the stream name)"
    )
    if not isinstance(value, dict) or set(value) - _NATS_KEYS or "servers" not in value:
        raise bad("nats", allowed)
    servers = value["servers"]
    if isinstance(servers, str):
        servers = [servers]
    if not isinstance(servers, list) or not servers or not all(_nats_url(s) for s in servers):
        raise bad("nats", allowed)
    stream = value.get("stream") or f"BMAC_{trade_type}_{interval}"
    prefix = value.get("subject_prefix") or f"bmac.{trade_type}.{interval}"
    replicas = value.get("replicas", 1)
    if (
        not isinstance(stream, str)
        or set(stream) & (_NATS_TOKEN_BAD | {".", "/"})
        or not isinstance(prefix, str)
        or set(prefix) & _NATS_TOKEN_BAD
        or "" in prefix.split(".")
        or isinstance(replicas, bool)
        or not isinstance(replicas, int)
        or not 1 <= replicas <= 5
    ):
        raise bad("nats", allowed)
    return NatsConfig(
        servers=tuple(servers), stream=stream, subject_prefix=prefix, replicas=replicas
    )


def _nats_url(value: object) -> bool:
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return False
    return parts.scheme in _NATS_SCHEMES and bool(parts.hostname) and port_ok


def _publish(data: Mapping[str, Any], bad: Any) -> tuple[str, ...] | None:
    value = data.get("publish")
    if value is None or value is True:
        return None
    if value is False:
        return ()
    allowed = (
        f"false, null (ipc://<base_dir>/bmac.sock) or a non-empty list of ipc://<path> (at most "
        f"{MAX_IPC_PATH} bytes) or tcp://<host>:<port> endpoints"
    )
    if not isinstance(value, list) or not value:
        raise bad("publish", allowed)
    for endpoint in value:
        if not isinstance(endpoint, str) or not endpoint.startswith(_PUBLISH_SCHEMES):
            raise bad("publish", allowed)
        rest = endpoint.split("://", 1)[1]
        if endpoint.startswith("ipc://") and not 0 < len(rest.encode()) <= MAX_IPC_PATH:
            raise bad("publish", allowed)
        if endpoint.startswith("tcp://"):
            host, _, port = rest.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65535:
                raise bad("publish", allowed)
    return tuple(value)


def _int(data: Mapping[str, Any], key: str, default: int, lo: int, hi: int, bad: Any) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad(key, f"an integer from {lo} to {hi} (default {default})")
    return value


def _number(
    data: Mapping[str, Any], key: str, default: float, lo: float, hi: float, bad: Any
) -> float:
    value = data.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not lo <= value <= hi
    ):
        raise bad(key, f"a number of seconds from {lo:g} to {hi:g} (default {default})")
    return value


def _url(
    data: Mapping[str, Any], key: str, default: str, schemes: tuple[str, ...], bad: Any
) -> str:
    value = data.get(key)
    if value is None:
        return default
    allowed = (
        f"null (Binance's {default}) or a base URL {'|'.join(schemes)}://host[:port][/prefix] "
        "without query or fragment"
    )
    if not isinstance(value, str):
        raise bad(key, allowed)
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise bad(key, allowed) from None
    if (
        parts.scheme not in schemes
        or not parts.hostname
        or not port_ok
        or parts.query
        or parts.fragment
        or parts.username
        or any(c.isspace() for c in value)
    ):
        raise bad(key, allowed)
    return value.rstrip("/")


def _valid_channels(value: object, needed: tuple[str, ...]) -> bool:
    if not isinstance(value, dict) or not value:
        return False
    for name, channel in value.items():
        if not isinstance(name, str) or not isinstance(channel, dict):
            return False
        if not all(isinstance(channel.get(k), str) and channel.get(k) for k in needed):
            return False
    return True


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
