"""An asyncio event loop in its own thread, driven from trio.

nats-py is an asyncio library. Rather than running the whole recorder under trio-asyncio, its
client lives on a private asyncio loop in one daemon thread: the trio loop only submits
coroutines (``run_coroutine_threadsafe`` never blocks) and is woken through its
:class:`trio.lowlevel.TrioToken` when one finishes. The NATS client's own reconnect loop, flow
control and timers therefore never run on — or stall — the recorder's loop, and a dead server
costs the trio side nothing but a pending await (see docs/nats.md for the choice).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

__all__ = ["AsyncioThread"]

T = TypeVar("T")


class AsyncioThread:
    """``async with AsyncioThread() as loop: await loop.run(coro_fn, *args)``.

    Cancelling the trio caller cancels the asyncio task. Leaving the block stops the loop after
    cancelling what still runs there, and joins the thread.
    """

    def __init__(self, name: str = "bmac-asyncio") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> AsyncioThread:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self.loop = loop
        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        await trio.to_thread.run_sync(ready.wait)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.loop is not None
        assert self._thread is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._thread.join)

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the asyncio loop; its result or exception, back in trio."""
        assert self.loop is not None
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            _call(fn, args), self.loop
        )
        future.add_done_callback(lambda _: _wake(token, done))
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            raise
        return future.result()


def _wake(token: trio.lowlevel.TrioToken, done: trio.Event) -> None:
    with contextlib.suppress(trio.RunFinishedError):  # the trio side already left
        token.run_sync_soon(done.set)


async def _call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await fn(*args)
