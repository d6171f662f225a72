"""``bmac-trio tail``: the live bus's messages as they arrive, gaps flagged."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
import zmq

from bmac_trio.bus.endpoints import is_endpoint
from bmac_trio.bus.messages import (
    BusMessage,
    CandleEvent,
    CandlesReply,
    Heartbeat,
    PeriodEvent,
    SymbolsEvent,
    decode,
    decode_body,
)
from bmac_trio.clock import unix_us
from bmac_trio.errors import BmacError
from bmac_trio.store.config import load_config

__all__ = ["GapTracker", "describe", "tail"]

#: Milliseconds between checks for Ctrl-C while no message arrives.
_POLL_MS = 200


def tail(
    source: str,
    /,
    *,
    topic: str = "",
    json: bool = False,
    count: int | None = None,
) -> int:
    """Print the live bus's messages of SOURCE as they arrive and flag lost ones.

    Parameters
    ----------
    source
        The recorder's data directory, or a PUB endpoint (ipc://PATH, tcp://HOST:PORT).
    topic
        Only messages whose topic starts with this (candle.BTCUSDT, candle., period, ...).
    json
        One JSON object per line (header, and the body decoded; Arrow bodies as row counts).
    count
        Exit after this many messages.
    """
    try:
        endpoint = _endpoint(source)
    except BmacError as exc:
        print(f"bmac-trio tail: {exc}", file=sys.stderr)
        return 2
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    sock.connect(endpoint)
    print(f"# listening on {endpoint} (topic {topic or '*'})", file=sys.stderr)
    gaps = GapTracker(by_topic=bool(topic))
    seen = 0
    try:
        while count is None or seen < count:
            if not sock.poll(_POLL_MS):
                continue
            frames = sock.recv_multipart()
            seen += 1
            try:
                message = decode(frames)
            except BmacError as exc:
                print(f"# bad message: {exc}", file=sys.stderr)
                continue
            for note in gaps.check(message):
                print(f"# {note}", file=sys.stderr if json else sys.stdout, flush=True)
            _print(message, json=json, out=sys.stdout)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(linger=0)
        context.term()
    return 0


def _endpoint(source: str) -> str:
    if is_endpoint(source):
        return source
    config = load_config(Path(source).expanduser())
    if not config.publish_endpoints:
        raise BmacError(f'{source}: the recorder does not publish ("publish": false)')
    ipc = [e for e in config.publish_endpoints if e.startswith("ipc://")]
    return (ipc or list(config.publish_endpoints))[0]


class GapTracker:
    """Finds lost messages: a jump in ``seq`` (or in ``topic_seq`` when filtering by topic,
    since the other topics' messages never arrive), and a new publisher epoch."""

    def __init__(self, *, by_topic: bool) -> None:
        self.by_topic = by_topic
        self.epoch: str | None = None
        self.last: dict[str, int] = {}
        self.lost = 0

    def check(self, message: BusMessage) -> list[str]:
        header = message.header
        notes = []
        if header.epoch != self.epoch:
            if self.epoch is not None:
                notes.append(f"NEW EPOCH {header.epoch} (the publisher restarted)")
            self.epoch = header.epoch
            self.last.clear()
        key = message.topic if self.by_topic else ""
        value = header.topic_seq if self.by_topic else header.seq
        previous = self.last.get(key)
        if previous is not None and value > previous + 1:
            lost = value - previous - 1
            self.lost += lost
            notes.append(f"GAP: {lost} messages lost ({key or 'seq'} {previous} -> {value})")
        self.last[key] = value
        return notes


def describe(message: BusMessage) -> dict[str, Any]:
    """The message as a JSON-ready dict: header fields plus the body's essentials."""
    h = message.header
    data: dict[str, Any] = {
        "topic": message.topic,
        "kind": h.kind,
        "epoch": h.epoch,
        "seq": h.seq,
        "topic_seq": h.topic_seq,
        "sent_us": h.sent_us,
        "latency_us": unix_us() - h.sent_us,
    }
    body = decode_body(message)
    if isinstance(body, CandleEvent):
        c = body.candle
        data |= {"symbol": c.symbol, "candle_begin_time": c.open_ms, "close": c.close}
        data |= {"volume": c.volume, "source": body.source}
    elif isinstance(body, CandlesReply):
        data["rows"] = body.candles.height
    elif isinstance(body, PeriodEvent):
        data |= {"run_time_ms": body.run_time_ms, "complete": body.complete}
        data |= {"ready": len(body.ready), "missing": list(body.missing), "lag_ms": body.lag_ms}
        data["rows"] = body.candles.height
    elif isinstance(body, SymbolsEvent):
        data |= {"symbols": len(body.symbols), "listed": body.listed, "delisted": body.delisted}
    elif isinstance(body, Heartbeat):
        data |= {"symbols": body.symbols, "last_run_time_ms": body.last_run_time_ms}
    return data


def _print(message: BusMessage, *, json: bool, out: TextIO) -> None:
    data = describe(message)
    if json:
        out.write(orjson.dumps(data).decode() + "\n")
        out.flush()
        return
    when = datetime.fromtimestamp(data["sent_us"] / 1e6, UTC).strftime("%H:%M:%S.%f")
    skip = {"topic", "kind", "epoch", "seq", "topic_seq", "sent_us"}
    rest = " ".join(f"{k}={v}" for k, v in data.items() if k not in skip)
    out.write(f"{when} #{data['seq']} {data['topic']} {rest}\n")
    out.flush()
