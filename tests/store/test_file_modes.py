"""New files follow the process umask, as BMAC's plain writes did (issue 11, item 3).

``tempfile.mkstemp`` creates its file 0600 whatever the umask, and ``os.replace`` keeps that
mode: every data file was unreadable by the readers' user.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.binance.protocol import FundingRate
from bmac_trio.ops.status import StatusReport, write_status
from bmac_trio.store.candles import CandleStore, ExginfoStore

from .._candles import flat_candles

IV = parse_interval("5m")
HK = ZoneInfo("Asia/Hong_Kong")
T0 = IV.floor(1_721_216_220_000)


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def candles(n: int) -> pl.DataFrame:
    return flat_candles("BTCUSDT", T0, n, IV)


@pytest.mark.parametrize("save_type", ["parquet", "feather"])
def test_every_file_follows_the_umask(tmp_path: Path, umask: int, save_type: str) -> None:
    base = tmp_path / "base"
    base.mkdir()
    store = CandleStore(base / "usdt_perp_5m", save_type, HK, 10, IV, trade_type="usdt_perp")
    run = IV.end(IV.add(T0, 2))
    assert store.write("BTCUSDT", candles(3), run)  # data + ready file
    store.write_manifest(run, complete=["BTCUSDT"], missing=[], final=True)
    store.write_meta({"format_version": 1})
    ex = ExginfoStore(base / "exginfo_5m", HK)
    ex.write_exginfo(pl.DataFrame({"symbol": ["BTCUSDT"], "status": ["TRADING"]}), run)
    ex.append_funding([FundingRate(symbol="BTCUSDT", funding_rate=0.0001)], run, keep_after_ms=0)
    ex.write_meta({"format_version": 1})
    write_status(
        base,
        StatusReport(
            trade_type="usdt_perp", interval="5m", interval_seconds=300, pid=1,
            started_at_ms=0, updated_at_ms=0,
        ),
    )  # fmt: skip

    files = [p for p in base.rglob("*") if p.is_file()]
    kinds = {p.suffix or p.name for p in files}
    assert {".ready", ".json", ".pqt" if save_type == "parquet" else ".fea", ".pqt"} <= kinds
    want = 0o666 & ~umask
    modes = {str(p.relative_to(base)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert modes == dict.fromkeys(modes, oct(want))
    # rewriting an existing file keeps following the umask (not the old file's mode)
    store.write("BTCUSDT", candles(4), IV.end(IV.add(T0, 3)))
    assert stat.S_IMODE(store.path("BTCUSDT").stat().st_mode) == want
