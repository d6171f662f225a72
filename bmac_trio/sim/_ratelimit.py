"""Binance's per-IP request-weight accounting, 429s and 418 bans (pure; times in exchange ms).

Weight is counted per client IP per exchange-clock minute. A request that takes the minute
over the limit gets 429 with ``Retry-After`` = seconds to the end of the minute; a request sent
before that has passed gets a 418 ban (2 minutes, doubling up to 3 days), and so does every
request until the ban ends. Requests arriving within ``grace_ms`` of the 429 were already in
flight (the client could not have read it yet): they get 429 too, not a ban.
``Retry-After`` is in exchange seconds: a client on a scaled clock
may wait ``clock.to_real(retry_after)`` (waiting longer is always safe).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Verdict", "WeightLimiter"]

_MINUTE_MS = 60_000
_MAX_BAN_S = 3 * 86_400


@dataclass(slots=True)
class _IpState:
    minute: int = -1
    used: int = 0
    penalty_until: int = 0
    last_429: int = 0
    ban_until: int = 0
    bans: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What to answer: ``status`` 200 (go ahead), 429 or 418, and the headers' values."""

    status: int
    used: int
    retry_after: int | None = None
    code: int = 0
    msg: str = ""


def _ceil_s(ms: int) -> int:
    return max(1, -(-ms // 1000))


class WeightLimiter:
    """Weight per IP per minute, with Binance's 429 → 418 escalation."""

    def __init__(
        self, limit: int, *, futures: bool, ban_seconds: int = 120, grace_ms: int = 0
    ) -> None:
        self.limit = limit
        self.futures = futures
        self.ban_seconds = ban_seconds
        self.grace_ms = grace_ms
        self._ips: dict[str, _IpState] = {}
        self.weight_by_ip: dict[str, int] = {}

    def used(self, ip: str, now_ms: int) -> int:
        """Weight ``ip`` has used in the current minute."""
        st = self._ips.get(ip)
        if st is None or st.minute != now_ms // _MINUTE_MS:
            return 0
        return st.used

    def _state(self, ip: str, now_ms: int) -> _IpState:
        st = self._ips.setdefault(ip, _IpState())
        minute = now_ms // _MINUTE_MS
        if st.minute != minute:
            st.minute, st.used = minute, 0
        return st

    def _limit_msg(self) -> str:
        if self.futures:
            return (
                f"Too many requests; current limit is {self.limit} requests per minute. "
                "Please use the websocket for live updates to avoid polling the API."
            )
        return (
            f"Too much request weight used; current limit is {self.limit} request weight "
            "per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
        )

    def _banned(self, st: _IpState, now_ms: int) -> Verdict:
        return Verdict(
            status=418,
            used=st.used,
            retry_after=_ceil_s(st.ban_until - now_ms),
            code=-1003,
            msg=(
                f"Way too much request weight used; IP banned until {st.ban_until}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            ),
        )

    def _ban(self, st: _IpState, now_ms: int) -> Verdict:
        seconds = min(_MAX_BAN_S, self.ban_seconds * 2**st.bans)
        st.bans += 1
        st.ban_until = now_ms + seconds * 1000
        return self._banned(st, now_ms)

    def check(self, ip: str, weight: int, now_ms: int) -> Verdict:
        """Count a request of ``weight`` from ``ip`` and say whether it may proceed."""
        st = self._state(ip, now_ms)
        if now_ms < st.ban_until:
            return self._banned(st, now_ms)
        if now_ms < st.penalty_until:
            if now_ms - st.last_429 < self.grace_ms:
                return self._too_many(st, now_ms, st.penalty_until)
            return self._ban(st, now_ms)
        st.used += weight
        self.weight_by_ip[ip] = self.weight_by_ip.get(ip, 0) + weight
        if st.used > self.limit:
            st.last_429 = now_ms
            st.penalty_until = (st.minute + 1) * _MINUTE_MS
            return self._too_many(st, now_ms, st.penalty_until)
        return Verdict(status=200, used=st.used)

    def _too_many(self, st: _IpState, now_ms: int, until_ms: int) -> Verdict:
        return Verdict(
            status=429,
            used=st.used,
            retry_after=_ceil_s(until_ms - now_ms),
            code=-1003,
            msg=self._limit_msg(),
        )

    def force_429(self, ip: str, now_ms: int, retry_after_s: int) -> Verdict:
        """A 429 on demand (fault injection): a request before ``retry_after_s`` is banned."""
        st = self._state(ip, now_ms)
        if now_ms < st.ban_until:
            return self._banned(st, now_ms)
        if now_ms < st.penalty_until and now_ms - st.last_429 >= self.grace_ms:
            return self._ban(st, now_ms)
        st.last_429 = now_ms
        st.penalty_until = now_ms + retry_after_s * 1000
        return self._too_many(st, now_ms, st.penalty_until)
