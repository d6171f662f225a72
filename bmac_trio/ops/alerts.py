"""Alerts to DingDing, WeChat Work or a generic JSON webhook, rate-limited and never in the way.

BMAC v2 sent one DingDing message per crash from inside the failing code path, retried for up
to a minute, and (after PR #8) read the sender ``type`` from the wrong place so nothing was sent
at all. Here the recorder only calls :meth:`Alerter.notify`, which never blocks and never
raises. It applies a per-kind token bucket at once (a handful at first, then a few an hour), so
an outage's thousand alerts become a few messages plus one "N more suppressed" summary and never
fill the queue; what may be sent goes onto a bounded queue (dropped, counted and logged if a
slow webhook lets it fill). One task, :meth:`Alerter.run`, sends: every POST runs under a
real-time deadline and any failure is logged and counted, never raised, so a dead webhook cannot
disturb the recording.

Config shapes (``config.json``)::

    "dingding":   {"error": {"access_token": "...", "secret": "..."}}              # BMAC v2
    "msg_sender": {"type": "dingding", "error": {"access_token": "...", "secret": "..."}}
    "msg_sender": {"type": "wechat_work", "error": {"webhook_url": "https://..."}}  # BMAC PR #8
    "msg_sender": {"error": {"type": "wechat_work", "webhook_url": "https://..."}}  # type inside
    "msg_sender": {"type": "webhook", "error": {"url": "https://..."}}              # new
    "msg_sender": {"type": "webhook", "url": "https://..."}                         # new, flat

An alert of kind ``k`` goes to the channel named ``k`` when one exists, else to ``error`` (the
only channel BMAC used). A DingDing channel may carry ``base_url`` (default
``https://oapi.dingtalk.com``) so that tests and proxies can receive it. The sinks and the config
shapes are in :mod:`bmac_trio.ops.alert_sinks`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import httpx
import orjson
import trio

from bmac_trio.clock import Clock
from bmac_trio.ops.alert_sinks import (
    DEFAULT_CHANNEL,
    DingDingSink,
    Sink,
    WebhookSink,
    WeChatWorkSink,
    channels_from_config,
    dingding_sign,
)

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
#: How many alerts may wait for the sender before new ones are dropped.
QUEUE_SIZE: Final = 64
#: Content DingDing and WeChat Work accept in one text message (bytes; both cap near 4-5 KB).
MAX_TEXT: Final = 3800


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
        self._send, self._receive = trio.open_memory_channel[_Alert | None](QUEUE_SIZE)
        self._buckets: dict[str, _Bucket] = {}

    # --- called by the recorder -------------------------------------------------------------

    def notify(self, kind: AlertKind | str, text: str) -> None:
        """Queue an alert, or count it as suppressed when its kind is over the rate limit.

        Never blocks and never raises: when the queue is full (the webhook is slow) or closed,
        the alert is dropped with a counted warning.
        """
        bucket = self._bucket(kind)
        if bucket.tokens >= 1 and not bucket.suppressed:
            bucket.tokens -= 1
            self._queued += 1
            self._put(_Alert(kind, text), kind)
            return
        bucket.latest = text
        bucket.suppressed += 1
        self._suppressed += 1
        if bucket.suppressed == 1:
            self._put(None, kind)  # wake the sender: a summary is now due at the next token

    def _put(self, alert: _Alert | None, kind: str) -> None:
        try:
            self._send.send_nowait(alert)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            if alert is None:
                return  # the sender is busy or gone; it recomputes its deadline anyway
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                LOGGER.warning("alert queue full: %d dropped so far (%s)", self._dropped, kind)

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
        """No more alerts: :meth:`run` sends what is queued, the summaries, and returns."""
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
        """Send queued alerts and due summaries until :meth:`close`; never raises on failures.

        Channels:
            Owns the receiving end of the alert queue.

        Cancellation:
            On cancel (or close), what is queued and every pending "suppressed" summary is
            still sent, in a shielded flush bounded by ``policy.flush_timeout`` real seconds,
            so the alert about a crash that cancelled the recorder gets out.
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
                        await self._deliver(alert.kind, alert.text)
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
            if alert is not None:
                await self._deliver(alert.kind, alert.text)
        # Whatever is still suppressed gets one last summary, ignoring the bucket: we are leaving.
        for kind, bucket in self._buckets.items():
            if bucket.suppressed:
                text = self._summary(kind, bucket)
                bucket.suppressed = 0
                await self._deliver(kind, text)

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
                    await self._deliver(kind, text)

    @staticmethod
    def _summary(kind: str, bucket: _Bucket) -> str:
        return f"{bucket.suppressed} more {kind} alerts suppressed; latest: {bucket.latest}"

    async def _deliver(self, kind: str, text: str) -> None:
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
        except Exception as exc:  # whatever the webhook does (timeout included), recording goes on
            self._failed += 1
            LOGGER.warning("alert to %s failed: %s: %s", sink.name, type(exc).__name__, exc)
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
    channels = channels_from_config(dingding, msg_sender)
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
