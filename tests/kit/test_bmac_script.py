"""A BMAC v2 strategy script, unchanged but for its import line, against a live recorder.

The simulator and the real recorder run in this process on one :class:`ScaledWallClock` (15x:
a 1m period every four real seconds) and keep a data directory live over real sockets. The
strategy is written as BMAC users write theirs (``asyncio.run``, positional constructor
arguments, a ``factor/`` package of pandas ``signal()`` modules beside it, ``next_run_time`` /
``sleep_until_run_time``) and runs as a child process for several periods; a small runner only
hands it the shared clock (``set_default_clock``) before running it as ``__main__``. The same
script then runs under trio (its ``asyncio.run`` line swapped for ``trio.run``), at the same
time. Every row is checked against the exchange's ground truth.
"""

from __future__ import annotations

import difflib
import json
import shutil
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path

import orjson
import pandas as pd
import pytest
import trio

from bmac_trio.clock import ScaledWallClock
from bmac_trio.recorder.service import RecorderOptions, run_recorder
from bmac_trio.sim import SimConfig, open_simulator
from bmac_trio.store.config import load_config

KIT_TESTS = Path(__file__).parent
START_MS = 1_767_225_600_000 + 40_000  # 2026-01-01 00:00:40 UTC
MINUTE = 60_000
SPEED = 15.0
PERIODS = 3
OPTIONS = RecorderOptions(
    ws_probe_after_s=0.5, ws_probe_timeout_s=0.5, restart_backoff_s=0.2, durable=False
)

#: As a BMAC v2 user wrote it (BMAC's own kit was the module ``bmac_kit`` too).
BMAC_SCRIPT = """\
import asyncio
import json
import sys

from bmac_kit import (
    BmacAllMarketCalculator,
    BmacSingleSymbolCalculator,
    CandleFileReader,
    convert_interval_to_timedelta,
    next_run_time,
    sleep_until_run_time,
)

BASE_DIR = sys.argv[1]
PERIODS = int(sys.argv[2])
INTERVAL = "1m"
FACTOR_CFGS = [("PctChg", 3), ("TrdNumMeanV1", 5)]


async def main():
    candle_reader = CandleFileReader(f"{BASE_DIR}/usdt_perp_{INTERVAL}", "parquet")
    exginfo_reader = CandleFileReader(f"{BASE_DIR}/exginfo_{INTERVAL}", "parquet")
    all_calc = BmacAllMarketCalculator(exginfo_reader, candle_reader, FACTOR_CFGS, "factor", 40)
    btc_calc = BmacSingleSymbolCalculator("BTCUSDT", candle_reader, FACTOR_CFGS, "factor", 40)
    run_time = next_run_time(INTERVAL) - convert_interval_to_timedelta(INTERVAL)
    for _ in range(PERIODS):
        df = await all_calc.calc_all_factors(run_time)
        btc = await btc_calc.calc_factors(run_time)
        print(json.dumps({
            "run_time": run_time.isoformat(),
            "index": [df.index.name, str(df.index.dtype), list(df.index)],
            "dtypes": {c: str(t) for c, t in df.dtypes.items()},
            "close": df["close"].tolist(),
            "PctChg_3": df["PctChg_3"].tolist(),
            "TrdNumMeanV1_5": df["TrdNumMeanV1_5"].tolist(),
            "btc": [btc.index.name, str(btc.index[-1]), len(btc), btc["PctChg_3"].iloc[-1]],
        }), flush=True)
        run_time = next_run_time(INTERVAL)
        await sleep_until_run_time(run_time)


if __name__ == "__main__":
    asyncio.run(main())
"""
OUR_SCRIPT = BMAC_SCRIPT.replace("from bmac_kit import (", "from bmac_kit.bmac import (")
TRIO_SCRIPT = OUR_SCRIPT.replace("import asyncio\n", "import trio\n").replace(
    "asyncio.run(main())", "trio.run(main)"
)
#: Hands the script the simulated clock, then runs it as ``python strategy.py`` would.
RUNNER = """\
import runpy, sys
from bmac_kit import set_default_clock
from bmac_trio.clock import parse_clock_spec
set_default_clock(parse_clock_spec(sys.argv[1]))
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def strategy_folder(root: Path, script: str) -> Path:
    """A strategy folder: the script and the user's factor/ package of pandas modules."""
    (root / "factor").mkdir(parents=True)
    (root / "factor" / "__init__.py").write_text("")
    for name in ("PctChg", "TrdNumMeanV1"):
        shutil.copy(KIT_TESTS / "bmac_style_factors" / f"{name}.py", root / "factor")
    (root / "strategy.py").write_text(script)
    return root / "strategy.py"


