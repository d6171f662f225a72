"""The all-offset hourly job against direct resamples: every offset, the edges, gaps."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import trio
from hypothesis import given, settings, strategies as st

from bmac_kit import CandleFileReader
from bmac_kit._cli import hourly
from bmac_kit._hourly import HourlyJob, run_hourly_live
from bmac_kit._resample import OFFSETS, offset_of, resample_hourly
from bmac_trio.cli import main
from bmac_trio.clock import TrioClock
from bmac_trio.store.layout import CANDLE_COLUMNS

T0 = 1_721_216_400_000  # 2024-07-17 11:40 UTC
HOUR = 3_600_000
FIVE = 300_000
SUMMED = [
    "volume",
    "quote_volume",
    "trade_num",
    "taker_buy_base_asset_volume",
    "taker_buy_quote_asset_volume",
]


def loop_resample(frame: pl.DataFrame, offset: int) -> list[dict]:
    """The obvious way: walk the hours, keep those with all twelve 5m candles."""
    rows = frame.to_dicts()
    by_begin = {int(r["candle_begin_time"].timestamp() * 1000): r for r in rows}
    first, last = min(by_begin), max(by_begin)
    start = (first - offset * 60_000) // HOUR * HOUR + offset * 60_000
    out = []
    for w in range(start, last + 1, HOUR):
        bars = [by_begin.get(w + i * FIVE) for i in range(12)]
        if any(b is None for b in bars):
            continue
        out.append(
            {
                "candle_begin_time": bars[0]["candle_begin_time"],
                "candle_end_time": bars[-1]["candle_end_time"],
                "open": bars[0]["open"],
                "high": max(b["high"] for b in bars),
                "low": min(b["low"] for b in bars),
                "close": bars[-1]["close"],
                **{c: sum(b[c] for b in bars) for c in SUMMED},
            }
        )
    return out


def pandas_resample(frame: pl.DataFrame, offset: int) -> pd.DataFrame:
    """BMAC's published recipe (resample '1h' with offset) plus 'all twelve bars present'."""
    df = frame.to_pandas().set_index("candle_begin_time", drop=False)
    agg = {
        "candle_begin_time": "first",
        "candle_end_time": "last",
        "open": "first",
        "high": "max",
        "low": "min",
        "close": "last",
        **dict.fromkeys(SUMMED, "sum"),
    }
    rule = df.resample("1h", offset=f"{offset}min")
    out = rule.agg(agg)
    out["bars"] = rule["close"].count()
    out = out[out["bars"] == 12].drop(columns="bars").reset_index(drop=True)
    return out


