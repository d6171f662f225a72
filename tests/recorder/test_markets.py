"""The real recorder against the simulator, per market kind and save type.

Every recorded candle is compared with the simulator's ground truth.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import trio

from bmac_trio.sim import SimConfig
from bmac_trio.store.layout import MANIFEST_DIR, META_FILE, ready_file, run_time_label

from .conftest import assert_matches_truth, recording


@pytest.mark.parametrize(
    ("market", "trade_type", "save_type"),
    [
        ("um", "usdt_perp", "parquet"),
        ("um", "usdt_perp", "feather"),
        ("spot", "usdt_spot", "feather"),
        ("cm", "coin_perp", "parquet"),
        ("um", "usdt_deli", "feather"),
        ("cm", "coin_deli", "parquet"),
    ],
)
async def test_records_every_candle_exactly(
    tmp_path: Path, market: str, trade_type: str, save_type: str
) -> None:
    with trio.fail_after(30):
        async with recording(
            tmp_path,
            SimConfig(market=market, symbols=14, seed=3),
            interval="1m",
            trade_type=trade_type,
            save_type=save_type,
            num_candles=120,
        ) as env:
            await env.history()
            done = await env.periods(3)
            symbols = sorted(env.handle.symbols)
            assert symbols
            compared = assert_matches_truth(env, symbols, through_ms=done[-1])
            assert compared == 120 * len(symbols)
            config = env.config
            # BMAC-compatible ready files name the period end in the configured zone
            for symbol in symbols:
                assert ready_file(config.candle_dir, symbol, done[-1], config.timezone).exists()
            # the manifest of the first live period (written a while ago) lists every symbol
            label = run_time_label(done[0], config.timezone)
            content = orjson.loads(
                (config.candle_dir / MANIFEST_DIR / f"{label}.json").read_bytes()
            )
            assert content["missing"] == []
            assert content["complete"] == symbols
            assert content["final"] is True
            meta = orjson.loads((config.candle_dir / META_FILE).read_bytes())
            assert (meta["save_type"], meta["trade_type"]) == (save_type, trade_type)
            assert (config.exginfo_dir / "exginfo.pqt").exists()


async def test_funding_rates_are_appended_every_period(tmp_path: Path) -> None:
    import polars as pl

    with trio.fail_after(30):
        async with recording(
            tmp_path,
            SimConfig(market="um", symbols=8, seed=4),
            interval="1m",
            trade_type="usdt_perp",
            num_candles=60,
            funding_rate=True,
        ) as env:
            await env.history()
            done = await env.periods(3)
            config = env.config
    funding = pl.read_parquet(config.exginfo_dir / "funding.pqt")
    assert funding.columns == ["symbol", "fundingRate", "time"]
    assert "BTCUSDT" in funding["symbol"].to_list()
    assert funding["time"].n_unique() >= 2
    assert (config.exginfo_dir / "exginfo.pqt").exists()
    assert done
