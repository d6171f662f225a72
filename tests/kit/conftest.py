"""Fixtures for the kit's tests: synthetic data directories written to the on-disk contract.

``DataDir`` writes through the recorder's own storage (bmac_trio.store.candles: atomic candle files,
ready files, period manifests, exginfo, meta), so the kit is tested against exactly what the
recorder writes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.store.candles import CandleStore, ExginfoStore
from bmac_trio.store.layout import (
    CANDLE_SCHEMA,
    DEFAULT_TIMEZONE,
    FORMAT_VERSION,
    SaveType,
    candle_dir,
    exginfo_dir,
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
    """A recorder-shaped data directory under ``base``, written by the recorder's storage."""

    base: Path
    trade_type: str = "usdt_perp"
    interval: str = "5m"
    save_type: SaveType = "parquet"
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

    @property
    def store(self) -> CandleStore:
        return CandleStore(
            self.candles,
            self.save_type,
            self.tz,
            1500,
            parse_interval(self.interval),
            trade_type=self.trade_type,
            durable=False,
        )

    @property
    def exginfo_store(self) -> ExginfoStore:
        return ExginfoStore(self.exginfo, self.tz, durable=False)

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
        self.store.write_meta(meta)
        self.exginfo_store.write_meta(meta)

    def write_symbol(self, symbol: str, frame: pl.DataFrame, *, ready: bool = True) -> None:
        """Write the candle file atomically, then renew its ready file (unless ``ready=False``)."""
        end_ms = int(frame.get_column("candle_end_time").dt.epoch("ms").max())  # type: ignore[arg-type]
        self.store.write(symbol, frame, end_ms if ready else None)

    def write_manifest(
        self,
        run_time_ms: int,
        complete: Iterable[str],
        missing: Iterable[str] = (),
        *,
        final: bool = True,
    ) -> None:
        self.store.write_manifest(run_time_ms, complete=complete, missing=missing, final=final)

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
        self.exginfo_store.write_exginfo(frame, run_time_ms)


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