def _assert_rows_equal(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for key in ("candle_begin_time", "candle_end_time", "open", "high", "low", "close"):
            assert g[key] == w[key], key
        for key in SUMMED:
            assert g[key] == pytest.approx(w[key], rel=1e-12), key


def _source(make_candles, n: int, end_ms: int, seed: int, drop: tuple[int, ...] = ()):
    frame = make_candles(n, end_ms=end_ms, seed=seed)
    if drop:
        frame = frame.with_row_index().filter(~pl.col("index").is_in(list(drop))).drop("index")
    return frame


@pytest.mark.parametrize("offset", OFFSETS)
def test_resample_equals_loop_and_pandas_for_every_offset(make_candles, offset: int) -> None:
    # 11:40 end, 307 bars: begins at 10:05 the day before, so both edges are partial for
    # most offsets and exactly aligned for some; symbol B has a gap (bar 100 missing)
    a = _source(make_candles, 307, T0, seed=1)
    b = _source(make_candles, 200, T0, seed=2, drop=(100,))
    frame = pl.concat([a.with_columns(symbol=pl.lit("AUSDT")), b.with_columns(symbol=pl.lit("B"))])
    got = resample_hourly(frame, offset).collect()
    assert got.columns == ["symbol", *CANDLE_COLUMNS]
    for symbol, source in (("AUSDT", a), ("B", b)):
        mine = got.filter(pl.col("symbol") == symbol).drop("symbol")
        _assert_rows_equal(mine.to_dicts(), loop_resample(source, offset))
        pdf = pandas_resample(source, offset)
        _assert_rows_equal(mine.to_dicts(), pdf.to_dict("records"))
        ends = mine.get_column("candle_end_time").dt.epoch("ms")
        assert ((ends - mine.get_column("candle_begin_time").dt.epoch("ms")) == HOUR).all()
        assert ((ends // 60_000 % 60) == offset).all()


def test_resample_edges_and_gap_exactly(make_candles) -> None:
    # 36 bars ending 11:40 UTC: 08:40 .. 11:40. Offset 40: three full hours exactly.
    frame = _source(make_candles, 36, T0, seed=3).with_columns(symbol=pl.lit("X"))
    assert resample_hourly(frame, 40).collect().height == 3
    assert resample_hourly(frame, 45).collect().height == 2  # 08:45-09:45, 09:45-10:45
    # a missing bar at 10:00-10:05 (index 16) kills exactly the hour holding it, per offset
    gap = frame.with_row_index().filter(pl.col("index") != 16).drop("index")
    for offset in OFFSETS:
        full = resample_hourly(frame, offset).collect()
        cut = resample_hourly(gap, offset).collect()
        lost = set(full.get_column("candle_begin_time")) - set(cut.get_column("candle_begin_time"))
        assert len(lost) == 1, offset
        (begin,) = lost
        bar = T0 - 20 * FIVE
        assert begin.timestamp() * 1000 <= bar < begin.timestamp() * 1000 + HOUR
        assert cut.height == full.height - 1


def test_offset_of_the_hour_that_just_closed() -> None:
    assert offset_of(T0) == 40
    assert offset_of(T0 + FIVE) == 45
    assert offset_of(T0 + 4 * FIVE) == 0
    with pytest.raises(ValueError, match="offset"):
        resample_hourly(pl.DataFrame(), 7)


def _files(root: Path, offset: int) -> list[str]:
    return sorted(p.name for p in (root / f"{offset}m").iterdir())


def test_run_once_writes_every_offset_and_is_idempotent(datadir, make_candles, tmp_path) -> None:
    sources = {
        "AUSDT": _source(make_candles, 300, T0, seed=1),
        "BUSDT": _source(make_candles, 150, T0, seed=2, drop=(70, 71)),
    }
    for s, f in sources.items():
        datadir.write_symbol(s, f)
    job = HourlyJob.from_base(datadir.base, durable=False)
    assert job.out_dir == datadir.base / "usdt_perp_1h_resample"
    report = job.run_once()
    assert report.symbols == 2
    assert report.written == dict.fromkeys(OFFSETS, 2)
    out = CandleFileReader(job.offset_dir(0), "parquet")
    for offset in OFFSETS:
        assert _files(job.out_dir, offset) == ["AUSDT.pqt", "BUSDT.pqt"]
        reader = CandleFileReader(job.offset_dir(offset), "parquet")
        for symbol, source in sources.items():
            _assert_rows_equal(reader.read_candle(symbol).to_dicts(), loop_resample(source, offset))
    assert out.get_all_symbols() == ["AUSDT", "BUSDT"]
    assert job.run_once().written == dict.fromkeys(OFFSETS, 0)  # nothing new: nothing rewritten
    # the 5m window rolls on: older hours are kept, newer ones appended
    datadir.write_symbol("AUSDT", _source(make_candles, 300, T0, seed=1).tail(100))
    job.run_once()
    again = CandleFileReader(job.offset_dir(0), "parquet").read_candle("AUSDT")
    _assert_rows_equal(again.to_dicts(), loop_resample(sources["AUSDT"], 0))


def test_cli_once_with_out_and_bad_base(datadir, make_candles, tmp_path, capsys) -> None:
    datadir.save_type = "feather"
    datadir.write_meta()
    datadir.write_symbol("AUSDT", _source(make_candles, 40, T0, seed=1))
    assert hourly(datadir.base, out=tmp_path / "out") == 0
    assert _files(tmp_path / "out" / "usdt_perp_1h_resample", 40) == ["AUSDT.fea"]
    assert hourly(tmp_path / "nothing") == 2
    assert "nothing" in capsys.readouterr().err
    # registered as `bmac-trio hourly`, live on a simulated clock (600x) for one period
    spec = f"{T0 - 2_000}:600:{time.time()!r}"
    out = str(tmp_path / "live")
    main(
        ["hourly", str(datadir.candles), "--out", out, "--live", "--clock", spec, "--periods", "1"]
    )
    assert _files(tmp_path / "live" / "usdt_perp_1h_resample", 40) == ["AUSDT.fea"]


async def test_live_updates_the_offset_whose_hour_closed(
    datadir, make_candles, autojump_clock
) -> None:
    full = {s: _source(make_candles, 100, T0 + 2 * FIVE, seed=i) for i, s in enumerate("AB")}
    symbols = {f"{s}USDT": f for s, f in full.items()}
    for s, f in symbols.items():
        datadir.write_symbol(s, f.head(98))  # up to T0 (11:40 UTC)
    job = HourlyJob.from_base(datadir.base, durable=False)
    clock = TrioClock(start_ms=T0 + 1_000)
    async with trio.open_nursery() as nursery:
        first = await nursery.start(partial(run_hourly_live, job, clock=clock, periods=2))
        assert first.written == dict.fromkeys(OFFSETS, 2)
        # period 11:45 lands for both; 11:50 only for AUSDT (BUSDT missing at the deadline)
        for s, f in symbols.items():
            datadir.write_symbol(s, f.head(99))
        datadir.write_manifest(T0 + FIVE, complete=symbols, final=True)
        datadir.write_symbol("AUSDT", symbols["AUSDT"])
    assert clock.now_ms() >= T0 + 2 * FIVE + 40_000  # waited for BUSDT until the deadline
    for offset, hour_end, have in ((45, T0 + FIVE, "AB"), (50, T0 + 2 * FIVE, "A")):
        reader = CandleFileReader(job.offset_dir(offset), "parquet")
        for s in "AB":
            ends = reader.read_candle(f"{s}USDT").get_column("candle_end_time").dt.epoch("ms")
            assert (ends.max() == hour_end) is (s in have), (offset, s)
    ahead = CandleFileReader(job.offset_dir(50), "parquet").read_candle("AUSDT")
    _assert_rows_equal(ahead.to_dicts(), loop_resample(symbols["AUSDT"], 50))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=80),
    shift=st.integers(min_value=0, max_value=11),
    dropped=st.sets(st.integers(min_value=0, max_value=79), max_size=6),
    offset=st.sampled_from(OFFSETS),
)
def test_resample_equals_loop_for_any_gaps(n: int, shift: int, dropped: set, offset: int) -> None:
    rng = np.random.default_rng(n)
    begin = [T0 + (shift + i) * FIVE for i in range(n) if i not in dropped]
    frame = pl.DataFrame(
        {
            "candle_begin_time": begin,
            "candle_end_time": [b + FIVE for b in begin],
            **{c: rng.random(len(begin)) for c in ("open", "high", "low", "close", *SUMMED)},
        }
    ).with_columns(pl.col("candle_begin_time", "candle_end_time").cast(pl.Datetime("ms", "UTC")))
    got = resample_hourly(frame.with_columns(symbol=pl.lit("X")), offset).collect()
    want = loop_resample(frame, offset) if begin else []
    _assert_rows_equal(got.drop("symbol").to_dicts(), want)
