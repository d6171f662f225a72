"""Every trade type, usdt_tradifi_perp included, is named in ``--help`` and by ``check``."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bmac_trio.binance.markets import TRADE_TYPE_ALIASES, TRADE_TYPES

from .conftest import run_cli


@pytest.mark.parametrize("command", ["run", "check"])
def test_help_names_every_trade_type(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    missing = [n for n in [*TRADE_TYPES, *TRADE_TYPE_ALIASES] if n not in text]
    assert missing == []


def test_check_says_what_usdt_tradifi_perp_records(tmp_path: Path) -> None:
    base = tmp_path / "data"
    base.mkdir()
    (base / "config.json").write_bytes(
        orjson.dumps({"interval": "1h", "trade_type": "usdt_tradifi_perp"})
    )
    result = run_cli("check", str(base))
    assert result.returncode == 0, result.stderr
    assert "usdt_tradifi_perp 1h" in result.stdout
    assert "records um TRADIFI_PERPETUAL contracts quoted in USDT" in result.stdout
    (base / "config.json").write_bytes(orjson.dumps({"interval": "1h", "trade_type": "tradifi"}))
    result = run_cli("check", str(base))
    assert result.returncode == 2
    assert "usdt_tradifi_perp" in result.stderr
