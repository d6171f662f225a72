"""`bmac-trio demo` end to end, run as a person types it, with its output and files checked."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import orjson
import polars as pl
import pytest

from bmac_trio.store.layout import CANDLE_SCHEMA

from .conftest import BMAC_TRIO, run_cli


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    out = run_cli(
        "demo",
        "demo",
        "--periods",
        "2",
        "--symbols",
        "12",
        "--candles",
        "300",
        timeout=90,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
    stdout, stderr = out.stdout, out.stderr
    sim_line = r"Simulated UM market on http://127\.0\.0\.1:\d+: (\d+) symbols trading, 1m candles"
    trading = re.search(sim_line, stdout)
    assert trading is not None
    # the 12 generated symbols, plus the contracts a futures market adds on top of the count
    assert int(trading[1]) >= 12
    selected = int(re.findall(r"History of (\d+) usdt_perp symbols on disk", stdout)[0])
    assert 5 <= selected <= 12  # the USDT perpetuals among the simulated symbols
    # the history download (plain progress lines: the output is not a terminal here)
    assert f"Init history: {selected}/{selected} symbols ready" in stderr
    # two live periods, each with its lag
    lags = re.findall(r"period (\d)/2 ending \d\d:\d\d UTC complete on disk, lag (\d+|n/a)", stdout)
    assert [p for p, _ in lags] == ["1", "2"]
    # where the files are, and a bmac_kit snippet whose real output is shown
    base = tmp_path / "demo"
    candle_dir = base / "usdt_perp_1m"
    assert f"in {candle_dir}/" in stdout
    assert "from bmac_kit import CandleFileReader" in stdout
    assert 'reader = CandleFileReader("demo/usdt_perp_1m")' in stdout
    assert f"    {selected} symbols" in stdout
    assert "shape: (3, 6)" in stdout  # the snippet's real output
    assert f"bmac-trio status {base}" in stdout

    files = sorted(candle_dir.glob("*.pqt"))
    assert len(files) == selected
    for path in files:
        frame = pl.read_parquet(path)
        assert frame.schema == CANDLE_SCHEMA
        assert frame.height == 300
        assert frame["candle_begin_time"].is_sorted()
        assert frame["candle_begin_time"].n_unique() == 300

    # the recorder left its status behind: stopped, with the periods it completed; a
    # recorder that is gone is unhealthy (exit 3) however fresh its data
    status = run_cli("status", str(base), "--json", "--max-age", "1e12")
    assert status.returncode == 3, status.stdout + status.stderr
    data = orjson.loads(status.stdout)
    assert (data["health"], data["running"]) == ("not_running", False)
    assert data["status"]["state"] == "stopped"
    assert data["status"]["periods_completed"] >= 2
    assert data["status"]["symbols_missing"] == []
    assert len(data["status"]["symbols_ready"]) == selected


def test_demo_refuses_a_directory_that_is_not_its_own(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    out = run_cli("demo", str(precious), "--periods", "1")
    assert out.returncode == 2
    assert "not empty and was not made by bmac-trio demo" in out.stderr
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [BMAC_TRIO, "demo", str(tmp_path / "demo"), "--symbols", "6", "--candles", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until it records, then press Ctrl-C
            if "now live" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    assert "Interrupted (Ctrl-C); the recorder stopped cleanly" in rest
    assert (tmp_path / "demo" / "bmac_status.json").exists()
