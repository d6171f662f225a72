"""TradFi perpetuals (UM contractType TRADIFI_PERPETUAL): kept out of usdt_perp, recorded by
usdt_tradifi_perp (``tests/cli/test_trade_types.py``: named in ``--help`` and ``check``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bmac_trio.sim import SimConfig

from .conftest import assert_matches_truth, recording

TRADIFI = {"SPYUSDT", "TSLAUSDT", "XAUUSDT"}


@pytest.mark.parametrize(
    ("trade_type", "wanted"), [("usdt_perp", False), ("usdt_tradifi_perp", True)]
)
async def test_tradifi_perpetuals_only_in_their_own_trade_type(
    tmp_path: Path, trade_type: str, wanted: bool
) -> None:
    with trio.fail_after(30):
        async with recording(
            tmp_path, SimConfig(market="um", symbols=14, seed=3), interval="1m",
            trade_type=trade_type, num_candles=60,
        ) as env:  # fmt: skip
            assert set(env.sim.trading_symbols()) >= TRADIFI
            await env.history()
            symbols = set(env.handle.symbols)
            if wanted:
                assert symbols == TRADIFI
                done = await env.periods(1)
                assert assert_matches_truth(env, sorted(symbols), through_ms=done[-1]) == 180
            else:
                assert symbols
                assert not symbols & TRADIFI
                assert "BTCUSDT" in symbols
