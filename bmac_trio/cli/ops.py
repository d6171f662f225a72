"""``bmac-trio status`` and ``bmac-trio demo``: running bmac-trio, seen from outside."""

from __future__ import annotations

import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bmac_trio.clock import Clock, SystemClock, parse_clock_spec
from bmac_trio.ops.status import (
    Health,
    HealthCode,
    StatusReport,
    assess,
    format_age,
    not_running,
    read_status,
)
from bmac_trio.store.layout import LOCK_FILE

__all__ = ["demo", "status"]

#: How many missing symbol names ``status`` prints before "and N more".
MAX_NAMES = 12


def status(
    base_dir: Path,
    /,
    *,
    json: bool = False,
    max_age: float | None = None,
    clock: str | None = None,
) -> int:
    """Show what the recorder of BASE_DIR is doing; exit 0 only when it is healthy.

    Exit status: 0 when the recorder runs and the newest complete period is recent (within
    two intervals plus candle_close_timeout_sec); 1 when the data is stale; 2 when there is
    no data yet, the directory is not initialised, config.json is bad or an option is bad;
    3 when the recorder that wrote the status is not running (stopped, crashed or killed).

    Parameters
    ----------
    base_dir
        The data directory (the one holding config.json).
    json
        Print one JSON object instead of the summary.
    max_age
        Seconds of exchange time (> 0) after which the newest complete period counts as
        stale (default: two intervals plus candle_close_timeout_sec).
    clock
        START_MS:SPEED:ANCHOR_UNIX shared clock (tests, the demo); default: the clock the
        recorder recorded in its status file, else real time.
    """
    if max_age is not None and not (math.isfinite(max_age) and max_age > 0):
        print(f"bmac-trio status: --max-age must be seconds > 0, got {max_age}", file=sys.stderr)
        return 2
    try:
        given_clock = parse_clock_spec(clock) if clock else None
    except ValueError as exc:
        print(f"bmac-trio status: --clock {clock!r}: {exc}", file=sys.stderr)
        return 2
    base = Path(base_dir).expanduser()
    config, config_error = _load_config(base)
    try:
        report = read_status(base)
        report_error = None
    except (ValueError, OSError) as exc:
        report, report_error = None, f"unreadable status file: {exc}"
    now_ms = (given_clock or _clock(None, report)).now_ms()
    health = assess(report, now_ms=now_ms, max_age=max_age)
    if config_error is not None:
        health = Health(
            code=HealthCode.NO_DATA,
            reason=config_error,
            age_seconds=health.age_seconds,
            max_age_seconds=health.max_age_seconds,
        )
    elif report_error is not None:
        health = Health(
            code=HealthCode.NO_DATA, reason=report_error, age_seconds=None, max_age_seconds=None
        )
    pid = _recorder_pid(base, report) if base.is_dir() else None
    if pid is not None and report is None and report_error is None and config_error is None:
        health = Health(
            code=HealthCode.NO_DATA,
            reason=f"the recorder (pid {pid}) is starting: no complete period yet",
            age_seconds=None,
            max_age_seconds=health.max_age_seconds,
        )
    elif pid is None and report is not None and report_error is None and config_error is None:
        health = not_running(report, health)
    if json:
        _print_json(base, config, report, health, now_ms, pid, config_error)
    else:
        _print_text(base, config, report, health, now_ms, pid)
    return int(health.code)


