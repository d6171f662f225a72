"""The soak's reader survives what a reader by path meets: a polars panic is a torn read."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest
from polars.exceptions import PanicException

from . import _reader


def _frame_file(directory: Path) -> None:
    directory.mkdir()
    pl.DataFrame({"a": [1]}).write_parquet(directory / "BTCUSDT.pqt")


def test_a_panic_reading_by_path_is_counted_torn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, stop = tmp_path / "data", tmp_path / "stop"
    _frame_file(directory)
    calls = {"by_path": 0, "handle": 0}

    def read(path: Path, save_type: str, by_path: bool) -> pl.DataFrame:
        calls["by_path" if by_path else "handle"] += 1
        if calls["by_path"] + calls["handle"] >= 6:
            stop.touch()
        if by_path:
            # what polars raised in the soak: pyo3_runtime.PanicException, a BaseException
            raise PanicException("called `Result::unwrap()` on an `Err` value")
        return pl.DataFrame({"a": [1]})

    monkeypatch.setattr(_reader, "_read", read)
    assert _reader.main([str(directory), "parquet", "10", str(stop), "UTC", "0"]) == 0
    counts = orjson.loads(capsys.readouterr().out)
    assert counts["torn_by_path"] == calls["by_path"] >= 2
    assert counts["torn"] == 0
    assert any("PanicException" in e for e in counts["examples"])


def test_an_interrupt_is_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory, stop = tmp_path / "data", tmp_path / "stop"
    _frame_file(directory)

    def read(path: Path, save_type: str, by_path: bool) -> pl.DataFrame:
        raise KeyboardInterrupt

    monkeypatch.setattr(_reader, "_read", read)
    with pytest.raises(KeyboardInterrupt):
        _reader.main([str(directory), "parquet", "10", str(stop), "UTC", "0"])
