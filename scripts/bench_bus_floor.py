"""The floor under the bus's latency on this machine: ZeroMQ PUB → SUB between two processes,
both on trio, nothing else running: no recorder, no writes, no simulator.

A publisher process sends a small stamped message every ``--every-ms`` over ``ipc://`` (as the
recorder does a candle: ``send_multipart(NOBLOCK)`` on the event loop); a subscriber process
receives it with the bus's own ``recv_multipart`` (the kit's way) and measures the publisher's
stamp → received (p50, p99, max; both stamps are the same host's Unix clock). Whatever the
recorder and the kit add sits on top of this.

Usage::

    python scripts/bench_bus_floor.py                  # 5000 messages, one every 4 ms
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _publish(endpoint: str, count: int, every_s: float) -> None:
    import trio
    import zmq

    from bmac_trio.bus.zmq_async import recv_multipart

    context = zmq.Context()
    sock = context.socket(zmq.XPUB)  # a PUB that also hands over subscriptions
    sock.bind(endpoint)
    await recv_multipart(sock)  # the subscriber's subscription: nothing sent is lost from here
    for i in range(count + 1):  # the last one, -1, says done
        stamp = time.time_ns() // 1000
        sock.send_multipart([b"t", str(-1 if i == count else stamp).encode()], zmq.NOBLOCK)
        await trio.sleep(every_s)
    sock.close(linger=1000)
    context.term()


async def _subscribe(endpoint: str) -> None:
    import trio  # noqa: F401 (the loop recv_multipart runs under)
    import zmq

    from bmac_trio.bus.zmq_async import recv_multipart

    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    latencies: list[float] = []
    while True:
        _, body = await recv_multipart(sock)
        now = time.time_ns() // 1000
        sent = int(body)
        if sent < 0:
            break
        latencies.append((now - sent) / 1000)
    sock.close(linger=0)
    context.term()
    print(
        f"PUB -> SUB over ipc, {len(latencies)} messages: p50 {_pct(latencies, 0.5):.3f} ms, "
        f"p99 {_pct(latencies, 0.99):.3f} ms, max {max(latencies):.3f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--every-ms", type=float, default=4.0)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        import trio

        if args.role == "pub":
            trio.run(_publish, args.endpoint, args.count, args.every_ms / 1000)
        else:
            trio.run(_subscribe, args.endpoint)
        return
    with tempfile.TemporaryDirectory(prefix="bench_bus_floor_") as tmp:
        endpoint = f"ipc://{Path(tmp) / 'floor.sock'}"
        me = [sys.executable, __file__, "--endpoint", endpoint]
        pub = subprocess.Popen([*me, "--role", "pub", "--count", str(args.count),
                                "--every-ms", str(args.every_ms)])  # fmt: skip
        sub = subprocess.Popen([*me, "--role", "sub"])
        try:
            sub.wait()
        finally:
            pub.kill()
            pub.wait()


if __name__ == "__main__":
    main()
