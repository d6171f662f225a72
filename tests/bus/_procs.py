"""Reaping the child processes of the bus tests."""

from __future__ import annotations

import trio


async def reap(process: trio.Process) -> None:
    """Kill ``process`` if it still runs, wait for it and close its pipes."""
    if process.returncode is None:
        process.kill()
    await process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()
