"""MarketWindow: the in-memory window holds exactly what the symbol's file would hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings, strategies as st

from bmac_kit.window import MarketWindow

T0_MS = 1_721_216_400_000
FIVE_MIN_MS = 300_000


def candles(n: int, *, end_ms: int = T0_MS, seed: int = 0) -> pl.DataFrame:
    """``n`` consecutive 5m candles, the last ending at ``end_ms`` (distinct values)."""
    rng = np.random.default_rng(seed)
    end = end_ms - FIVE_MIN_MS * np.arange(n - 1, -1, -1, dtype=np.int64)
    values = {c: rng.random(n) + 1 for c in FLOATS}
    frame = pl.DataFrame({"candle_begin_time": end - FIVE_MIN_MS, "candle_end_time": end, **values})
    return frame.with_columns(pl.col("^candle_.*_time$").cast(pl.Datetime("ms", "UTC")))


FLOATS = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_num",
    "taker_buy_base_asset_volume",
    "taker_buy_quote_asset_volume",
)


def file_model(applied: list[pl.DataFrame], num_candles: int) -> pl.DataFrame:
    """What the recorder's file holds: sorted, unique by end time (first kept), the last n."""
    frame = pl.concat(applied).unique("candle_end_time", keep="first", maintain_order=True)
    return frame.sort("candle_end_time").tail(num_candles)


def with_symbol(frame: pl.DataFrame, symbol: str) -> pl.DataFrame:
    return frame.select(pl.lit(symbol).alias("symbol"), pl.all())


def test_appending_one_candle_a_period_keeps_the_last_num_candles() -> None:
    history = candles(30)
    window = MarketWindow(10, "5m", mirror=4)
    for i in range(30):
        window.apply(with_symbol(history.slice(i, 1), "AUSDT"))
        assert window.frame("AUSDT").equals(history.slice(max(0, i - 9), min(i + 1, 10)))
    assert window.last_end_time("AUSDT") is not None
    assert window.last_end_time("AUSDT").timestamp() * 1000 == T0_MS  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(
    num_candles=st.integers(1, 12),
    mirror=st.integers(0, 12),
    total=st.integers(1, 30),
    data=st.data(),
)
def test_any_batching_and_order_holds_what_the_file_would(
    num_candles: int, mirror: int, total: int, data: Any
) -> None:
    """Gaps (candles never sent), heals (late candles), duplicates and batches of any size."""
    history = candles(total, seed=total)
    sent = data.draw(st.lists(st.integers(0, total - 1), max_size=3 * total), label="sent")
    batches = data.draw(st.integers(1, 5), label="batch size")
    window = MarketWindow(num_candles, "5m", mirror=mirror)
    applied: list[pl.DataFrame] = []
    for start in range(0, len(sent), batches):
        rows = history[sent[start : start + batches]]
        window.apply(with_symbol(rows, "AUSDT"))
        applied.append(rows)
        expected = file_model(applied, num_candles)
        assert window.frame("AUSDT").equals(expected)
        last = expected.get_column("candle_end_time")[-1]
        for row in range(expected.height):  # any candle held, as the bus rebuilds a period
            end = expected.get_column("candle_end_time")[row]
            period = window.period_frame(end)
            assert period.drop("symbol").equals(expected.slice(row, 1))
        for k in range(1, min(num_candles, len(expected)) + 1):
            got = window.last("close", k, int(last.timestamp() * 1000))[window.slot("AUSDT")]
            assert got.tolist() == expected.get_column("close").tail(k).to_list()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), held=st.integers(0, 30))
def test_a_whole_market_at_once_in_any_order(seed: int, held: int) -> None:
    """The bulk path (start, the bus's heal): many candles of many symbols, shuffled, some
    held already, some twice."""
    rng = np.random.default_rng(seed)
    histories = {f"S{i}USDT": candles(40, seed=seed % 1000 + i) for i in range(4)}
    window = MarketWindow(30, "5m", mirror=5)
    for symbol, history in histories.items():
        if held:
            window.apply(with_symbol(history.head(held), symbol))
    rows = pl.concat(with_symbol(h, s) for s, h in histories.items())
    rows = rows[rng.integers(0, rows.height, size=2 * rows.height).tolist()]  # repeats
    rows = pl.concat([rows, pl.concat(with_symbol(h, s) for s, h in histories.items())])
    window.apply(rows.sample(fraction=1.0, shuffle=True, seed=seed % 1000))
    for symbol, history in histories.items():
        assert window.frame(symbol).equals(history.tail(30))


