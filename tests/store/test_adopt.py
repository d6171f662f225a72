"""Adopting the files of the other save type at start (issue 11, item 2)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from polars.testing import assert_frame_equal

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.store.adopt import adopt_other_save_type
from bmac_trio.store.candles import CandleStore
from bmac_trio.store.layout import OTHER_SAVE_TYPE_DIR

from .test_file_modes import candles

IV = parse_interval("5m")
HK = ZoneInfo("Asia/Hong_Kong")


def test_parquet_files_become_feather_history_and_move_aside(tmp_path: Path) -> None:
    directory = tmp_path / "usdt_perp_5m"
    old = CandleStore(directory, "parquet", HK, 10, IV)
    old.write("AUSDT", candles(12), None)  # more than the new store keeps
    old.write("CUSDT", candles(3), None)
    (directory / "BUSDT.pqt").write_bytes(b"PAR1 torn")
    new = CandleStore(directory, "feather", HK, 10, IV)
    new.write("CUSDT", candles(5), None)  # a start killed after writing it, before the move

    assert adopt_other_save_type(new) == 1
    assert_frame_equal(new.read("AUSDT"), candles(12).tail(10))
    assert new.read("BUSDT") is None  # unusable: downloaded as a new symbol
    assert new.read("CUSDT").height == 5  # the newer file is kept
    assert list(directory.glob("*.pqt")) == []
    aside = sorted(p.name for p in (directory / OTHER_SAVE_TYPE_DIR).iterdir())
    assert aside == ["AUSDT.pqt", "BUSDT.pqt", "CUSDT.pqt"]
    assert adopt_other_save_type(new) == 0  # nothing left to do
