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
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from bmac_trio.clock import Clock, parse_clock_spec
from bmac_trio.errors import BmacError, ConfigError, LockHeld, StorageError

if TYPE_CHECKING:
    from bmac_trio.recorder.service import EarlySignals
    from bmac_trio.store.config import Config

__all__ = ["check", "run"]

log = logging.getLogger("bmac_trio")

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _setup_logging(log_file: Path | None) -> str | None:
    """Log to stderr, and to ``log_file`` when given; the reason it cannot be opened, or None."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    problem = None
    if log_file is not None:
        try:
            # reopened by name when logrotate renames it; appends, so copytruncate works too
            handlers.append(logging.handlers.WatchedFileHandler(log_file))
        except OSError as exc:
            problem = f"cannot open the log file {log_file}: {exc.strerror or exc}"
    logging.basicConfig(level=logging.INFO, format=_FORMAT, handlers=handlers, force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return problem


def _refuse(problem: str) -> int:
    """A permanent start-up error: one line (stderr and the log file), exit 2."""
    log.error("bmac-trio run: %s", problem)
    return 2


def startup_problems(
    config: Config, *, log_file: Path | None = None, metrics_port: int | None = None
) -> list[str]:
    """Everything that would stop ``run`` at start, found without changing anything."""
    from bmac_trio.ops.metrics import metrics_port_problem
    from bmac_trio.store.preflight import directory_problem, file_problem, lock_problem

    problems = [
        directory_problem(config.base_dir, "the base directory"),
        lock_problem(config.base_dir),
        directory_problem(config.candle_dir, "the data directory"),
        directory_problem(config.exginfo_dir, "the exchange-info directory"),
    ]
    if log_file is not None:
        problems.append(file_problem(Path(log_file), "the log file"))
    if metrics_port is not None:
        problems.append(metrics_port_problem(metrics_port))
    return [p for p in problems if p is not None]


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
    (cron may start one every minute); 2 for a problem that stops it at start (bad config,
    a path that cannot be written, --log-file in a missing folder, --metrics-port in use or
    prometheus-client missing): one line naming the path or port and the cause, written to
    stderr and to --log-file when it can be opened, and nothing is written to BASE_DIR;
    1 after an unexpected error.

    Parameters
    ----------
    base_dir
        The data directory holding config.json.
    log_file
        Also append the log to this file (its folder must exist).
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
    log_problem = _setup_logging(log_file)
    if log_problem is not None:
        return _refuse(log_problem)
    try:
        config = load_config(base)
        exchange_clock = parse_clock_spec(clock)
    except (ConfigError, ValueError) as exc:
        return _refuse(str(exc))
    for warning in config.warnings:
        log.warning("%s", warning)
    problems = startup_problems(config, metrics_port=metrics_port)
    if problems:
        for problem in problems:
            _refuse(problem)
        return 2
    try:
        lock = acquire_lock(base)
    except LockHeld as exc:
        print(f"bmac-trio run: {exc}", file=sys.stderr)
        return 0
    except StorageError as exc:
        return _refuse(str(exc))
    with lock:
        for directory in (config.candle_dir, config.exginfo_dir):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return _refuse(f"cannot create {directory}: {exc.strerror or exc}")
        try:
            trio.run(_main, config, exchange_clock, clock, metrics_port, early)
        except (BmacError, ExceptionGroup) as exc:
            error = _only_bmac_error(exc)
            if error is None:
                raise
            log.error("bmac-trio run: %s", error)
            # a ConfigError here is the metrics port taken since the preflight check
            return 2 if isinstance(error, ConfigError) else 1
    return 0


def _only_bmac_error(exc: BaseException) -> BmacError | None:
    """The first of our errors when ``exc`` (a nursery's group, maybe) holds only ours."""
    if isinstance(exc, BaseExceptionGroup):
        rest = exc.subgroup(lambda e: not isinstance(e, BmacError | BaseExceptionGroup))
        if rest is not None:
            return None
        return _only_bmac_error(exc.exceptions[0])
    return exc if isinstance(exc, BmacError) else None


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
                options=RecorderOptions.standalone(handle_signals=True, early_signals=early),
            )
            nursery.cancel_scope.cancel()


