"""What the dispatcher has done, shared by its collaborators (tests, status, benchmark).

Its own module so that the dispatcher and the helpers it holds (roster, period reporter,
history progress) can all import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DispatcherStats"]


@dataclass(slots=True)
class DispatcherStats:
    """What the dispatcher has done (tests, status, benchmark)."""

    writes: int = 0
    write_errors: int = 0
    #: run_time_ms -> lag seconds of every period completed with a known lag.
    lags: dict[int, float] = field(default_factory=dict)
    completed: list[int] = field(default_factory=list)
    history_started: float | None = None
    history_finished: float | None = None
    history_symbols: int = 0
    #: Klines weight the start-up history cost.
    history_weight: int = 0
    listed: list[str] = field(default_factory=list)
    delisted: list[str] = field(default_factory=list)
    fetches: int = 0
    #: run_time_ms -> seconds per write stage of the symbol whose write completed the period
    #: (its critical path; see :attr:`SymbolWriter.stages`), plus ``manifest``.
    stages: dict[int, dict[str, float]] = field(default_factory=dict)
