"""The REST weight budget: never above 90% of the minute's limit, never banned. Pure.

Binance counts request weight per IP per clock minute of its server and reports the running
total in ``x-mbx-used-weight-1m``. The budget keeps the larger of that report and its own count
(weight of calls granted this minute whose answer carried no header), adds the calls still in
flight, and grants a call only if the sum stays within ``safety * limit``; otherwise the caller
waits until the next exchange-clock minute. A 429 or 418 blocks everything until Retry-After
has passed (a 418 without Retry-After: 2 minutes, Binance's shortest ban).

Usage by a fetcher (times from the injected clock)::

    while (wait_ms := budget.reserve(weight, clock.now_ms())) > 0:
        await clock.sleep_until_ms(clock.now_ms() + wait_ms)
    ... send ...
    budget.note_used(parse_weight_headers(headers), clock.now_ms(), reserved=weight)
    # or, on 429/418: budget.on_rate_limited(retry_after, banned, now_ms); budget.release(weight)

``note_used`` without ``reserved`` releases the oldest call in flight (one response, one call);
``limit`` may be assigned (``budget.limit = info.weight_limit``) and the cap follows.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Final

__all__ = ["MINUTE_MS", "WeightBudget"]

MINUTE_MS: Final = 60_000
_BAN_DEFAULT_S: Final = 120.0
#: A reservation nobody released is forgotten after this long (a caller's missed release
#: must not shrink the budget forever).
STALE_RESERVATION_MS: Final = 2 * MINUTE_MS


class WeightBudget:
    """Rate-limit state for one IP's REST weight.

    Args:
        limit_per_minute: REQUEST_WEIGHT per minute (from exchangeInfo ``rateLimits``).
        safety: the share of the limit we allow ourselves.
    """

    def __init__(self, limit_per_minute: int, safety: float = 0.9) -> None:
        if limit_per_minute <= 0 or not 0 < safety <= 1:
            raise ValueError("limit_per_minute must be positive and 0 < safety <= 1")
        self.safety = safety
        self._limit = limit_per_minute
        self.cap = max(1, math.floor(limit_per_minute * safety))
        self._minute = -1
        self._server_used = 0
        self._own_used = 0
        #: (granted at, weight) of calls not answered yet, oldest first
        self._flight: deque[tuple[int, int]] = deque()
        self._blocked_until_ms = 0
        self._spent = 0
        self._calls = 0
        self._waits = 0
        self._rate_limited = 0
        self._banned = 0
        self._peak_used = 0

    @property
    def limit(self) -> int:
        """REQUEST_WEIGHT per minute; assigning it moves the cap too."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        self.set_limit(value)

    def set_limit(self, limit_per_minute: int) -> None:
        """Adopt a new limit (a fresh exchangeInfo said so)."""
        if limit_per_minute > 0:
            self._limit = limit_per_minute
            self.cap = max(1, math.floor(limit_per_minute * self.safety))

    def _roll(self, now_ms: int) -> None:
        minute = now_ms // MINUTE_MS
        if minute != self._minute:
            self._minute = minute
            self._server_used = 0
            self._own_used = 0
        while self._flight and self._flight[0][0] < now_ms - STALE_RESERVATION_MS:
            self._flight.popleft()

    @property
    def _in_flight(self) -> int:
        return sum(weight for _, weight in self._flight)

    def _take(self, weight: int | None) -> int:
        """Remove one call from the in-flight list (the oldest, or the oldest of ``weight``)."""
        if not self._flight:
            return 0
        if weight is not None:
            for item in self._flight:
                if item[1] == weight:
                    self._flight.remove(item)
                    return weight
        return self._flight.popleft()[1]

    @property
    def used(self) -> int:
        """Weight counted against the current minute, calls in flight included."""
        return max(self._server_used, self._own_used) + self._in_flight

    def blocked_until_ms(self) -> int:
        """When a 429/418 block ends (0 when never blocked)."""
        return self._blocked_until_ms

    def reserve(self, weight: int, now_ms: int) -> int:
        """Grant ``weight`` now (returns 0, and the weight is in flight) or say how many
        milliseconds to wait before asking again."""
        self._roll(now_ms)
        if now_ms < self._blocked_until_ms:
            self._waits += 1
            return self._blocked_until_ms - now_ms
        fits = self.used + weight <= self.cap
        if not fits and self.used > 0:
            self._waits += 1
            return (self._minute + 1) * MINUTE_MS - now_ms
        # fits, or a single call larger than the cap on an idle minute (cannot wait it out)
        self._flight.append((now_ms, weight))
        self._spent += weight
        self._calls += 1
        self._peak_used = max(self._peak_used, self.used)
        return 0

    def note_used(self, weight_1m: int | None, now_ms: int, *, reserved: int | None = None) -> None:
        """A response arrived: ``weight_1m`` from its header (None if absent); the call it
        answers (``reserved`` weight, or the oldest) is no longer in flight."""
        self._roll(now_ms)
        self._own_used += self._take(reserved)
        if weight_1m is not None:
            self._server_used = max(self._server_used, weight_1m)
        self._peak_used = max(self._peak_used, max(self._server_used, self._own_used))

    def release(self, weight: int | None = None) -> None:
        """A reserved call was never answered (cancelled, connection failed): stop counting it
        as in flight; its weight still counts for the minute, to stay on the safe side."""
        self._own_used += self._take(weight)

    def on_rate_limited(self, retry_after_s: float | None, banned: bool, now_ms: int) -> None:
        """A 429 (``banned=False``) or 418: block every call until Retry-After has passed."""
        self._roll(now_ms)
        if banned:
            self._banned += 1
        else:
            self._rate_limited += 1
        if retry_after_s is None:
            wait_ms = _BAN_DEFAULT_S * 1000 if banned else (self._minute + 1) * MINUTE_MS - now_ms
        else:
            wait_ms = max(0.0, retry_after_s) * 1000
        self._blocked_until_ms = max(self._blocked_until_ms, now_ms + math.ceil(wait_ms))
        self._server_used = max(self._server_used, self.limit)

    def stats(self) -> dict[str, Any]:
        """Counters for logs, status and tests."""
        return {
            "limit": self._limit,
            "cap": self.cap,
            "used": self.used,
            "in_flight": self._in_flight,
            "spent": self._spent,
            "calls": self._calls,
            "waits": self._waits,
            "rate_limited": self._rate_limited,
            "banned": self._banned,
            "blocked_until_ms": self._blocked_until_ms,
            "peak_used": self._peak_used,
        }