def check(
    base_dir: Path,
    /,
    *,
    log_file: Path | None = None,
    metrics_port: int | None = None,
) -> int:
    """Validate BASE_DIR/config.json, the paths ``run`` needs and the data files already there.

    config.json's trade_type is one of usdt_spot, usdc_spot, btc_spot, usdt_perp, usdc_perp,
    btc_perp, usdt_deli, coin_perp, coin_deli (BMAC's; usdt_swap and coin_swap are v1
    aliases) or usdt_tradifi_perp (UM TradFi perpetuals: equities, ETFs, commodities).

    Takes ``run``'s --log-file and --metrics-port, to check the very command line a service
    will run. Reads (never changes) every data file: its schema and its last candle.

    Exit status: 0 when ``run`` would start and every data file is sound; 1 when ``run`` would
    start but some data files are corrupt (``run`` moves them aside and downloads them again)
    or stale (their last candle is behind the newest file's); 2 when ``run`` would refuse to
    start (the same one-line reasons ``run`` gives). Config warnings are printed, not failed.

    Parameters
    ----------
    base_dir
        The data directory holding config.json.
    log_file
        The --log-file ``run`` will be given.
    metrics_port
        The --metrics-port ``run`` will be given.
    """
    from bmac_trio.store.config import load_config

    base = Path(base_dir).expanduser()
    try:
        config = load_config(base)
    except ConfigError as exc:
        print(f"bmac-trio check: {exc}", file=sys.stderr)
        return 2
    for warning in config.warnings:
        print(f"bmac-trio check: warning: {warning}", file=sys.stderr)
    problems = startup_problems(config, log_file=log_file, metrics_port=metrics_port)
    if config.nats is not None and not problems:
        problem = _check_nats(config)
        if problem:
            problems.append(problem)
    for problem in problems:
        print(f"bmac-trio check: {problem}", file=sys.stderr)
    if problems:
        return 2
    return _check_data(config)


def _check_data(config: Config) -> int:
    from bmac_trio.ops.status import format_age
    from bmac_trio.store.inspect import inspect_candle_dir

    found = inspect_candle_dir(config.candle_dir, config.save_type, config.interval)
    where = config.candle_dir.name
    for symbol, why in found.corrupt.items():
        print(f"bmac-trio check: corrupt: {where}/{symbol}: {why}", file=sys.stderr)
    if found.stale:
        newest = _utc(found.newest_end_ms or 0)
        for symbol, last_open in found.stale.items():
            ends = _utc(config.interval.end(last_open))
            print(
                f"bmac-trio check: stale: {where}/{symbol}: last candle ends {ends}, "
                f"the newest file's ends {newest}",
                file=sys.stderr,
            )
    if found.other_save_type:
        print(
            f"bmac-trio check: note: {found.other_save_type} data files of the other save type "
            f"in {where}/: the next run reads them as history and moves them aside",
            file=sys.stderr,
        )
    nats = ""
    if config.nats is not None:
        nats = f"; NATS stream {config.nats.stream} on {', '.join(config.nats.servers)} reachable"
    data = f"{found.files} data files"
    if found.newest_end_ms is not None:
        age = format_age(max(0.0, time.time() - found.newest_end_ms / 1000))
        data += f", newest candle ends {_utc(found.newest_end_ms)} ({age} ago)"
    if found.corrupt or found.stale:
        bad = len(found.corrupt) + len(found.stale)
        print(
            f"{config.base_dir}: run would start, but {bad} of {found.files} data files are "
            f"corrupt or stale ({data})"
        )
        return 1
    print(
        f"{config.base_dir}: OK — {config.trade_type_name} {config.interval}, {config.save_type}, "
        f"{config.num_candles} candles, data in {where}/ ({data}); "
        f"records {config.trade_type.describe()}{nats}"
    )
    return 0


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _check_nats(config: object) -> str | None:
    """Connect to the configured NATS servers and ask JetStream about the stream."""

    async def probe() -> str | None:
        from bmac_trio.bus.aio_bridge import AsyncioThread
        from bmac_trio.bus.nats_link import JetStreamLink
        from bmac_trio.bus.nats_publisher import stream_settings

        settings = stream_settings(config)  # type: ignore[arg-type]
        link = JetStreamLink(config.nats.servers, settings)  # type: ignore[attr-defined]
        async with AsyncioThread("bmac-check") as aio:
            try:
                with trio.fail_after(10):
                    await aio.run(link.connect)
                    names = await aio.run(link.stream_names)
            except (BmacError, trio.TooSlowError) as exc:
                return f"NATS: {exc or 'no answer within 10 s'}"
            finally:
                await aio.run(link.close)
        if settings.name not in names:
            print(f"NATS: stream {settings.name} does not exist yet (the recorder creates it)")
        return None

    return trio.run(probe)
