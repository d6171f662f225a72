"""CLI polish (issue 11, item 11): the command list, prometheus-client missing, ``check`` on
corrupt and stale data files."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import polars as pl
import pytest

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.cli import COMMANDS
from bmac_trio.store.candles import CandleStore
from bmac_trio.store.config import load_config

from .._candles import flat_candles
from .conftest import run_cli

IV = parse_interval("5m")
T0 = IV.floor(1_764_000_000_000)


def make_base(tmp_path: Path, **extra: object) -> Path:
    base = tmp_path / "data"
    base.mkdir()
    config = {"interval": "5m", "trade_type": "usdt_perp", "rest_url": "http://127.0.0.1:9"}
    (base / "config.json").write_bytes(orjson.dumps(config | extra))
    return base


def candles(symbol: str, n: int, first: int = T0) -> pl.DataFrame:
    return flat_candles(symbol, first, n, IV)


def test_help_lists_every_command_with_a_summary() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    summaries = {
        line.split()[1]: " ".join(line.split()[2:])
        for line in out.stdout.splitlines()
        if line.startswith("│ ") and not line.startswith("│ -")
    }
    assert {"run", "check", "status", "hourly", "demo", "sim", "tail", "follow"} <= set(COMMANDS)
    assert set(summaries) == set(COMMANDS)
    assert all(len(text) > 20 for text in summaries.values()), summaries
    # a command's own help still has its whole docstring (the exit statuses)
    assert "Exit status" in run_cli("status", "--help").stdout


def test_metrics_port_without_prometheus_client_exits_2_with_the_install_hint(
    tmp_path: Path,
) -> None:
    shim = tmp_path / "shim" / "prometheus_client"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('not installed (test shim)')\n")
    base = make_base(tmp_path)
    env_path = os.pathsep.join([str(shim.parent), os.environ.get("PYTHONPATH", "")])
    for command in ("run", "check"):
        out = run_cli(command, str(base), "--metrics-port", "9", env={"PYTHONPATH": env_path})
        assert out.returncode == 2, (command, out.stderr)
        assert "Traceback" not in out.stderr
        assert "pip install 'bmac-trio[metrics]'" in out.stderr
    assert not (base / "usdt_perp_5m").exists()


def test_check_reports_corrupt_and_stale_data_files(tmp_path: Path) -> None:
    base = make_base(tmp_path)
    config = load_config(base)
    store = CandleStore(config.candle_dir, "parquet", ZoneInfo("UTC"), 100, IV)
    store.write("BTCUSDT", candles("BTCUSDT", 10), None)
    store.write("ETHUSDT", candles("ETHUSDT", 10), None)
    out = run_cli("check", str(base))
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout
    assert "2 data files" in out.stdout

    store.write("OLDUSDT", candles("OLDUSDT", 5), None)  # five candles behind the others
    (config.candle_dir / "BADUSDT.pqt").write_bytes(b"PAR1 torn")
    pl.DataFrame({"x": [1]}).write_parquet(config.candle_dir / "ODDUSDT.pqt")
    out = run_cli("check", str(base))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "corrupt: usdt_perp_5m/BADUSDT: unreadable" in out.stderr
    assert "corrupt: usdt_perp_5m/ODDUSDT: not in the candle schema" in out.stderr
    assert "stale: usdt_perp_5m/OLDUSDT: last candle ends" in out.stderr
    assert "BTCUSDT" not in out.stderr
    assert "3 of 5 data files are corrupt or stale" in out.stdout
    # check only looks: the corrupt files are still where they were
    assert (config.candle_dir / "BADUSDT.pqt").read_bytes() == b"PAR1 torn"


def test_config_warnings_let_run_start_and_check_lists_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11 item 10: what BMAC accepted (an unknown key, spot funding) refused to start."""
    from bmac_trio.cli.run import check, run
    from bmac_trio.store.lock import acquire_lock

    base = make_base(tmp_path, trade_type="usdt_spot", funding_rate=True, num_candle=99)
    assert check(base) == 0
    err = capsys.readouterr().err
    assert "unknown key 'num_candle' ignored (did you mean 'num_candles'?)" in err
    assert "'funding_rate' true ignored for usdt_spot" in err
    # run goes past the config: here it meets the lock of another copy (exit 0, as for cron)
    with acquire_lock(base):
        assert run(base) == 0
    err = capsys.readouterr().err
    assert "did you mean 'num_candles'?" in err
    assert "already being recorded" in err
