"""Where alerts go: DingDing (signed, as BMAC v2), WeChat Work (BMAC PR #8), a JSON webhook.

Pure: each sink turns one message into the URL and JSON body to POST; :func:`channels_from_config`
reads the config's ``dingding`` and ``msg_sender`` (every shape BMAC documented, including the
``type``-inside-the-channel one BMAC itself read, and the new ``webhook``). The sending, rate
limiting and timeouts are in :mod:`bmac_trio.ops.alerts`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from urllib.parse import quote_plus, urlsplit

import orjson

from bmac_trio.errors import ConfigError

__all__ = [
    "DEFAULT_CHANNEL",
    "DINGDING_BASE_URL",
    "DingDingSink",
    "Sink",
    "WeChatWorkSink",
    "WebhookSink",
    "channels_from_config",
    "dingding_sign",
]

DINGDING_BASE_URL: Final = "https://oapi.dingtalk.com"
#: The channel BMAC sent everything to; an alert of kind k goes to channel k if configured.
DEFAULT_CHANNEL: Final = "error"


def dingding_sign(secret: str, timestamp_ms: int) -> str:
    """DingDing's robot signature, as BMAC v2 computes it (reference §6.2).

    ``quote_plus(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")))``.
    """
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


class Sink(Protocol):
    """Where alerts go: builds the HTTP request for one message (pure, no I/O)."""

    name: str

    def request(self, kind: str, text: str, now_ms: int) -> tuple[str, bytes]:
        """The URL to POST to and the JSON body."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DingDingSink:
    """A DingDing custom robot with a signing secret."""

    access_token: str
    secret: str
    base_url: str = DINGDING_BASE_URL
    name: str = "dingding"

    def request(self, kind: str, text: str, now_ms: int) -> tuple[str, bytes]:
        sign = dingding_sign(self.secret, now_ms)  # already URL-quoted, as DingDing expects
        url = (
            f"{self.base_url.rstrip('/')}/robot/send?access_token={quote_plus(self.access_token)}"
            f"&timestamp={now_ms}&sign={sign}"
        )
        return url, orjson.dumps({"msgtype": "text", "text": {"content": text}})


@dataclass(frozen=True, slots=True, kw_only=True)
class WeChatWorkSink:
    """A WeChat Work group robot (BMAC PR #8): the text plus the time, as BMAC sent it."""

    webhook_url: str
    name: str = "wechat_work"

    def request(self, kind: str, text: str, now_ms: int) -> tuple[str, bytes]:
        stamp = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        body = {"msgtype": "text", "text": {"content": f"{text}\n{stamp}"}}
        return self.webhook_url, orjson.dumps(body)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSink:
    """A generic JSON webhook: ``{"source", "kind", "text", "time_ms", "time"}``."""

    url: str
    name: str = "webhook"

    def request(self, kind: str, text: str, now_ms: int) -> tuple[str, bytes]:
        stamp = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")
        body = {"source": "bmac-trio", "kind": kind, "text": text, "time_ms": now_ms, "time": stamp}
        return self.url, orjson.dumps(body)


def _sink_from_channel(kind: str, channel: Mapping[str, Any], where: str) -> Sink:
    sink: DingDingSink | WeChatWorkSink | WebhookSink
    try:
        if kind == "dingding":
            base = channel.get("base_url") or channel.get("url") or DINGDING_BASE_URL
            sink = DingDingSink(
                access_token=str(channel["access_token"]),
                secret=str(channel["secret"]),
                base_url=str(base),
            )
            url = sink.base_url
        elif kind == "wechat_work":
            sink = WeChatWorkSink(webhook_url=str(channel["webhook_url"]))
            url = sink.webhook_url
        elif kind == "webhook":
            sink = WebhookSink(url=str(channel["url"]))
            url = sink.url
        else:
            msg = f"{where}: unknown type {kind!r}; allowed: dingding, wechat_work, webhook"
            raise ConfigError(msg)
    except KeyError as exc:
        raise ConfigError(f"{where}: missing {exc.args[0]!r} for a {kind} channel") from None
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        valid = False
    if not valid:
        msg = f"{where}: bad URL {url!r} for a {kind} channel; expected http(s)://host/..."
        raise ConfigError(msg)
    return sink


def channels_from_config(
    dingding: Mapping[str, Any] | None, msg_sender: Mapping[str, Any] | None
) -> dict[str, list[Sink]]:
    """Channel name -> sinks, from both config keys.

    Raises:
        ConfigError: a channel lacks its keys or names an unknown type.
    """
    out: dict[str, list[Sink]] = {}
    for name, channel in (dingding or {}).items():
        if isinstance(channel, Mapping):
            out.setdefault(name, []).append(_sink_from_channel("dingding", channel, "dingding"))
    if msg_sender:
        top_type = msg_sender.get("type")
        flat = {k: v for k, v in msg_sender.items() if not isinstance(v, Mapping)}
        if top_type == "webhook" and "url" in flat:
            out.setdefault(DEFAULT_CHANNEL, []).append(
                _sink_from_channel("webhook", flat, "msg_sender")
            )
        for name, channel in msg_sender.items():
            if not isinstance(channel, Mapping):
                continue
            kind = channel.get("type", top_type)
            out.setdefault(name, []).append(
                _sink_from_channel(str(kind), channel, f"msg_sender.{name}")
            )
    return out