def _load_config(base: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The config summary, or the reason it is unusable."""
    if not base.is_dir():
        return None, f"no such directory: {base}"
    from bmac_trio.errors import ConfigError
    from bmac_trio.store.config import load_config

    try:
        config = load_config(base)
    except ConfigError as exc:
        return None, f"bad config: {exc}"
    summary = {
        "trade_type": config.trade_type_name,
        "interval": config.interval.name,
        "market": config.market.name,
        "num_candles": config.num_candles,
        "save_type": config.save_type,
        "timezone": config.timezone.key,
        "funding_rate": config.funding_rate,
        "keep_symbols": sorted(config.keep_symbols) if config.keep_symbols else None,
        "candle_close_timeout_sec": config.candle_close_timeout_sec,
        "rest_url": config.rest_url,
        "ws_url": config.ws_url,
        "alerts": bool(config.dingding or config.msg_sender),
        "data_dir": str(config.candle_dir),
    }
    return summary, None


def _clock(spec: str | None, report: StatusReport | None) -> Clock:
    if spec:
        return parse_clock_spec(spec)
    if report is not None and report.clock:
        try:
            return parse_clock_spec(report.clock)
        except ValueError:
            pass
    return SystemClock()


def _recorder_pid(base: Path, report: StatusReport | None) -> int | None:
    """The pid of a live recorder of ``base`` on this machine, or None.

    The lock file names the recorder holding it (also one still downloading history, before its
    first status file); the status file names the one that wrote it.
    """
    candidates = [_lock_pid(base)]
    if report is not None and report.state not in ("stopped", "crashed"):
        candidates.append(report.pid)
    for pid in candidates:
        if pid is not None and pid > 0 and _alive(pid):
            return pid
    return None


def _lock_pid(base: Path) -> int | None:
    try:
        text = (base / LOCK_FILE).read_text("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:MAX_NAMES])
    more = len(names) - MAX_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def _print_text(
    base: Path,
    config: dict[str, Any] | None,
    report: StatusReport | None,
    health: Health,
    now_ms: int,
    pid: int | None,
) -> None:
    rows: list[tuple[str, str]] = []
    if config is not None:
        keep = f", {len(config['keep_symbols'])} kept symbols" if config["keep_symbols"] else ""
        rows.append(
            (
                "config",
                f"{config['trade_type']} {config['interval']} ({config['market']}), "
                f"{config['num_candles']} candles, {config['save_type']}{keep}, "
                f"ready files in {config['timezone']}",
            )
        )
        rows.append(("data", config["data_dir"]))
    if report is None and pid is not None:
        rows.append(("recorder", f"running (pid {pid}), starting"))
    if report is not None:
        up = format_age((report.updated_at_ms - report.started_at_ms) / 1000 / report.clock_speed)
        speed = f", clock {report.clock_speed:g}x" if report.clock_speed != 1 else ""
        if pid is None:
            who = f"not running (last pid {report.pid}, {report.state})"
        elif pid == report.pid:
            who = f"running (pid {pid}), {report.state}, up {up}{speed}"
        else:
            who = f"running (pid {pid}), starting; the status below is from pid {report.pid}"
        rows.append(("recorder", who))
        if report.last_period_ms is not None:
            lag = report.last_period_lag_seconds
            lag_text = f"lag {lag:.3f} s" if lag is not None else "lag unknown"
            rows.append(
                (
                    "last period",
                    f"{_utc(report.last_period_ms)} ({report.last_period_label}), {lag_text}, "
                    f"ended {format_age((now_ms - report.last_period_ms) / 1000)} ago",
                )
            )
            missing = report.symbols_missing
            text = f"{len(report.symbols_ready)} ready, {len(missing)} missing"
            rows.append(("symbols", f"{text}: {_names(missing)}" if missing else text))
        else:
            rows.append(("last period", "none yet"))
        if report.symbols_rest_only:
            rows.append(("REST only", f"stream refused: {_names(report.symbols_rest_only)}"))
        limit = f"/{report.rest_weight_limit}" if report.rest_weight_limit else ""
        rows.append(
            (
                "network",
                f"{report.connections_open} connections open, REST weight "
                f"{report.rest_weight_used}{limit} this minute ({report.rest_weight_spent} "
                f"spent since start), {report.reconnects} reconnects",
            )
        )
        if report.nats_state is not None:
            rows.append(
                (
                    "nats",
                    f"{report.nats_state}, {report.nats_backlog} messages waiting, "
                    f"{report.nats_published} published",
                )
            )
        if report.last_error:
            at = _utc(report.last_error_at_ms) if report.last_error_at_ms else "?"
            rows.append(("last error", f"{at}  {report.last_error}"))
        else:
            rows.append(("last error", "none"))
    label = {
        HealthCode.OK: "OK",
        HealthCode.STALE: "STALE",
        HealthCode.NO_DATA: "NO DATA",
        HealthCode.NOT_RUNNING: "NOT RUNNING",
    }
    rows.append(("health", f"{label[health.code]} ({health.reason})"))
    print(f"bmac-trio status {base}")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    sys.stdout.flush()


def _print_json(
    base: Path,
    config: dict[str, Any] | None,
    report: StatusReport | None,
    health: Health,
    now_ms: int,
    pid: int | None,
    config_error: str | None,
) -> None:
    word = {
        HealthCode.OK: "ok",
        HealthCode.STALE: "stale",
        HealthCode.NO_DATA: "no_data",
        HealthCode.NOT_RUNNING: "not_running",
    }
    out = {
        "base_dir": str(base),
        "health": "bad_config" if config_error and base.is_dir() else word[health.code],
        "exit_code": int(health.code),
        "reason": health.reason,
        "now_ms": now_ms,
        "age_seconds": health.age_seconds,
        "max_age_seconds": health.max_age_seconds,
        "running": pid is not None,
        "recorder_pid": pid,
        "config": config,
        "status": orjson.loads(report.to_json()) if report is not None else None,
    }
    sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()


def demo(
    directory: Path | None = None,
    /,
    *,
    periods: int = 5,
    symbols: int = 30,
    candles: int = 1500,
    speed: float = 30.0,
) -> int:
    """Watch bmac-trio work: a simulated exchange and the recorder, on a 30x clock.

    Records into DIRECTORY (default ./bmac-demo): the history download, then PERIODS live
    periods with their lag, then where the files are and how to read them with bmac_kit.
    Nothing talks to the real Binance.

    Parameters
    ----------
    directory
        Where to record (default ./bmac-demo). A previous demo's directory is cleared; any
        other non-empty directory is refused.
    periods
        How many live periods to watch before stopping.
    symbols
        How many symbols the simulated USDⓈ-M market lists (its USDT perpetuals are recorded).
    candles
        Candles kept per symbol (num_candles).
    speed
        How many times faster than real time the exchange clock runs.
    """
    import logging

    import trio

    from bmac_trio.cli.demo import DemoError, DemoOptions, prepare_directory, run_demo

    if periods < 1 or symbols < 1 or candles < 1 or speed <= 0:
        print("bmac-trio demo: periods, symbols and candles must be >= 1, speed > 0")
        return 2
    base = Path(directory if directory is not None else "bmac-demo").expanduser().absolute()
    try:
        prepare_directory(base)
    except DemoError as exc:
        print(f"bmac-trio demo: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "hypercorn", "trio-websocket"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = DemoOptions(
        directory=base, periods=periods, symbols=symbols, candles=candles, speed=speed
    )
    try:
        return trio.run(run_demo, options)
    except KeyboardInterrupt:
        print(f"bmac-trio demo: interrupted; what was recorded is in {base}", file=sys.stderr)
        return 130
