"""The kit's one error of its own, in bmac-trio's hierarchy."""

from __future__ import annotations

from bmac_trio.errors import BmacError

__all__ = ["PeriodNotReady"]


class PeriodNotReady(BmacError, RuntimeError):
    """A symbol's data for the period was not ready by ``run_time + bmac_expire_sec``.

    A ``RuntimeError`` too, as BMAC v1 raised ``RuntimeError('... not ready')``.
    """

    def __init__(self, message: str, *, symbol: str, run_time_ms: int) -> None:
        super().__init__(message)
        self.symbol = symbol
        self.run_time_ms = run_time_ms
