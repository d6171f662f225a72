"""Waiting for a ZeroMQ socket without blocking the event loop, under trio or asyncio (AnyIO).

A ZeroMQ socket's file descriptor is edge-triggered: it only says "look at ``EVENTS``". So:
try a non-blocking receive; if nothing is there, read ``EVENTS`` (which also lets libzmq
process pending commands), and only when that shows nothing either wait for the descriptor.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import zmq

__all__ = ["recv_multipart"]


async def recv_multipart(sock: zmq.Socket[bytes]) -> list[bytes]:
    """The next message of ``sock``, awaiting without blocking the loop.

    Raises:
        zmq.ZMQError: the socket was closed, or another libzmq error.
    """
    await anyio.lowlevel.checkpoint()  # a steady stream must not starve the other tasks
    while True:
        try:
            return sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            pass
        if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            continue
        await anyio.wait_readable(sock.getsockopt(zmq.FD))
