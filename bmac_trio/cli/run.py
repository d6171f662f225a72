"""``bmac-trio run`` and ``bmac-trio check``: thin commands around :func:`run_recorder`.

Order matters: the config is validated before anything is written (a bad config leaves the
directory untouched), then the lock is taken (a second copy started by cron exits 0 with a
clear message), then the recorder runs until SIGINT/SIGTERM (exit 0).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from bmac_trio.clock import Clock, parse_clock_spec
from bmac_trio.errors import BmacError, ConfigError, LockHeld

if TYPE_CHECKING:
    from bmac_trio.recorder.service import EarlySignals

__all__ = ["check", "run"]

log = logging.getLogger("bmac_trio")

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _setup_logging(log_file: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        # reopened by name when logrotate renames it; appends, so copytruncate works too
        handlers.append(logging.handlers.WatchedFileHandler(log_file))
    logging.basicConfig(level=logging.INFO, format=_FORMAT, handlers=handlers, force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run(
    base_dir: Path,
    /,
    *,
    log_file: Path | None = None,
    clock: str | None = None,
    metrics_port: int | None = None,
) -> int:
    """Record the market configured in BASE_DIR/config.json, live, until SIGINT/SIGTERM.

    config.json's trade_type is one of usdt_spot, usdc_spot, btc_spot, usdt_perp, usdc_perp,
    btc_perp, usdt_deli, coin_perp, coin_deli (BMAC's; usdt_swap and coin_swap are v1
    aliases) or usdt_tradifi_perp (UM TradFi perpetuals: equities, ETFs, commodities).

    Exit status: 0 after a stop by signal, or when another copy already records BASE_DIR
    (cron may start one every minute); 2 for a bad config (nothing is written).

    Parameters
    ----------
    base_dir
        The data directory holding config.json.
    log_file
        Also append the log to this file.
    clock
        Testing option: START_MS:SPEED:ANCHOR_UNIX, a simulated exchange clock shared with
        ``bmac-trio sim --clock`` (the recorder then runs that many times faster).
    metrics_port
        Serve Prometheus metrics on 127.0.0.1:PORT (needs prometheus-client).
    """
    from bmac_trio.recorder.service import EarlySignals
    from bmac_trio.store.config import load_config
    from bmac_trio.store.lock import acquire_lock

    early = EarlySignals().install()  # a SIGTERM during start-up is a stop, not a kill
    base = Path(base_dir).expanduser()
    try:
        config = load_config(base)
        exchange_clock = parse_clock_spec(clock)
    except (ConfigError, ValueError) as exc:
        print(f"bmac-trio run: {exc}", file=sys.stderr)
        return 2
    try:
        lock = acquire_lock(base)
    except LockHeld as exc:
        print(f"bmac-trio run: {exc}", file=sys.stderr)
        return 0
    with lock:
        _setup_logging(log_file)
        try:
            trio.run(_main, config, exchange_clock, clock, metrics_port, early)
        except BmacError as exc:
            log.error("bmac-trio run: %s", exc)
            return 1
    return 0


async def _main(
    config: object,
    clock: Clock,
    clock_spec: str | None,
    port: int | None,
    early: EarlySignals,
) -> None:
    import httpx

    from bmac_trio.ops.alerts import build_alerter
    from bmac_trio.ops.metrics import make_metrics, run_metrics_server
    from bmac_trio.ops.status import StatusReport, StatusTracker
    from bmac_trio.recorder.service import RecorderOptions, run_recorder

    metrics = make_metrics(port)
    report = StatusReport.for_config(
        config, pid=os.getpid(), now_ms=clock.now_ms(), clock_speed=clock.speed, clock=clock_spec
    )
    status = StatusTracker(config.base_dir, report, clock)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(timeout=config.http_timeout_sec + 1.0) as http:  # type: ignore[attr-defined]
        alerter = build_alerter(
            config.dingding,  # type: ignore[attr-defined]
            config.msg_sender,  # type: ignore[attr-defined]
            http=http,
            clock=clock,
        )
        async with trio.open_nursery() as nursery:
            if port is not None:
                await nursery.start(
                    lambda task_status: run_metrics_server(
                        metrics, port=port, task_status=task_status
                    )
                )  # type: ignore[arg-type]
            await run_recorder(
                config,  # type: ignore[arg-type]
                clock=clock,
                http_client=http,
                alerter=alerter,
                metrics=metrics,
                status=status,
                options=RecorderOptions(handle_signals=True, early_signals=early),
            )
            nursery.cancel_scope.cancel()


def check(base_dir: Path, /) -> int:
    """Validate BASE_DIR/config.json and the data directory; say exactly what is wrong.

    config.json's trade_type is one of usdt_spot, usdc_spot, btc_spot, usdt_perp, usdc_perp,
    btc_perp, usdt_deli, coin_perp, coin_deli (BMAC's; usdt_swap and coin_swap are v1
    aliases) or usdt_tradifi_perp (UM TradFi perpetuals: equities, ETFs, commodities).

    Exit status: 0 when ``run`` would start, 2 otherwise.

    Parameters
    ----------
    base_dir
        The data directory holding config.json.
    """
    from bmac_trio.store.config import load_config

    base = Path(base_dir).expanduser()
    try:
        config = load_config(base)
    except ConfigError as exc:
        print(f"bmac-trio check: {exc}", file=sys.stderr)
        return 2
    problems = []
    for directory in (config.candle_dir, config.exginfo_dir):
        if directory.exists() and not directory.is_dir():
            problems.append(f"{directory} exists and is not a directory")
        elif directory.exists() and not os.access(directory, os.W_OK | os.X_OK):
            problems.append(f"{directory} is not writable")
    if not os.access(base, os.W_OK | os.X_OK):
        problems.append(f"{base} is not writable")
    for problem in problems:
        print(f"bmac-trio check: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(
        f"{base}: OK — {config.trade_type_name} {config.interval}, {config.save_type}, "
        f"{config.num_candles} candles, data in {config.candle_dir.name}/; "
        f"records {config.trade_type.describe()}"
    )
    return 0
