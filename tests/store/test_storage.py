"""The storage layer on a real temp directory: atomic files, ready files, manifests, recovery."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.binance.protocol import Candle, FundingRate, candles_to_frame
from bmac_trio.errors import StorageError, UnsafeSymbol
from bmac_trio.store import atomic as _atomic, candles as _storage
from bmac_trio.store.candles import (
    CandleStore,
    ExginfoStore,
    cleanup_temp_files,
    write_bytes_atomic,
    write_frame_atomic,
)
from bmac_trio.store.layout import CANDLE_SCHEMA, MANIFEST_DIR

IV = parse_interval("5m")
HK = ZoneInfo("Asia/Hong_Kong")
T0 = IV.floor(1_721_216_220_000)  # 2024-07-17 11:35 UTC


def frame(first: int, n: int, value: float = 1.0, symbol: str = "BTCUSDT") -> pl.DataFrame:
    candles = [
        Candle(
            symbol=symbol,
            open_ms=IV.add(first, i),
            open=value,
            high=value,
            low=value,
            close=value,
            volume=value,
            quote_volume=value,
            trade_num=float(i),
            taker_buy_base_asset_volume=value,
            taker_buy_quote_asset_volume=value,
        )
        for i in range(n)
    ]
    return candles_to_frame(candles, IV)


def store(tmp_path: Path, save_type: str = "parquet", num_candles: int = 10) -> CandleStore:
    return CandleStore(
        tmp_path / "usdt_perp_5m", save_type, HK, num_candles, IV, trade_type="usdt_perp"
    )


@pytest.mark.parametrize("save_type", ["parquet", "feather"])
def test_round_trip(tmp_path: Path, save_type: str) -> None:
    s = store(tmp_path, save_type)
    df = frame(T0, 5, 1.5)
    assert s.read("BTCUSDT") is None
    assert s.write("BTCUSDT", df, None) is False
    back = s.read("BTCUSDT")
    assert back is not None
    assert back.schema == CANDLE_SCHEMA
    assert_frame_equal(back, df)
    ext = ".pqt" if save_type == "parquet" else ".fea"
    assert (s.directory / f"BTCUSDT{ext}").is_file()
    assert s.symbols_on_disk() == frozenset({"BTCUSDT"})
    assert s.last_open_times() == {"BTCUSDT": IV.add(T0, 4)}


def test_pandas_reads_the_files_indexed_like_bmac(tmp_path: Path) -> None:
    """Issue 13: plain pandas reads give BMAC's ``candle_end_time`` index (pandas metadata in
    the file); polars and pyarrow still see the column."""
    import pandas as pd
    import pyarrow.parquet as pq

    for save_type in ("parquet", "feather"):
        s = store(tmp_path, save_type)
        s.write("BTCUSDT", frame(T0, 3, 2.0), None)
        path = s.path("BTCUSDT")
        pdf = pd.read_parquet(path) if save_type == "parquet" else pd.read_feather(path)
        assert pdf.index.name == "candle_end_time"
        assert str(pdf.index.tz) == "UTC"
        assert [t.value // 1_000_000 for t in pdf.index] == [
            IV.end(IV.add(T0, i)) for i in range(3)
        ]
        assert list(pdf.columns) == [c for c in CANDLE_SCHEMA.names() if c != "candle_end_time"]
        assert str(pdf["candle_begin_time"].dt.tz) == "UTC"
        assert pdf["close"].tolist() == [2.0, 2.0, 2.0]
        back = s.read("BTCUSDT")
        assert back is not None
        assert back.schema == CANDLE_SCHEMA
        if save_type == "parquet":
            assert pq.read_table(path).column_names == list(CANDLE_SCHEMA.names())


def test_merge_sorts_dedupes_keeps_newest_and_trims(tmp_path: Path) -> None:
    s = store(tmp_path, num_candles=4)
    old = frame(T0, 3, 1.0)
    assert_frame_equal(s.merge(None, old), old)
    # appended in order: fast path
    merged = s.merge(old, frame(IV.add(T0, 3), 2, 2.0))
    assert merged["candle_begin_time"].dt.epoch("ms").to_list() == [
        IV.add(T0, i) for i in range(1, 5)
    ]
    # overlapping and out of order: the new copy wins
    new = pl.concat([frame(IV.add(T0, 2), 1, 9.0), frame(T0, 1, 8.0)])
    merged = s.merge(old, new)
    assert merged["close"].to_list() == [8.0, 1.0, 9.0]
    assert merged["candle_begin_time"].is_sorted()
    assert s.merge(old, frame(T0, 0)).height == 3


@pytest.mark.parametrize("save_type", ["parquet", "feather"])
def test_failed_write_leaves_old_file_and_no_temp(
    tmp_path: Path, save_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store(tmp_path, save_type)
    old = frame(T0, 3, 1.0)
    s.write("BTCUSDT", old, None)

    def no_space(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_storage.os, "replace", no_space)
    with pytest.raises(StorageError) as info:
        s.write("BTCUSDT", frame(T0, 4, 2.0), IV.end(IV.add(T0, 3)))
    assert "BTCUSDT" in str(info.value)
    assert "No space left" in str(info.value)
    monkeypatch.undo()
    assert_frame_equal(s.read("BTCUSDT"), old)
    assert [p.name for p in s.directory.iterdir() if p.name.endswith(".tmp")] == []
    assert s.ready_run_times("BTCUSDT") == []
    # recovery once the disk is back
    assert s.write("BTCUSDT", frame(T0, 4, 2.0), IV.end(IV.add(T0, 3))) is True


def test_read_only_directory_reports_storage_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    s = store(tmp_path)
    s.write("BTCUSDT", frame(T0, 2), None)
    s.directory.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="cannot write"):
            s.write("BTCUSDT", frame(T0, 3), None)
    finally:
        s.directory.chmod(0o700)
    assert s.read("BTCUSDT").height == 2


def test_write_bytes_atomic_and_cleanup(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_bytes_atomic(target, b"{}")
    assert target.read_bytes() == b"{}"
    (tmp_path / ".BTCUSDT.pqt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "keep.tmp").write_bytes(b"not ours")
    assert cleanup_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tmp", "x.json"]
    with pytest.raises(ValueError, match="save_type"):
        write_frame_atomic(frame(T0, 1), tmp_path / "a", "csv")  # type: ignore[arg-type]


def test_unsafe_symbol_is_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(UnsafeSymbol):
        s.write("../../etc/passwd", frame(T0, 1), None)
    with pytest.raises(UnsafeSymbol):
        s.read("../x")
    assert list(tmp_path.rglob("passwd*")) == []


@pytest.mark.parametrize("save_type", ["parquet", "feather"])
def test_corrupt_and_wrong_schema_files_are_moved_aside(tmp_path: Path, save_type: str) -> None:
    s = store(tmp_path, save_type)
    path = s.path("BTCUSDT")
    s.write("BTCUSDT", frame(T0, 1), IV.end(T0))
    assert s.ready_run_times("BTCUSDT") == [IV.end(T0)]
    path.write_bytes(b"")
    assert s.read("BTCUSDT") is None
    assert (s.directory / f"{path.name}.corrupt-1").exists()
    path.write_bytes(b"PAR1 torn garbage")
    assert s.read("BTCUSDT") is None
    # its ready file no longer tells the truth, so it goes too
    assert list(s.directory.glob("BTCUSDT_*.ready")) == []
    assert not path.exists()
    assert (s.directory / f"{path.name}.corrupt-2").read_bytes() == b"PAR1 torn garbage"
    wrong = pl.DataFrame({"candle_begin_time": [1, 2], "close": [1.0, 2.0]})
    write_frame_atomic(wrong, path, save_type)
    assert s.read("BTCUSDT") is None
    assert (s.directory / f"{path.name}.corrupt-3").exists()
    unsorted = pl.concat([frame(IV.add(T0, 1), 1), frame(T0, 1)])
    write_frame_atomic(unsorted, path, save_type)
    assert s.read("BTCUSDT") is None
    assert s.symbols_on_disk() == frozenset()
    # a torn file found at restart is moved aside too, the others are reported
    s.write("ETHUSDT", frame(T0, 2), None)
    path.write_bytes(b"\x00" * 100)
    assert s.last_open_times() == {"ETHUSDT": IV.add(T0, 1)}
    assert not path.exists()


def test_ready_files_follow_bmac_rules(tmp_path: Path) -> None:
    stamps = iter([1_721_216_400_123, 1_721_216_700_456, 5, 6])
    s = CandleStore(tmp_path, "parquet", HK, 10, IV, stamp_ms=lambda: next(stamps))
    run1 = IV.end(IV.add(T0, 2))  # period end of the third candle
    assert s.write("BTCUSDT", frame(T0, 3), run1) is True
    ready1 = tmp_path / "BTCUSDT_20240717_195000.ready"
    assert run1 == 1_721_217_000_000  # 11:50 UTC, 19:50 in Hong Kong
    assert ready1.read_text() == "1721216400.123000"
    assert float(ready1.read_text()) > 0
    # a write that does not hold run_time's candle creates nothing and keeps the old one
    assert s.write("BTCUSDT", frame(T0, 3), IV.end(IV.add(T0, 3))) is False
    assert ready1.exists()
    # a gap refill (no run_time) keeps it too
    assert s.write("BTCUSDT", frame(T0, 3), None) is False
    assert ready1.exists()
    # the next period replaces it
    run2 = IV.end(IV.add(T0, 3))
    assert s.write("BTCUSDT", frame(T0, 4), run2) is True
    assert not ready1.exists()
    assert sorted(p.name for p in tmp_path.glob("*.ready")) == ["BTCUSDT_20240717_195500.ready"]
    assert s.ready_run_times("BTCUSDT") == [run2]
    # an older run_time never removes (nor joins) a newer ready file
    assert s.write("BTCUSDT", frame(T0, 4), run1) is True
    assert s.ready_run_times("BTCUSDT") == [run2]
    assert len(list(tmp_path.glob("*.ready"))) == 1


def test_the_next_ready_file_is_the_previous_one_renamed_with_a_new_stamp(tmp_path: Path) -> None:
    """No file is created per period (a journal transaction each): the previous ready file is
    renamed and restamped. BMAC's longer stamps are cut to ours; a vanished predecessor or a
    first period falls back to a fresh atomic file."""
    stamps = iter([1_721_216_400_123, 1_721_216_700_456, 1_721_217_000_789, 1_721_217_300_000])
    s = CandleStore(tmp_path, "parquet", HK, 10, IV, stamp_ms=lambda: next(stamps))
    runs = [IV.end(IV.add(T0, i)) for i in range(4)]
    s.write("BTCUSDT", frame(T0, 1), runs[0])
    first = tmp_path / "BTCUSDT_20240717_194000.ready"
    inode = first.stat().st_ino
    first.write_text("1721216400.1230001234")  # as BMAC wrote it: str(float), longer than ours
    s.write("BTCUSDT", frame(T0, 2), runs[1])
    second = tmp_path / "BTCUSDT_20240717_194500.ready"
    assert sorted(p.name for p in tmp_path.glob("*.ready")) == [second.name]
    assert second.stat().st_ino == inode  # renamed, not created
    assert second.read_text() == "1721216700.456000"
    second.unlink()  # someone removed it: the next period is created afresh
    s.write("BTCUSDT", frame(T0, 3), runs[2])
    third = tmp_path / "BTCUSDT_20240717_195000.ready"
    assert third.read_text() == "1721217000.789000"
    assert s.ready_run_times("BTCUSDT") == [runs[2]]
    # the same period written again (a refill that still holds it) is restamped in place
    inode = third.stat().st_ino
    s.write("BTCUSDT", frame(T0, 3), runs[2])
    assert third.read_text() == "1721217300.000000"
    assert third.stat().st_ino == inode
    assert [p.name for p in tmp_path.glob(".*")] == []  # no temp file left


def test_ready_files_of_prefix_symbols_are_separate(tmp_path: Path) -> None:
    s = CandleStore(tmp_path, "parquet", ZoneInfo("UTC"), 10, IV)
    run = IV.end(T0)
    s.write("BTCUSD_PERP", frame(T0, 1), run)
    s.write("BTCUSD", frame(T0, 2), IV.end(IV.add(T0, 1)))
    assert s.ready_run_times("BTCUSD_PERP") == [run]
    # a new store instance (restart) finds existing ready files and replaces stale ones
    s2 = CandleStore(tmp_path, "parquet", ZoneInfo("UTC"), 10, IV)
    assert s2.ready_run_times("BTCUSD_PERP") == [run]
    s2.write("BTCUSD_PERP", frame(T0, 2), IV.end(IV.add(T0, 1)))
    assert sorted(p.name for p in tmp_path.glob("*.ready")) == [
        "BTCUSD_20240717_114500.ready",
        "BTCUSD_PERP_20240717_114500.ready",
    ]


def test_write_many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = store(tmp_path)
    frames = {f"S{i}USDT": frame(T0, 3, float(i)) for i in range(20)}
    run = IV.end(IV.add(T0, 2))
    results = s.write_many(frames, run, max_workers=4)
    assert results == dict.fromkeys(frames, True)
    for symbol, df in frames.items():
        assert_frame_equal(s.read(symbol), df)
        assert s.ready_run_times(symbol) == [run]


def test_manifest_schema_and_pruning(tmp_path: Path) -> None:
    s = CandleStore(tmp_path, "parquet", HK, 2, IV, trade_type="usdt_perp", stamp_ms=lambda: 42)
    run = 1_721_216_220_000
    path = s.write_manifest(run, complete={"B", "A"}, missing=["C"], final=False, lag_ms=12.5)
    assert path == tmp_path / MANIFEST_DIR / "20240717_193700.json"
    assert orjson.loads(path.read_bytes()) == {
        "format_version": 1,
        "interval": "5m",
        "trade_type": "usdt_perp",
        "run_time": "20240717_193700",
        "run_time_ms": run,
        "run_time_iso": "2024-07-17T11:37:00+00:00",
        "complete": ["A", "B"],
        "missing": ["C"],
        "final": False,
        "written_at_ms": 42,
        "lag_ms": 12.5,
    }
    s.write_manifest(run, complete=["A", "B", "C"], missing=[], final=True)
    assert orjson.loads(path.read_bytes())["final"] is True
    for i in range(1, 6):
        s.write_manifest(run + i * IV.ms, complete=[], missing=[], final=True)
    names = sorted(p.name for p in (tmp_path / MANIFEST_DIR).iterdir())
    # 2 * num_candles kept
    assert names == [f"20240717_{t}00.json" for t in ("1947", "1952", "1957", "2002")]


def test_move_to_delisted_keeps_history(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write("OLDUSDT", frame(T0, 2, 1.0), IV.end(IV.add(T0, 1)))
    first = s.move_to_delisted("OLDUSDT")
    assert first == s.directory / "_delisted" / "OLDUSDT.pqt"
    assert list(s.directory.glob("OLDUSDT*")) == []
    s.write("OLDUSDT", frame(T0, 3, 2.0), None)
    second = s.move_to_delisted("OLDUSDT")
    assert second == s.directory / "_delisted" / "OLDUSDT.1.pqt"
    assert pl.read_parquet(first)["close"].to_list() == [1.0, 1.0]
    assert pl.read_parquet(second).height == 3
    assert s.move_to_delisted("OLDUSDT") is None
    assert s.symbols_on_disk() == frozenset()


def test_meta_and_temp_cleanup(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write_meta({"format_version": 1, "save_type": "parquet"})
    assert orjson.loads((s.directory / "bmac_meta.json").read_bytes())["save_type"] == "parquet"
    (s.directory / ".X.pqt.1.tmp").write_bytes(b"")
    (s.directory / MANIFEST_DIR).mkdir()
    (s.directory / MANIFEST_DIR / ".a.json.2.tmp").write_bytes(b"")
    assert s.cleanup_temp_files() == 2


def test_exginfo_and_funding(tmp_path: Path) -> None:
    ex = ExginfoStore(tmp_path / "exginfo_5m", HK)
    info = pl.DataFrame({"symbol": ["BTCUSDT"], "status": ["TRADING"]})
    run1 = 1_721_216_220_000
    ex.write_exginfo(info, run1)
    assert_frame_equal(ex.read_exginfo(), info)
    assert (ex.directory / "exginfo_20240717_193700.ready").exists()
    ex.write_exginfo(info, run1 + IV.ms)
    assert sorted(p.name for p in ex.directory.glob("*.ready")) == ["exginfo_20240717_194200.ready"]
    assert ex.read_funding() is None
    ex.append_funding(
        [
            FundingRate(symbol="BTCUSDT", funding_rate=0.0001),
            FundingRate(symbol="X", funding_rate=None),
        ],
        run1,
        keep_after_ms=0,
    )
    rows = pl.DataFrame({"symbol": ["BTCUSDT"], "fundingRate": [0.0002]})
    out = ex.append_funding(rows, run1 + IV.ms, keep_after_ms=run1 + 1)
    back = ex.read_funding()
    assert_frame_equal(back, out)
    assert back.columns == ["symbol", "fundingRate", "time"]
    assert back.schema["time"] == pl.Datetime("ms", "Asia/Hong_Kong")
    assert back["fundingRate"].to_list() == [0.0002]  # the older snapshot fell out
    out = ex.append_funding(rows, run1 + 2 * IV.ms, keep_after_ms=0)
    assert out.height == 2
    assert (ex.directory / "funding_20240717_194700.ready").exists()
    assert len(list(ex.directory.glob("funding_*.ready"))) == 1


READER = textwrap.dedent(
    """
    import sys, polars as pl
    from pathlib import Path
    path, stop, kind = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    reads = torn = 0
    announced = False
    while not stop.exists():
        try:
            with open(path, "rb") as handle:  # one open: see the _storage docstring
                df = pl.read_parquet(handle) if kind == "parquet" else pl.read_ipc(handle)
            values = set(df["close"].to_list())
            if len(values) != 1 or df.height != int(values.pop()):
                torn += 1
        except FileNotFoundError:
            continue
        except Exception:
            torn += 1
        reads += 1
        if not announced:
            print("reading", flush=True)
            announced = True
    print(reads, torn, flush=True)
    """
)


@pytest.mark.parametrize("save_type", ["parquet", "feather"])
def test_concurrent_reader_never_sees_a_torn_file(tmp_path: Path, save_type: str) -> None:
    s = store(tmp_path, save_type, num_candles=2000)
    s.write("BTCUSDT", frame(T0, 1, 1.0), None)
    stop = tmp_path / "stop"
    with subprocess.Popen(
        [sys.executable, "-c", READER, str(s.path("BTCUSDT")), str(stop), save_type],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "reading"
        for n in range(2, 300):
            # n rows whose close is n: a torn or mixed file breaks that invariant
            s.write("BTCUSDT", frame(T0, n, float(n)), None)
        stop.touch()
        reads, torn = map(int, proc.stdout.readline().split())
    assert reads > 0
    assert torn == 0


@pytest.mark.parametrize("save_type", ["parquet", "feather"])
def test_a_disk_full_while_writing_is_a_storage_error(
    tmp_path: Path, save_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    s = store(tmp_path, save_type)
    old = frame(T0, 3, 1.0)
    s.write("BTCUSDT", old, None)
    original = _atomic._write_all  # how encoded candle files reach the disk

    def to_full_disk(fd: int, data: object) -> None:
        full = os.open("/dev/full", os.O_WRONLY)
        try:
            original(full, data)  # type: ignore[arg-type]  # the kernel answers ENOSPC
        finally:
            os.close(full)

    monkeypatch.setattr(_atomic, "_write_all", to_full_disk)
    with pytest.raises(StorageError, match=r"BTCUSDT.*No space left"):
        s.write("BTCUSDT", frame(T0, 1000, 2.0), None)
    monkeypatch.undo()
    assert_frame_equal(s.read("BTCUSDT"), old)
    assert [p.name for p in s.directory.iterdir() if p.name.endswith(".tmp")] == []


def test_read_error_of_the_disk_is_not_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store(tmp_path)
    s.write("BTCUSDT", frame(T0, 2), None)

    def denied(path: Path) -> bytes:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(_storage, "_read_bytes", denied)
    with pytest.raises(StorageError, match="Permission denied"):
        s.read("BTCUSDT")
    monkeypatch.undo()
    assert s.read("BTCUSDT").height == 2
    assert list(s.directory.glob("*.corrupt-*")) == []


@pytest.mark.parametrize("save_type", ["parquet", "feather"])
def test_every_truncation_of_a_real_file_is_moved_aside(tmp_path: Path, save_type: str) -> None:
    s = store(tmp_path, save_type, num_candles=500)
    s.write("BTCUSDT", frame(T0, 500, 3.0), None)
    path = s.path("BTCUSDT")
    data = path.read_bytes()
    cuts = sorted({*range(0, len(data), max(1, len(data) // 25)), len(data) - 1})
    for n, cut in enumerate(cuts, start=1):
        path.write_bytes(data[:cut])
        assert s.read("BTCUSDT") is None, cut
        assert (s.directory / f"{path.name}.corrupt-{n}").exists()
    path.write_bytes(data)
    assert s.read("BTCUSDT").height == 500


def test_directory_is_synced_once_per_period_before_its_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data files are fsynced one by one; their directory once, before the manifest that says
    the period is complete (not once per file: 500 dir syncs a period cost the lag)."""
    synced: list[str] = []
    monkeypatch.setattr(_storage, "fsync_dir", lambda d: synced.append(Path(d).name))
    monkeypatch.setattr(_atomic, "fsync_dir", lambda d: synced.append(Path(d).name))
    s = store(tmp_path)
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        s.write(symbol, frame(T0, 3, symbol=symbol), IV.add(T0, 3))
    assert synced == []
    s.write_manifest(
        IV.add(T0, 3), complete=["BTCUSDT", "ETHUSDT", "SOLUSDT"], missing=[], final=True
    )
    assert synced[0] == s.directory.name  # the data renames first, then the manifest's own
    s.sync_directory()
    assert synced[-1] == s.directory.name
