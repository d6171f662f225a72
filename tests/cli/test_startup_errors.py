"""Permanent start-up errors: one clear line naming the path or port, exit 2, no traceback,
and ``check`` reports the same conditions (issue 11, item 4).

Exit 2 matters: a systemd unit with ``RestartPreventExitStatus=2`` (or cron's mail) then shows
the cause once instead of restarting a process that can never start. The tests run as root,
which ignores read-only modes, so an unusable path is one whose parent is a regular file or a
directory where a file must be.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from .conftest import run_cli

CONFIG = {
    "interval": "5m",
    "trade_type": "usdt_perp",
    "rest_url": "http://127.0.0.1:9",
    "ws_url": "ws://127.0.0.1:9",
}


def make_base(tmp_path: Path, **extra: object) -> Path:
    base = tmp_path / "data"
    base.mkdir()
    (base / "config.json").write_bytes(orjson.dumps(CONFIG | extra))
    return base


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port of 127.0.0.1 that some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def assert_one_clear_line(out: object, *words: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)  # type: ignore[attr-defined]
    err = out.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_lock_file_that_cannot_be_opened(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    (base / ".bmac.lock").mkdir()  # root can write anywhere, but not open a directory as a file
    log_file = tmp_path / "run.log"
    out = run_cli("run", str(base), "--log-file", str(log_file), timeout=30)
    line = assert_one_clear_line(out, str(base / ".bmac.lock"), "directory")
    assert line.split("bmac-trio run: ", 1)[1] in log_file.read_text()
    out = run_cli("check", str(base))
    assert out.returncode == 2
    assert str(base / ".bmac.lock") in out.stderr


def test_data_directory_that_cannot_be_created(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    (base / "usdt_perp_5m").write_bytes(b"")  # a file where the data directory must be
    out = run_cli("run", str(base), timeout=30)
    assert_one_clear_line(out, str(base / "usdt_perp_5m"))
    out = run_cli("check", str(base))
    assert out.returncode == 2
    assert str(base / "usdt_perp_5m") in out.stderr


def test_data_directory_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"")
    base = make_base(tmp_path)
    (base / "usdt_perp_5m").symlink_to(blocker / "sub")  # its parent is a regular file
    out = run_cli("run", str(base), timeout=30)
    assert_one_clear_line(out, "usdt_perp_5m", "Not a directory")
    assert run_cli("check", str(base)).returncode == 2


def test_log_file_in_a_missing_folder(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    log_file = tmp_path / "no-such-folder" / "run.log"
    out = run_cli("run", str(base), "--log-file", str(log_file), timeout=30)
    assert_one_clear_line(out, str(log_file), "No such file or directory")
    out = run_cli("check", str(base), "--log-file", str(log_file))
    assert out.returncode == 2
    assert str(log_file) in out.stderr


def test_metrics_port_in_use(tmp_path: Path, busy_port: int) -> None:
    base = make_base(tmp_path)
    out = run_cli("run", str(base), "--metrics-port", str(busy_port), timeout=30)
    assert_one_clear_line(out, f"127.0.0.1:{busy_port}", "in use")
    assert not (base / "usdt_perp_5m").exists()  # refused before anything is written
    out = run_cli("check", str(base), "--metrics-port", str(busy_port))
    assert out.returncode == 2
    assert f"127.0.0.1:{busy_port}" in out.stderr


def test_sim_port_in_use(busy_port: int) -> None:
    out = run_cli("sim", "--port", str(busy_port), "--symbols", "3", timeout=30)
    assert_one_clear_line(out, str(busy_port), "in use")


def test_status_with_a_bad_clock(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    out = run_cli("status", str(base), "--clock", "abc")
    assert_one_clear_line(out, "--clock", "abc")


def test_hourly_out_is_a_file(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    from bmac_trio.binance.intervals import parse_interval
    from bmac_trio.store.candles import CandleStore
    from bmac_trio.store.config import load_config

    base = make_base(tmp_path)
    config = load_config(base)
    store = CandleStore(config.candle_dir, "parquet", ZoneInfo("UTC"), 10, parse_interval("5m"))
    store.write_meta(config.to_meta())
    out_file = tmp_path / "out.txt"
    out_file.write_text("not a folder")
    out = run_cli("hourly", str(base), "--out", str(out_file))
    assert_one_clear_line(out, str(out_file))


def test_hourly_periods_without_live_is_refused(tmp_path: Path) -> None:
    """Issue 11 item 11: ``--periods 2`` without ``--live`` was silently ignored."""
    out = run_cli("hourly", str(tmp_path), "--periods", "2")
    assert_one_clear_line(out, "--periods", "--live")


def test_an_error_of_ours_inside_the_nurseries_is_still_one_line() -> None:
    """trio wraps a task's error in an ExceptionGroup: ``run`` unwraps ours, not others'."""
    from bmac_trio.cli.run import _only_bmac_error
    from bmac_trio.errors import ConfigError

    port = ConfigError("metrics port 127.0.0.1:9 is in use")
    assert _only_bmac_error(ExceptionGroup("a", [ExceptionGroup("b", [port])])) is port
    assert _only_bmac_error(ExceptionGroup("a", [port, ValueError("bug")])) is None
