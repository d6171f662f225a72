"""Alerts to DingDing, WeChat Work or a generic JSON webhook, rate-limited and never in the way.

BMAC v2 sent one DingDing message per crash from inside the failing code path, retried for up
to a minute, and (after PR #8) read the sender ``type`` from the wrong place so nothing was sent
at all. Here the recorder only calls :meth:`Alerter.notify`, which never blocks: the message goes
onto a bounded queue (dropped, counted and logged when full) and one task, :meth:`Alerter.run`,
sends it. That task limits each kind of alert with a token bucket, so an outage sends a handful
of messages and then one "N more suppressed" summary instead of thousands; every POST runs under
a real-time deadline and a failure is logged, never raised, so a dead webhook cannot disturb the
recording.

Config shapes (``config.json``)::

    "dingding":   {"error": {"access_token": "...", "secret": "..."}}              # BMAC v2
    "msg_sender": {"type": "dingding", "error": {"access_token": "...", "secret": "..."}}
    "msg_sender": {"type": "wechat_work", "error": {"webhook_url": "https://..."}}  # BMAC PR #8
    "msg_sender": {"error": {"type": "wechat_work", "webhook_url": "https://..."}}  # type inside
    "msg_sender": {"type": "webhook", "error": {"url": "https://..."}}              # new
    "msg_sender": {"type": "webhook", "url": "https://..."}                         # new, flat

An alert of kind ``k`` goes to the channel named ``k`` when one exists, else to ``error`` (the
only channel BMAC used). A DingDing channel may carry ``base_url`` (default
``https://oapi.dingtalk.com``) so that tests and proxies can receive it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol
from urllib.parse import quote_plus

import httpx
import orjson
import trio

from bmac_trio._clock import Clock
from bmac_trio._errors import ConfigError

__all__ = [
    "ALERT_KINDS",
    "AlertKind",
    "AlertPolicy",
    "Alerter",
    "AlerterStatistics",
    "DingDingSink",
    "NullAlerter",
    "Sink",
    "WeChatWorkSink",
    "WebhookSink",
    "build_alerter",
    "dingding_sign",
    "run_alerter",
]

LOGGER = logging.getLogger("bmac_trio.alerts")

AlertKind = Literal[
    "crash", "recovered", "symbols_missing", "listing", "delisting", "ban", "reconnects"
]
ALERT_KINDS: Final[tuple[str, ...]] = (
    "crash",
    "recovered",
    "symbols_missing",
    "listing",
    "delisting",
    "ban",
    "reconnects",
)
DINGDING_BASE_URL: Final = "https://oapi.dingtalk.com"
DEFAULT_CHANNEL: Final = "error"
#: How many alerts may wait for the sender before new ones are dropped.
QUEUE_SIZE: Final = 64
#: Content DingDing and WeChat Work accept in one text message (bytes; both cap near 4-5 KB).
MAX_TEXT: Final = 3800


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
    try:
        if kind == "dingding":
            return DingDingSink(
                access_token=str(channel["access_token"]),
                secret=str(channel["secret"]),
                base_url=str(channel.get("base_url") or channel.get("url") or DINGDING_BASE_URL),
            )
        if kind == "wechat_work":
            return WeChatWorkSink(webhook_url=str(channel["webhook_url"]))
        if kind == "webhook":
            return WebhookSink(url=str(channel["url"]))
    except KeyError as exc:
        raise ConfigError(f"{where}: missing {exc.args[0]!r} for a {kind} channel") from None
    raise ConfigError(f"{where}: unknown type {kind!r}; allowed: dingding, wechat_work, webhook")


def _channels(
    dingding: Mapping[str, Any] | None, msg_sender: Mapping[str, Any] | None
) -> dict[str, list[Sink]]:
    """Channel name -> sinks, from both config keys."""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPolicy:
    """Per-kind token bucket: ``burst`` at once, then ``per_hour`` a (real) hour.

    Over the limit, alerts are counted and coalesced into one "N more suppressed" message sent
    when the next token arrives. ``reconnect_threshold`` reconnects within ``reconnect_window``
    real seconds make one ``reconnects`` alert (a lone reconnect, e.g. Binance's 24 h cut, is
    normal). ``send_timeout`` bounds each POST (real seconds).
    """

    burst: int = 3
    per_hour: float = 6.0
    send_timeout: float = 10.0
    flush_timeout: float = 10.0
    reconnect_threshold: int = 5
    reconnect_window: float = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AlerterStatistics:
    """Counts since start, for status and tests."""

    queued: int
    sent: int
    failed: int
    suppressed: int
    dropped: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    suppressed: int = 0
    latest: str = ""


@dataclass(frozen=True, slots=True)
class _Alert:
    kind: str
    text: str
    at_ms: int


@dataclass(eq=False)
class Alerter:
    """Rate-limited alert sender; construct with :func:`build_alerter`.

    Usage::

        async with trio.open_nursery() as nursery:
            await nursery.start(alerter.run)
            ...
            alerter.notify("crash", "An error occurred ...")  # never blocks, never raises
    """

    channels: dict[str, list[Sink]]
    http: httpx.AsyncClient
    clock: Clock
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    prefix: str = "bmac-trio"

    def __post_init__(self) -> None:
        self._queued = self._sent = self._failed = self._suppressed = self._dropped = 0
        self._reconnects: deque[float] = deque()
        self._send, self._receive = trio.open_memory_channel[_Alert](QUEUE_SIZE)
        self._buckets: dict[str, _Bucket] = {}

    # --- called by the recorder -------------------------------------------------------------

    def notify(self, kind: AlertKind | str, text: str) -> None:
        """Queue an alert; drops it (with a counted warning) when the queue is full or closed."""
        self._queued += 1
        try:
            self._send.send_nowait(_Alert(kind, text, self.clock.now_ms()))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                LOGGER.warning(
                    "alert queue full: %d alerts dropped so far (%s)", self._dropped, kind
                )

    def note_reconnect(self, text: str) -> None:
        """Count a WebSocket reconnect; alert ``reconnects`` when they come too often."""
        now = trio.current_time()
        window = self._reconnects
        window.append(now)
        while window and window[0] < now - self.policy.reconnect_window:
            window.popleft()
        if len(window) >= self.policy.reconnect_threshold:
            minutes = self.policy.reconnect_window / 60
            self.notify("reconnects", f"{len(window)} reconnects in {minutes:g} min; last: {text}")
            window.clear()

    def close(self) -> None:
        """No more alerts: :meth:`run` sends what is queued and returns."""
        self._send.close()

    def statistics(self) -> AlerterStatistics:
        """What happened to the alerts so far."""
        return AlerterStatistics(
            queued=self._queued,
            sent=self._sent,
            failed=self._failed,
            suppressed=self._suppressed,
            dropped=self._dropped,
        )

    # --- the sending task -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued alerts until :meth:`close`, then flush; never raises on send failures.

        Channels:
            Owns the receiving end of the alert queue.

        Cancellation:
            On cancel, what is queued (including pending "suppressed" summaries) is still sent
            in a shielded flush bounded by ``policy.flush_timeout`` real seconds, so the alert
            about a crash that cancelled the recorder gets out.
        """
        task_status.started()
        with self._receive:
            try:
                while True:
                    alert: _Alert | None = None
                    with trio.move_on_at(self._next_summary_deadline()):
                        try:
                            alert = await self._receive.receive()
                        except trio.EndOfChannel:
                            break
                    if alert is not None:
                        await self._handle(alert)
                    await self._send_due_summaries()
            finally:
                with trio.move_on_after(self.policy.flush_timeout, shield=True):
                    await self._flush()

    async def _flush(self) -> None:
        while True:
            try:
                alert = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            await self._handle(alert)
        # Whatever is still suppressed gets one last summary, ignoring the bucket: we are leaving.
        for kind, bucket in self._buckets.items():
            if bucket.suppressed:
                await self._deliver(kind, self._summary(kind, bucket), self.clock.now_ms())
                bucket.suppressed = 0

    def _bucket(self, kind: str) -> _Bucket:
        now = trio.current_time()
        bucket = self._buckets.get(kind)
        if bucket is None:
            bucket = self._buckets[kind] = _Bucket(tokens=float(self.policy.burst), stamp=now)
        else:
            rate = self.policy.per_hour / 3600
            bucket.tokens = min(self.policy.burst, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        return bucket

    async def _handle(self, alert: _Alert) -> None:
        bucket = self._bucket(alert.kind)
        if bucket.tokens >= 1 and not bucket.suppressed:
            bucket.tokens -= 1
            await self._deliver(alert.kind, alert.text, alert.at_ms)
        else:
            bucket.suppressed += 1
            bucket.latest = alert.text
            self._suppressed += 1

    def _next_summary_deadline(self) -> float:
        rate = self.policy.per_hour / 3600
        waiting = [b for b in self._buckets.values() if b.suppressed]
        if not waiting or rate <= 0:
            return math.inf
        return min(b.stamp + max(0.0, 1 - b.tokens) / rate for b in waiting)

    async def _send_due_summaries(self) -> None:
        for kind in list(self._buckets):
            if self._buckets[kind].suppressed:
                bucket = self._bucket(kind)
                if bucket.tokens >= 1:
                    bucket.tokens -= 1
                    text = self._summary(kind, bucket)
                    bucket.suppressed = 0
                    await self._deliver(kind, text, self.clock.now_ms())

    @staticmethod
    def _summary(kind: str, bucket: _Bucket) -> str:
        return f"{bucket.suppressed} more {kind} alerts suppressed; latest: {bucket.latest}"

    async def _deliver(self, kind: str, text: str, at_ms: int) -> None:
        sinks = self.channels.get(kind) or self.channels.get(DEFAULT_CHANNEL) or []
        content = f"[{self.prefix}] {kind}: {text}"
        if len(content.encode()) > MAX_TEXT:
            content = content.encode()[: MAX_TEXT - 3].decode(errors="ignore") + "..."
        for sink in sinks:
            await self._post(sink, kind, content)

    async def _post(self, sink: Sink, kind: str, content: str) -> None:
        now_ms = self.clock.now_ms()
        url, body = sink.request(kind, content, now_ms)
        headers = {"Content-Type": "application/json; charset=utf-8"}
        try:
            with trio.fail_after(self.policy.send_timeout):
                response = await self.http.post(url, content=body, headers=headers)
            ok = response.status_code < 400 and _accepted(response)
        except (trio.TooSlowError, httpx.HTTPError) as exc:
            self._failed += 1
            LOGGER.warning("alert to %s failed: %s", sink.name, type(exc).__name__)
            return
        if ok:
            self._sent += 1
            LOGGER.info("alert sent to %s: %s", sink.name, kind)
        else:
            self._failed += 1
            LOGGER.warning(
                "alert to %s refused: HTTP %d %s",
                sink.name,
                response.status_code,
                response.text[:200],
            )


def _accepted(response: httpx.Response) -> bool:
    """DingDing and WeChat Work answer 200 with ``{"errcode": N}``; non-zero is a refusal."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return True
    return not (isinstance(body, dict) and body.get("errcode", 0) not in (0, None))


class NullAlerter:
    """The no-op default: same methods as :class:`Alerter`, sends nothing."""

    def notify(self, kind: AlertKind | str, text: str) -> None:
        """Ignore the alert."""

    def note_reconnect(self, text: str) -> None:
        """Ignore the reconnect."""

    def close(self) -> None:
        """Nothing to close."""

    def statistics(self) -> AlerterStatistics:
        return AlerterStatistics(queued=0, sent=0, failed=0, suppressed=0, dropped=0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Return at once (after reporting started): there is nothing to send."""
        task_status.started()


def build_alerter(
    dingding: Mapping[str, Any] | None,
    msg_sender: Mapping[str, Any] | None,
    *,
    http: httpx.AsyncClient,
    clock: Clock,
    policy: AlertPolicy | None = None,
    prefix: str = "bmac-trio",
) -> Alerter | NullAlerter:
    """An :class:`Alerter` for the config's ``dingding`` / ``msg_sender``; NullAlerter if none.

    Raises:
        ConfigError: a channel lacks its keys or names an unknown type.
    """
    channels = _channels(dingding, msg_sender)
    if not any(channels.values()):
        return NullAlerter()
    return Alerter(channels, http, clock, policy or AlertPolicy(), prefix)


async def run_alerter(
    alerter: Alerter | NullAlerter,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Top-level task form of :meth:`Alerter.run` (``await nursery.start(run_alerter, a)``)."""
    await alerter.run(task_status=task_status)
