"""Changing ``save_type`` keeps the history (issue 11, item 2, the recorder's side).

parquet → feather downloaded all history again and left the ``.pqt`` files beside the new
``.fea`` ones, where a reader still configured for parquet kept reading them, stale.
"""

from __future__ import annotations

from pathlib import Path

import trio

from bmac_trio.sim import SimConfig
from bmac_trio.store.layout import OTHER_SAVE_TYPE_DIR

from .conftest import assert_matches_truth, run_against, simulator

UM = {"interval": "1m", "trade_type": "usdt_perp", "num_candles": 500}


async def test_parquet_history_is_kept_when_switching_to_feather(tmp_path: Path) -> None:
    base = tmp_path / "data"
    with trio.fail_after(40):
        async with simulator(SimConfig(market="um", symbols=8, seed=41), speed=300) as (
            sim,
            clock,
        ):
            async with run_against(sim, clock, base, **UM, save_type="parquet") as env:
                await env.history()
                await env.periods(1)
                first_weight = env.handle.stats.history_weight
                symbols = sorted(env.handle.symbols)
            candle_dir = env.config.candle_dir
            assert sorted(p.stem for p in candle_dir.glob("*.pqt")) == symbols
            # down for three minutes (not only for the time a stop takes): a tail to fetch
            await clock.sleep_until_ms(clock.now_ms() + 3 * 60_000)

            async with run_against(sim, clock, base, **UM, save_type="feather") as env:
                await env.history()
                weight = env.handle.stats.history_weight
                # only the tail since the stop: one klines call of < 100 candles per symbol,
                # not the 500-candle history again
                assert weight == len(symbols), (weight, first_weight)
                done = await env.periods(1)
                assert_matches_truth(env, through_ms=done[-1])
                assert env.handle.stats.history_weight == weight

    assert sorted(p.stem for p in candle_dir.glob("*.fea")) == symbols
    assert list(candle_dir.glob("*.pqt")) == []  # nothing stale beside the new files
    kept = sorted(p.name for p in (candle_dir / OTHER_SAVE_TYPE_DIR).iterdir())
    assert kept == [f"{s}.pqt" for s in symbols]  # moved aside, never deleted