def test_only_the_import_line_differs() -> None:
    diff = [
        line
        for line in difflib.unified_diff(BMAC_SCRIPT.splitlines(), OUR_SCRIPT.splitlines(), n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert diff == ["-from bmac_kit import (", "+from bmac_kit.bmac import ("]


def check_period(period: dict, symbols: list[str], sim, log: str) -> int:
    """One printed period against the exchange's ground truth; its run time (ms).

    Every symbol is there, or was reported missing (``log``: the script's stderr): a machine
    loaded far beyond its cores can delay the recorder past the 40 s deadline (2.7 real s).
    """
    run_time = round(datetime.fromisoformat(period["run_time"]).timestamp() * 1000)
    name, _, index = period["index"]
    assert name == "symbol"
    assert index == sorted(index)
    for symbol in set(symbols) - set(index):
        assert f"missing for {datetime.fromisoformat(period['run_time'])}" in log, symbol
    assert period["dtypes"]["candle_begin_time"] == "datetime64[ns, UTC]"
    assert {t for c, t in period["dtypes"].items() if c != "candle_begin_time"} == {"float64"}
    for i, symbol in enumerate(index):
        rows = [r for r in sim.ground_truth(symbol, "1m") if r[0] + MINUTE <= run_time]
        close = [float(r[4]) for r in rows]
        trades = [float(r[8]) for r in rows]
        assert period["close"][i] == close[-1], symbol
        assert period["PctChg_3"][i] == pytest.approx(close[-1] / close[-4] - 1, rel=1e-9)
        assert period["TrdNumMeanV1_5"][i] == pytest.approx(sum(trades[-5:]) / 5, rel=1e-9)
    btc_name, btc_last, btc_rows, btc_pct = period["btc"]
    assert btc_name == "candle_end_time"
    assert btc_last == str(pd.Timestamp(run_time, unit="ms", tz="UTC"))
    assert 25 <= btc_rows <= 30  # the file's newest candles may already be past run_time
    if "BTCUSDT" in index:
        assert btc_pct == period["PctChg_3"][index.index("BTCUSDT")]
    return run_time


@pytest.mark.slow
async def test_bmac_script_on_asyncio_and_trio_against_a_live_recorder(tmp_path: Path) -> None:
    base = tmp_path / "data"
    base.mkdir()
    clock = ScaledWallClock(START_MS, SPEED, time.time())
    scripts = {
        "asyncio": strategy_folder(tmp_path / "asyncio", OUR_SCRIPT),
        "trio": strategy_folder(tmp_path / "trio", TRIO_SCRIPT),
    }
    outputs: dict[str, trio.CompletedProcess] = {}
    with trio.fail_after(90):
        async with (
            open_simulator(SimConfig(market="um", symbols=8, seed=11), clock=clock) as sim,
            trio.open_nursery() as nursery,
        ):
            (base / "config.json").write_bytes(
                orjson.dumps(
                    {
                        "interval": "1m",
                        "trade_type": "usdt_perp",
                        "num_candles": 30,
                        "num_socket_listeners": 2,
                        "rest_url": sim.rest_url,
                        "ws_url": sim.ws_url,
                    }
                )
            )
            config = load_config(base)
            handle = await nursery.start(
                partial(run_recorder, config, clock=clock, options=OPTIONS)
            )
            await handle.wait_until(lambda h: len(h.stats.completed) >= 1)

            async def run(name: str, script: Path) -> None:
                cmd = [sys.executable, "-c", RUNNER, clock.spec(), str(script), str(base)]
                outputs[name] = await trio.run_process(
                    [*cmd, str(PERIODS)],
                    cwd=script.parent,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )

            async with trio.open_nursery() as strategies:
                for name, script in scripts.items():
                    strategies.start_soon(run, name, script)
            symbols = sorted(handle.symbols)
            handle.stop()
    assert "BTCUSDT" in symbols
    periods = {}
    for name, done in outputs.items():
        assert done.returncode == 0, done.stderr.decode()
        lines = done.stdout.decode().splitlines()
        assert len(lines) == PERIODS, (name, done.stderr.decode())
        periods[name] = [json.loads(line) for line in lines]
        log = done.stderr.decode()
        run_times = [check_period(p, symbols, sim, log) for p in periods[name]]
        # every symbol came through in some period: "missing" is the exception
        assert {s for p in periods[name] for s in p["index"][2]} == set(symbols), log
        # consecutive periods, unless a period's work outlasted the next boundary on a loaded
        # machine (4 real seconds a period): BMAC's loop then moves to the next one, as here
        assert run_times == sorted(set(run_times)), name
        assert all(t % MINUTE == 0 for t in run_times), name
    # the two event loops computed the same numbers for the periods both saw
    by_time = {p["run_time"]: p for p in periods["asyncio"]}
    shared = [p for p in periods["trio"] if p["run_time"] in by_time]
    assert shared
    for p in shared:
        both = set(p["index"][2]) & set(by_time[p["run_time"]]["index"][2])
        for key in ("close", "PctChg_3", "TrdNumMeanV1_5"):
            mine = dict(zip(p["index"][2], p[key], strict=True))
            theirs = dict(
                zip(by_time[p["run_time"]]["index"][2], by_time[p["run_time"]][key], strict=True)
            )
            assert {s: mine[s] for s in both} == {s: theirs[s] for s in both}, key
