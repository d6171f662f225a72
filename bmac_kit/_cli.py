"""``bmac-trio hourly``: the all-offset hourly job from the command line (thin)."""

from __future__ import annotations

import contextlib
import logging
import sys
from functools import partial
from pathlib import Path

__all__ = ["hourly"]


def hourly(
    base_dir: Path,
    /,
    *,
    out: Path | None = None,
    live: bool = False,
    clock: str | None = None,
    expire_sec: float = 40.0,
    periods: int | None = None,
) -> int:
    """1h candles for each of the 12 five-minute offsets, from a 5m data directory.

    Writes OUT/TRADE_TYPE_1h_resample/Km/SYMBOL.pqt (or .fea) for K = 0, 5, ..., 55 (OUT
    defaults to BASE_DIR), full hours only (all twelve 5m candles present), merged into what
    is already there.

    Args:
        base_dir: the recorder's base directory (or its TRADE_TYPE_5m directory).
        out: where to write (default: base_dir).
        live: keep running: after each 5m period lands, rebuild the offset whose hour closed.
        clock: START_MS:SPEED:ANCHOR_UNIX to share a simulated clock (default: real time).
        expire_sec: how long after a period end to wait for its data.
        periods: with --live, stop after this many periods.
    """
    import trio

    from bmac_kit._hourly import HourlyJob, run_hourly_live
    from bmac_trio.clock import parse_clock_spec
    from bmac_trio.errors import ConfigError, StorageError
    from bmac_trio.store.preflight import directory_problem

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if periods is not None and not live:
        print("bmac-trio hourly: --periods counts live periods; add --live", file=sys.stderr)
        return 2
    if periods is not None and periods < 1:
        print(f"bmac-trio hourly: --periods must be >= 1, got {periods}", file=sys.stderr)
        return 2
    try:
        job = HourlyJob.from_base(base_dir, out)
        time_source = parse_clock_spec(clock)
    except (ConfigError, ValueError) as exc:
        print(f"bmac-trio hourly: {exc}", file=sys.stderr)
        return 2
    problem = directory_problem(job.out_dir, "the output directory")
    if problem is not None:
        print(f"bmac-trio hourly: {problem}", file=sys.stderr)
        return 2
    if not live:
        try:
            report = job.run_once()
        except (OSError, StorageError) as exc:
            print(f"bmac-trio hourly: {exc}", file=sys.stderr)
            return 2
        print(f"{report.symbols} symbols; files written per offset: {report.written}")
        print(f"output: {job.out_dir}")
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(
            partial(run_hourly_live, job, clock=time_source, expire_sec=expire_sec, periods=periods)
        )
    return 0