def test_listing_and_delisting_reuse_slots_and_frames_stay_apart() -> None:
    window = MarketWindow(5, "5m")
    a, b, c = candles(5, seed=1), candles(3, seed=2), candles(2, seed=3)
    window.apply(pl.concat([with_symbol(a, "AUSDT"), with_symbol(b, "BUSDT")]))
    assert window.symbols() == ["AUSDT", "BUSDT"]
    window.remove("AUSDT")
    assert window.symbols() == ["BUSDT"]
    assert window.last_end_time("AUSDT") is None
    window.apply(with_symbol(c, "CUSDT"))  # listed: takes AUSDT's old slot, holds only its own
    assert window.slot("CUSDT") == 0
    assert window.frame("CUSDT").equals(c)
    assert window.frame("BUSDT").equals(b)
    short = window.last("close", 3, T0_MS)[window.slot("CUSDT")]
    assert np.isnan(short[0])
    assert short[1:].tolist() == c.get_column("close").to_list()


def test_a_period_frame_met_again_after_a_delisting_is_not_taken_as_held() -> None:
    # the period's symbol column is remembered with its slots (no list of names built each
    # period); a delisting and a listing in that slot must not leave the old answer behind
    names = [f"S{i:03d}USDT" for i in range(70)]
    window = MarketWindow(5, "5m")
    window.apply(pl.concat(with_symbol(candles(2, seed=i), s) for i, s in enumerate(names)))
    period = pl.concat(with_symbol(candles(1, seed=i), s) for i, s in enumerate(names))
    window.apply(period)  # held already: the column and its slots are remembered
    window.remove(names[0])
    window.apply(with_symbol(candles(1, seed=99), "NEWUSDT"))  # takes the freed slot
    assert window.slot("NEWUSDT") == 0
    window.apply(period)  # names[0] is back: not "held" through NEWUSDT's slot
    assert names[0] in window.symbols()
    assert window.frame(names[0]).equals(candles(1, seed=0))
    assert window.frame("NEWUSDT").equals(candles(1, seed=99))


def test_period_frame_has_one_row_per_symbol_holding_the_candle() -> None:
    window = MarketWindow(5, "5m")
    window.apply(with_symbol(candles(4), "BUSDT"))
    window.apply(with_symbol(candles(3, end_ms=T0_MS - FIVE_MIN_MS), "AUSDT"))
    now = window.period_frame(T0_MS)
    assert now.get_column("symbol").to_list() == ["BUSDT"]
    before = window.period_frame(T0_MS - FIVE_MIN_MS)
    assert before.get_column("symbol").to_list() == ["AUSDT", "BUSDT"]
    expected = candles(4).slice(2, 1)
    assert before.filter(symbol="BUSDT").drop("symbol").equals(expected)


def test_memory_is_what_the_arrays_take() -> None:
    window = MarketWindow(1500, "5m", mirror=0)
    for i in range(500):
        window.apply(with_symbol(candles(1), f"S{i}USDT"))
    assert len(window) == 500
    # 512 slots (grown by doubling) x 1500 candles x 11 columns x 8 bytes, plus per-slot state
    assert 67e6 < window.nbytes < 68e6


def test_from_directory_reads_every_file(datadir: Any, make_candles: Any) -> None:
    first = make_candles(40, end_ms=T0_MS, seed=1)
    second = make_candles(25, end_ms=T0_MS - FIVE_MIN_MS, seed=2)
    datadir.write_symbol("AUSDT", first)
    datadir.write_symbol("BUSDT", second)
    for base in (datadir.base, datadir.candles):
        window = MarketWindow.from_directory(Path(base), num_candles=30)
        assert window.symbols() == ["AUSDT", "BUSDT"]
        assert window.interval.name == "5m"
        assert window.frame("AUSDT").equals(first.tail(30))
        assert window.frame("BUSDT").equals(second)


def test_from_directory_reads_feather_files(datadir: Any, make_candles: Any) -> None:
    datadir.save_type = "feather"
    datadir.write_meta()
    history = make_candles(12, end_ms=T0_MS, seed=4)
    datadir.write_symbol("AUSDT", history)
    assert (datadir.candles / "AUSDT.fea").exists()
    window = MarketWindow.from_directory(datadir.base)
    assert window.frame("AUSDT").equals(history)


def test_months_are_refused() -> None:
    with pytest.raises(ValueError, match="fixed-length"):
        MarketWindow(10, "1M")
