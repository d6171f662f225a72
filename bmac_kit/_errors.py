"""The kit's errors, in bmac-trio's hierarchy."""

from __future__ import annotations

from bmac_trio.errors import BmacError

__all__ = ["FactorError", "PeriodNotReady"]


class PeriodNotReady(BmacError, RuntimeError):
    """A symbol's data for the period was not ready by ``run_time + bmac_expire_sec``.

    A ``RuntimeError`` too, as BMAC v1 raised ``RuntimeError('... not ready')``.
    """

    def __init__(self, message: str, *, symbol: str, run_time_ms: int) -> None:
        super().__init__(message)
        self.symbol = symbol
        self.run_time_ms = run_time_ms


class FactorError(BmacError, RuntimeError):
    """A factor raised for one symbol (e.g. a user's guard against penny stocks).

    The all-market calculator reports the symbol missing with this error and returns the
    rest; the single-symbol calculator raises it. The factor's own exception is ``error``
    (and ``__cause__``).
    """

    def __init__(self, *, symbol: str, factor: str, error: BaseException) -> None:
        super().__init__(f"factor {factor} failed for {symbol}: {type(error).__name__}: {error}")
        self.symbol = symbol
        self.factor = factor
        self.error = error
