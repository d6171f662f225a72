"""``bmac-trio follow URL DIR``: keep the recorder's files in DIR from a NATS JetStream stream.

A thin command around :func:`bmac_trio.bus.nats_follower.follow` (docs/nats.md): the lock is
taken (one follower per directory; a second copy exits 0), then it runs until SIGINT/SIGTERM
(exit 0), resuming from ``DIR/.nats_follow.json`` at the next start.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import trio

from bmac_trio.errors import LockHeld

__all__ = ["follow"]

log = logging.getLogger("bmac_trio.follow")


def follow(
    url: str,
    base_dir: Path,
    /,
    *,
    stream: str | None = None,
    subject_prefix: str | None = None,
    log_file: Path | None = None,
    fsync: bool = True,
) -> int:
    """Follow a recorder's JetStream stream into BASE_DIR: the same files, ready files and
    manifests, without Binance.

    Parameters
    ----------
    url
        The NATS server(s): ``nats://host:4222``, several separated by commas (a cluster).
    base_dir
        The data directory to keep (created if missing).
    stream
        The stream name (default: the only ``BMAC_*`` stream on the server).
    subject_prefix
        Its subject prefix (default: read from the stream's subjects).
    log_file
        Also append the log to this file.
    fsync
        fsync every file (``--no-fsync`` only for tests and benchmarks).
    """
    from bmac_trio.bus.nats_follower import Follower, FollowTarget
    from bmac_trio.cli.run import _setup_logging
    from bmac_trio.store.lock import acquire_lock

    servers = tuple(u.strip() for u in url.split(",") if u.strip())
    if not servers or not all(u.startswith(("nats://", "tls://")) for u in servers):
        print(f"bmac-trio follow: {url!r} is not nats://host:port[,nats://...]", file=sys.stderr)
        return 2
    base = Path(base_dir).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    try:
        lock = acquire_lock(base)
    except LockHeld as exc:
        print(f"bmac-trio follow: {exc}", file=sys.stderr)
        return 0
    with lock:
        _setup_logging(log_file)
        target = FollowTarget(servers=servers, stream=stream, prefix=subject_prefix)
        trio.run(_main, target, Follower(base=base, durable=fsync))
    return 0


async def _main(target: object, follower: object) -> None:
    from bmac_trio.bus.nats_follower import follow as run_follow

    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            nursery.start_soon(run_follow, target, follower)
            async for signum in signals:
                log.warning("%s received: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
