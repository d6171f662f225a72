"""Counter-based randomness: every simulated value is a pure function of its coordinates.

splitmix64 mixing of (seed, symbol, interval, time, salt) gives the same number in any
process, in any order, without storing history, which is what makes candles reproducible
and lets REST, WebSocket and the ground truth agree.
"""

from __future__ import annotations

import hashlib

__all__ = ["mix", "symbol_key", "unit", "unit_signed"]

_M64 = (1 << 64) - 1
_INV64 = 1.0 / float(1 << 64)


def mix(x: int) -> int:
    """The splitmix64 finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def symbol_key(seed: int, symbol: str) -> int:
    """A 64-bit key for one symbol under one seed (stable across processes)."""
    digest = hashlib.blake2b(f"{seed}:{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def unit(key: int, a: int, b: int = 0) -> float:
    """A uniform float in [0, 1) determined by ``(key, a, b)``."""
    return mix(mix(key ^ (a & _M64)) ^ (b & _M64)) * _INV64


def unit_signed(key: int, a: int, b: int = 0) -> float:
    """A uniform float in [-1, 1) determined by ``(key, a, b)``."""
    return unit(key, a, b) * 2.0 - 1.0
