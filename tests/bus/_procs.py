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


async def reap_all(processes: list[trio.Process]) -> None:
    """Reap every process in ``processes`` (emptying it), however the test ended: all are
    killed before any is waited for, so a slow wait cannot leave the others running."""
    for process in processes:
        if process.returncode is None:
            process.kill()
    with trio.CancelScope(shield=True), trio.move_on_after(10):
        while processes:
            await reap(processes.pop())
