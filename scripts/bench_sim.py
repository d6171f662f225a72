"""Benchmark: the simulator holding 1000 USDⓈ-M kline streams at Binance's 250 ms cadence.

The simulator runs in this process on the real clock (speed 1); a client subprocess opens
5 connections x 200 combined streams over real sockets and consumes every frame. Printed:
messages per second sent (and received), closing pushes, and the CPU seconds the simulator's
process used (and % of one core).

    python scripts/bench_sim.py                 # 1000 symbols, 60 s
    python scripts/bench_sim.py --seconds 15
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import trio

from bmac_trio.clock import SystemClock
from bmac_trio.sim import SimConfig, open_simulator


async def client(ws_url: str, symbols: list[str], per_conn: int, seconds: float) -> None:
    """Subscribe to every symbol's 1m kline stream and count frames; print JSON stats."""
    import trio_websocket

    counts = {"frames": 0, "closing": 0, "bytes": 0}

    async def one(chunk: list[str]) -> None:
        url = ws_url + "/market/stream?streams=" + "/".join(f"{s.lower()}@kline_1m" for s in chunk)
        async with trio_websocket.open_websocket_url(url, max_message_size=1 << 20) as ws:
            while True:
                msg = await ws.get_message()
                counts["frames"] += 1
                counts["bytes"] += len(msg)
                if '"x":true' in msg:
                    counts["closing"] += 1

    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for i in range(0, len(symbols), per_conn):
                nursery.start_soon(one, symbols[i : i + per_conn])
    counts["cpu_s"] = time.process_time()
    print(json.dumps(counts), flush=True)


async def main(args: argparse.Namespace) -> None:
    cfg = SimConfig(market="um", symbols=args.symbols, seed=1)
    async with open_simulator(cfg, clock=SystemClock()) as sim:
        symbols = sim.trading_symbols()[: args.symbols]
        cmd = [
            sys.executable, __file__, "--client", sim.ws_url, "--seconds", str(args.seconds + 2),
            "--per-conn", str(args.per_conn), "--symbols-list", ",".join(symbols),
        ]  # fmt: skip
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE)
        # Let the connections open and subscribe, then measure a steady window.
        await trio.sleep(args.warmup)
        active = sim.stats.ws_connections_active
        sent0, closing0 = sim.stats.ws_messages_sent, sim.stats.ws_closing_events
        cpu0, t0 = time.process_time(), time.perf_counter()
        await trio.sleep(args.seconds)
        cpu1, t1 = time.process_time(), time.perf_counter()
        sent1, closing1 = sim.stats.ws_messages_sent, sim.stats.ws_closing_events
        assert proc.stdout is not None
        out = b""
        while True:
            chunk = await proc.stdout.receive_some(65536)
            if not chunk:
                break
            out += chunk
        await proc.wait()
        await proc.stdout.aclose()
    received = json.loads(out.decode().strip().splitlines()[-1])
    wall = t1 - t0
    cpu = cpu1 - cpu0
    print(f"symbols/streams         : {len(symbols)} on {active} connections")
    print(f"measured window         : {wall:.1f} s (real clock, speed 1)")
    print(f"messages sent           : {sent1 - sent0} ({(sent1 - sent0) / wall:.0f} msg/s)")
    print(f"closing pushes (x:true) : {closing1 - closing0} stream events")
    print(
        f"client received (total) : {received['frames']} frames, {received['bytes'] / 1e6:.1f} MB"
    )
    print(f"simulator CPU           : {cpu:.2f} s = {100 * cpu / wall:.0f}% of one core")
    print(f"client CPU (whole run)  : {received['cpu_s']:.2f} s")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="measured window (real seconds)")
    p.add_argument("--symbols", type=int, default=1000, help="UM symbols, one 1m stream each")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring")
    p.add_argument("--per-conn", type=int, default=200, help="streams per connection")
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--symbols-list", help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    ns = _parse()
    if ns.client:
        trio.run(client, ns.client, ns.symbols_list.split(","), ns.per_conn, ns.seconds)
    else:
        trio.run(main, ns)
