"""Fixtures for the kit's tests: synthetic data directories written to the on-disk contract.

``DataDir`` writes exactly what bmac_trio._layout specifies (meta, candle files, ready files,
period manifests, exginfo); it uses the recorder's storage functions when they exist, so both
sides are provably compatible.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import polars as pl
import pytest

from bmac_trio._layout import (
    CANDLE_SCHEMA,
    DEFAULT_TIMEZONE,
    FORMAT_VERSION,
    META_FILE,
    candle_dir,
    data_file,
    exginfo_dir,
    manifest_path,
    ready_file,
    run_time_label,
)

KIT_TESTS = Path(__file__).parent
#: 2024-07-17 11:40 UTC, a 5m boundary (19:40 in Hong Kong).
T0_MS = 1_721_216_400_000
FIVE_MIN_MS = 300_000


def synthetic_candles(
    n: int, *, end_ms: int, interval_ms: int = FIVE_MIN_MS, seed: int = 0
) -> pl.DataFrame:
    """``n`` closed candles, the last ending at ``end_ms``, with plausible random values."""
    rng = np.random.default_rng(seed)
    begin = end_ms - interval_ms * np.arange(n, 0, -1, dtype=np.int64)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.004, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread * rng.random(n)
    volume = rng.gamma(2.0, 50.0, n)
    quote = volume * close
    taker = rng.random(n)
    frame = pl.DataFrame(
        {
            "candle_begin_time": begin,
            "candle_end_time": begin + interval_ms,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": quote,
            "trade_num": np.floor(rng.gamma(2.0, 100.0, n)),
            "taker_buy_base_asset_volume": volume * taker,
            "taker_buy_quote_asset_volume": quote * taker,
        }
    )
    times = pl.col("candle_begin_time", "candle_end_time").cast(pl.Datetime("ms", "UTC"))
    return frame.with_columns(times).select(CANDLE_SCHEMA.names())


@dataclass
class DataDir:
    """A recorder-shaped data directory under ``base``."""

    base: Path
    trade_type: str = "usdt_perp"
    interval: str = "5m"
    save_type: str = "parquet"
    timezone: str = DEFAULT_TIMEZONE

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def candles(self) -> Path:
        return candle_dir(self.base, self.trade_type, self.interval)

    @property
    def exginfo(self) -> Path:
        return exginfo_dir(self.base, self.interval)

    def write_meta(self) -> None:
        meta = {
            "format_version": FORMAT_VERSION,
            "interval": self.interval,
            "trade_type": self.trade_type,
            "market": "um",
            "save_type": self.save_type,
            "timezone": self.timezone,
            "num_candles": 1500,
            "candle_dir": self.candles.name,
            "exginfo_dir": self.exginfo.name,
        }
        for directory in (self.candles, self.exginfo):
            directory.mkdir(parents=True, exist_ok=True)
            (directory / META_FILE).write_bytes(orjson.dumps(meta))

    def write_symbol(self, symbol: str, frame: pl.DataFrame, *, ready: bool = True) -> None:
        """Write the candle file, then (BMAC order) replace the ready file."""
        path = data_file(self.candles, symbol, self.save_type)  # type: ignore[arg-type]
        if self.save_type == "parquet":
            frame.write_parquet(path)
        else:
            frame.write_ipc(path)
        for old in self.candles.glob(f"{symbol}_*.ready"):
            old.unlink()
        if ready:
            end_ms = int(frame.get_column("candle_end_time").dt.epoch("ms").max())  # type: ignore[arg-type]
            ready_file(self.candles, symbol, end_ms, self.tz).write_text("0")

    def write_manifest(
        self,
        run_time_ms: int,
        complete: Iterable[str],
        missing: Iterable[str] = (),
        *,
        final: bool = True,
    ) -> None:
        path = manifest_path(self.candles, run_time_ms, self.tz)
        path.parent.mkdir(exist_ok=True)
        body = {
            "format_version": FORMAT_VERSION,
            "interval": self.interval,
            "trade_type": self.trade_type,
            "run_time": run_time_label(run_time_ms, self.tz),
            "run_time_ms": run_time_ms,
            "complete": sorted(complete),
            "missing": sorted(missing),
            "final": final,
            "written_at_ms": run_time_ms,
            "lag_ms": 0,
        }
        path.write_bytes(orjson.dumps(body))

    def write_exginfo(self, symbols: Iterable[str], run_time_ms: int) -> None:
        symbols = sorted(symbols)
        frame = pl.DataFrame(
            {
                "symbol": symbols,
                "status": ["TRADING"] * len(symbols),
                "base_asset": [s.removesuffix("USDT") for s in symbols],
                "quote_asset": ["USDT"] * len(symbols),
                "price_tick": ["0.01"] * len(symbols),
            }
        )
        frame.write_parquet(self.exginfo / "exginfo.pqt")
        for old in self.exginfo.glob("exginfo_*.ready"):
            old.unlink()
        ready_file(self.exginfo, "exginfo", run_time_ms, self.tz).write_text("0")


@pytest.fixture
def datadir(tmp_path: Path) -> DataDir:
    d = DataDir(tmp_path / "base")
    d.write_meta()
    return d


@pytest.fixture
def make_candles() -> object:
    """:func:`synthetic_candles`, for tests (conftest is not importable under importlib)."""
    return synthetic_candles


@pytest.fixture
def bmac_style_package(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The package name of the BMAC-style pandas factor modules in tests/kit."""
    monkeypatch.syspath_prepend(str(KIT_TESTS))
    yield "bmac_style_factors"
    for name in [m for m in sys.modules if m.startswith("bmac_style_factors")]:
        del sys.modules[name]
