"""CandleFileReader on a contract-shaped directory, and the time helpers on a fake clock."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import trio
from polars.testing import assert_frame_equal

import bmac_kit._reader as reader_module
from bmac_kit import (
    CandleFileReader,
    convert_interval_to_timedelta,
    next_run_time,
    now_time,
    sleep_until_run_time,
)
from bmac_trio.clock import TrioClock

T0 = 1_721_216_400_000  # 2024-07-17 11:40 UTC = 19:40 Hong Kong
HK = ZoneInfo("Asia/Hong_Kong")


@pytest.mark.parametrize("save_type", ["parquet", "feather"])
def test_reader_configures_itself_from_meta(datadir, make_candles, save_type: str) -> None:
    datadir.save_type = save_type
    datadir.write_meta()
    frame = make_candles(30, end_ms=T0)
    datadir.write_symbol("BTCUSDT", frame)
    datadir.write_symbol("ETHUSDT", frame, ready=False)
    reader = CandleFileReader(datadir.candles)
    assert (reader.save_type, reader.interval, reader.tz) == (save_type, "5m", HK)
    path = reader.format_ready_file_path("BTCUSDT", datetime(2024, 7, 17, 19, 40, tzinfo=HK))
    assert path.name == "BTCUSDT_20240717_194000.ready"
    assert reader.check_ready("BTCUSDT", T0)
    assert reader.check_ready("BTCUSDT", datetime(2024, 7, 17, 11, 40, tzinfo=UTC))
    assert not reader.check_ready("ETHUSDT", T0)
    assert not reader.check_ready("BTCUSDT", T0 + 300_000)
    assert reader.get_all_symbols() == ["BTCUSDT", "ETHUSDT"]
    assert reader.has_symbol("ETHUSDT")
    assert not reader.has_symbol("XRPUSDT")
    assert not reader.has_symbol("../x")
    assert reader.ready_symbols(T0) == {"BTCUSDT"}
    assert_frame_equal(reader.read_candle("BTCUSDT"), frame)
    pdf = reader.read_candle("BTCUSDT", pandas=True)
    assert pdf.index.name == "candle_end_time"
    assert pdf.index[-1] == datetime(2024, 7, 17, 11, 40, tzinfo=UTC)
    assert list(pdf["close"]) == frame.get_column("close").to_list()


def test_reader_accepts_bmac_explicit_save_type_and_exginfo_dir(datadir, make_candles) -> None:
    datadir.write_exginfo(["BTCUSDT"], T0)
    exginfo = CandleFileReader(datadir.exginfo)
    assert exginfo.save_type == "parquet"
    assert exginfo.check_ready("exginfo", T0)
    assert exginfo.read_candle("exginfo").get_column("symbol").to_list() == ["BTCUSDT"]
    assert CandleFileReader(datadir.candles, "feather").save_type == "feather"
    with pytest.raises(ValueError, match="save_type"):
        CandleFileReader(datadir.candles, "csv")  # type: ignore[arg-type]


def test_reader_without_meta_defaults_to_bmac(tmp_path) -> None:
    reader = CandleFileReader(tmp_path / "nothing")
    assert (reader.save_type, reader.tz, reader.get_all_symbols()) == ("parquet", HK, [])


def test_read_retries_once_when_the_file_is_replaced_mid_read(
    datadir, make_candles, monkeypatch
) -> None:
    frame = make_candles(10, end_ms=T0)
    datadir.write_symbol("BTCUSDT", frame)
    real, calls = reader_module._read_one, []

    def torn_once(path):
        calls.append(path)
        if len(calls) == 1:
            raise pl.exceptions.ComputeError("parquet: out of spec (file was replaced)")
        return real(path)

    monkeypatch.setattr(reader_module, "_read_one", torn_once)
    assert_frame_equal(CandleFileReader(datadir.candles).read_candle("BTCUSDT"), frame)
    assert len(calls) == 2


def test_read_symbols_skips_a_vanished_or_corrupt_file(datadir, make_candles) -> None:
    for i, s in enumerate(["AUSDT", "BUSDT"]):
        datadir.write_symbol(s, make_candles(10 + i, end_ms=T0, seed=i))
    reader = CandleFileReader(datadir.candles)
    both = reader.read_symbols(["AUSDT", "BUSDT"])
    assert both.group_by("symbol").len().sort("symbol").rows() == [("AUSDT", 10), ("BUSDT", 11)]
    reader.symbol_path("AUSDT").write_bytes(b"PAR1 not a parquet file PAR1")  # corrupt
    assert reader.read_symbols(["AUSDT", "BUSDT"]).get_column("symbol").unique().to_list() == [
        "BUSDT"
    ]
    datadir.write_symbol("AUSDT", make_candles(10, end_ms=T0, seed=0))
    # another writer's file: nanosecond times and an extra index column, or no candle columns
    odd = make_candles(12, end_ms=T0, seed=1).with_columns(
        pl.col("candle_begin_time", "candle_end_time").cast(pl.Datetime("ns", "UTC")),
        __index_level_0__=pl.lit(0),
    )
    odd.write_parquet(reader.symbol_path("BUSDT"))
    pl.DataFrame({"x": [1]}).write_parquet(reader.symbol_path("CUSDT"))
    both = reader.read_symbols(["AUSDT", "BUSDT", "CUSDT"])
    assert both.group_by("symbol").len().sort("symbol").rows() == [("AUSDT", 10), ("BUSDT", 12)]
    reader.symbol_path("BUSDT").unlink()
    assert reader.read_symbols(["AUSDT", "BUSDT"]).get_column("symbol").unique().to_list() == [
        "AUSDT"
    ]


async def test_time_helpers_use_the_injected_clock(autojump_clock) -> None:
    clock = TrioClock(start_ms=T0 + 61_234)
    assert now_time(clock=clock) == datetime(2024, 7, 17, 19, 41, 1, 234000, tzinfo=HK)
    assert now_time("UTC", clock=clock).hour == 11
    run_time = next_run_time("5m", clock=clock)
    assert run_time == datetime(2024, 7, 17, 19, 45, tzinfo=HK)
    # 1d periods align to 00:00 UTC like Binance (08:00 in Hong Kong), not HK midnight
    assert next_run_time("1d", clock=clock) == datetime(2024, 7, 18, 8, 0, tzinfo=HK)
    assert next_run_time(timedelta(minutes=5), clock=clock) == run_time
    assert convert_interval_to_timedelta("5m") == timedelta(minutes=5)
    with pytest.raises(ValueError, match="fixed length"):
        convert_interval_to_timedelta("1M")
    before = trio.current_time()
    await sleep_until_run_time(run_time, clock=clock)
    assert clock.now_ms() == T0 + 300_000
    assert trio.current_time() - before == pytest.approx(300 - 61.234)


def test_ready_symbols_counts_a_later_period_but_not_an_earlier_one(datadir, make_candles) -> None:
    datadir.write_symbol("NEWERUSDT", make_candles(5, end_ms=T0 + 300_000))
    datadir.write_symbol("OLDERUSDT", make_candles(5, end_ms=T0 - 300_000))
    datadir.write_symbol("EXACTUSDT", make_candles(5, end_ms=T0))
    (datadir.candles / "junk_x.ready").write_text("")
    reader = CandleFileReader(datadir.candles)
    assert reader.ready_symbols(T0) == {"NEWERUSDT", "EXACTUSDT"}
    assert not reader.check_ready("NEWERUSDT", T0)  # BMAC's exact check is kept as it was


def test_pandas_is_optional_and_imported_lazily() -> None:
    code = "import sys, bmac_kit, bmac_kit._hourly, bmac_kit.factors.PctChg, bmac_kit.bmac\n"
    code += "print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
