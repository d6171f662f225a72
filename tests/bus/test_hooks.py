"""FanOut: several publishers behind the dispatcher's one ``bus``."""

from __future__ import annotations

from typing import Any

from bmac_trio.bus.hooks import FanOut


class Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def candles(self, symbol: str, candles: Any, *, source: str, received: float) -> None:
        self.calls.append(("candles", (symbol, tuple(candles), source)))

    def period(self, **report: Any) -> None:
        self.calls.append(("period", (report["run_time_ms"],)))

    def symbols(self, symbols: Any) -> None:
        self.calls.append(("symbols", tuple(symbols)))


class WithEarlyAnnouncement(Recording):
    def period_started(self, run_time_ms: int, expected: frozenset[str]) -> None:
        self.calls.append(("period_started", (run_time_ms,)))

    def arrived(self, symbol: str, open_ms: int) -> None:
        self.calls.append(("arrived", (symbol, open_ms)))


class WithFiles(Recording):
    def retired(self, symbol: str) -> None:
        self.calls.append(("retired", (symbol,)))


def test_fan_out_forwards_each_optional_hook_to_the_publishers_that_have_it() -> None:
    zmq_like, nats_like = WithEarlyAnnouncement(), WithFiles()
    bus = FanOut([zmq_like, nats_like])
    # the dispatcher looks optional hooks up with getattr: they must not vanish behind FanOut
    started = getattr(bus, "period_started", None)
    assert started is not None
    started(60_000, frozenset({"BTCUSDT"}))
    getattr(bus, "arrived")("BTCUSDT", 0)  # noqa: B009 - as the dispatcher does
    getattr(bus, "retired")("OLDUSDT")  # noqa: B009
    assert getattr(bus, "no_such_hook", None) is None
    bus.candles("BTCUSDT", [], source="ws", received=0.0)
    assert zmq_like.calls == [
        ("period_started", (60_000,)),
        ("arrived", ("BTCUSDT", 0)),
        ("candles", ("BTCUSDT", (), "ws")),
    ]
    assert nats_like.calls == [("retired", ("OLDUSDT",)), ("candles", ("BTCUSDT", (), "ws"))]
    assert getattr(FanOut([Recording()]), "retired", None) is None
