"""TradFi perpetuals (UM contractType TRADIFI_PERPETUAL): kept out of usdt_perp, recorded by
usdt_tradifi_perp, and named where users look (``--help``, ``check``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bmac_trio._cli_run import check
from bmac_trio._markets import TRADE_TYPE_ALIASES, TRADE_TYPES
from bmac_trio.cli import app
from bmac_trio.sim import SimConfig

from .conftest import assert_matches_truth, recording, write_config

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


def test_help_and_check_name_every_trade_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("run", "check"):
        with pytest.raises(SystemExit):
            app([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for name in [*TRADE_TYPES, *TRADE_TYPE_ALIASES]:
            assert name in text, (command, name)
    base = tmp_path / "data"
    write_config(base, interval="1h", trade_type="usdt_tradifi_perp")
    assert check(base) == 0
    out = capsys.readouterr().out
    assert "usdt_tradifi_perp 1h" in out
    assert "um TRADIFI_PERPETUAL contracts quoted in USDT" in out
    write_config(base, interval="1h", trade_type="tradifi")
    assert check(base) == 2
    assert "usdt_tradifi_perp" in capsys.readouterr().err
