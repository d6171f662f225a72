"""exchangeInfo parsing and selection, against the real captured snapshots."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import orjson
import polars as pl
import pytest

from bmac_trio.binance.exchange_info import (
    SymbolInfo,
    exginfo_frame,
    parse_exchange_info,
    select_symbols,
)
from bmac_trio.binance.markets import CM, SPOT, TRADE_TYPES, UM
from bmac_trio.errors import RemoteProtocolError

UM_FILE = "um_exchange_info_1626992740.json"
CM_FILE = "cm_exchange_info_1626916402.json"
SPOT_FILE = "spot_exchange_info_1633998511.json"


def test_um_btcusdt_exact(binance_fixtures: Path) -> None:
    info = parse_exchange_info((binance_fixtures / UM_FILE).read_bytes(), UM)
    assert info.weight_limit == 2400
    assert info.server_time_ms == 1626858243909
    assert info.rejected == ()
    btc = next(s for s in info.symbols if s.symbol == "BTCUSDT")
    assert btc == SymbolInfo(
        symbol="BTCUSDT",
        status="TRADING",
        base_asset="BTC",
        quote_asset="USDT",
        margin_asset="USDT",
        contract_type="PERPETUAL",
        pair="BTCUSDT",
        delivery_date_ms=4133404800000,
        onboard_date_ms=1569398400000,
        price_tick="0.01",
        lot_size="0.001",
        step_size="0.001",
        min_notional="5",
    )
    pending = next(s for s in info.symbols if s.symbol == "BTCSTUSDT")
    assert pending.status == "PENDING_TRADING"
    assert pending.contract_type is None

    selection = select_symbols(info, TRADE_TYPES["usdt_perp"], None)
    names = [s.symbol for s in selection.symbols]
    assert names == sorted(names)
    assert "BTCUSDT" in names
    assert "BTCSTUSDT" not in names
    assert all(
        s.contract_type == "PERPETUAL" and s.quote_asset == "USDT" for s in selection.symbols
    )
    deli = select_symbols(info, TRADE_TYPES["usdt_deli"], None)
    assert {s.contract_type for s in deli.symbols} == {"CURRENT_QUARTER"}
    assert len(deli.symbols) == 2

    frame = exginfo_frame(selection.symbols)
    row = frame.filter(pl.col("symbol") == "BTCUSDT")
    assert row["price_tick"].item() == Decimal("0.01")
    assert row["lot_size"].item() == Decimal("0.001")
    assert row["min_notional_value"].item() == Decimal("5")
    # exact through a parquet round trip, as pandas sees it too
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    buffer.seek(0)
    back = pl.read_parquet(buffer)
    assert back.equals(frame)
    import pandas as pd

    buffer.seek(0)
    pdf = pd.read_parquet(buffer).set_index("symbol")
    assert pdf.loc["BTCUSDT", "price_tick"] == Decimal("0.01")
    assert str(pdf.loc["ETHUSDT", "price_tick"].normalize()) == "0.01"


def test_cm_uses_contract_status_and_contract_size(binance_fixtures: Path) -> None:
    info = parse_exchange_info((binance_fixtures / CM_FILE).read_bytes(), CM)
    btc = next(s for s in info.symbols if s.symbol == "BTCUSD_PERP")
    assert btc.status == "TRADING"
    assert btc.contract_size == "100"
    assert btc.lot_size == "100"  # BMAC's COIN-M lot_size
    assert btc.step_size == "1"
    assert btc.price_tick == "0.1"
    assert btc.min_notional is None
    perp = select_symbols(info, TRADE_TYPES["coin_perp"], None)
    assert len(perp.symbols) == 18
    assert all(s.symbol.endswith("_PERP") for s in perp.symbols)
    deli = select_symbols(info, TRADE_TYPES["coin_deli"], None)
    assert len(deli.symbols) == 18
    keep = select_symbols(
        info,
        TRADE_TYPES["coin_perp"],
        {"BTCUSD_PERP", "NOPE"},
    )
    assert [s.symbol for s in keep.symbols] == ["BTCUSD_PERP"]
    frame = exginfo_frame(perp.symbols)
    assert frame.filter(pl.col("symbol") == "BTCUSD_PERP")["contract_size"].item() == Decimal(100)


def test_spot_notional_and_stablecoins(binance_fixtures: Path) -> None:
    info = parse_exchange_info((binance_fixtures / SPOT_FILE).read_bytes(), SPOT)
    assert info.weight_limit == 1200
    btc = next(s for s in info.symbols if s.symbol == "BTCUSDT")
    assert (btc.price_tick, btc.lot_size, btc.min_notional) == (
        "0.01000000",
        "0.00001000",
        "10.00000000",
    )
    assert btc.contract_type is None
    usdt = select_symbols(info, TRADE_TYPES["usdt_spot"], None)
    names = {s.symbol for s in usdt.symbols}
    assert "BTCUSDT" in names
    assert "USDCUSDT" not in names  # a stablecoin, left out as BMAC does
    assert "BUSDUSDT" not in names
    assert all(s.status == "TRADING" for s in usdt.symbols)
    breaks = [s for s in info.symbols if s.status == "BREAK" and s.quote_asset == "USDT"]
    assert breaks
    assert not names & {s.symbol for s in breaks}
    btc_quote = select_symbols(info, TRADE_TYPES["btc_spot"], None)
    assert all(s.quote_asset == "BTC" for s in btc_quote.symbols)
    frame = exginfo_frame(usdt.symbols)
    row = frame.filter(pl.col("symbol") == "BTCUSDT")
    assert str(row["price_tick"].item()) == "0.01000000"
    assert row["min_notional_value"].item() == Decimal("10")


def test_unsafe_and_malformed_symbols_are_skipped_with_a_reason() -> None:
    def entry(symbol: object, tick: object = "0.01") -> dict[str, object]:
        return {
            "symbol": symbol,
            "status": "TRADING",
            "baseAsset": "X",
            "quoteAsset": "USDT",
            "contractType": "PERPETUAL",
            "filters": [{"filterType": "PRICE_FILTER", "tickSize": tick}],
        }

    body = orjson.dumps(
        {
            "symbols": [
                entry("GOODUSDT"),
                entry("../../EVILUSDT"),
                entry("NANUSDT", "NaN"),
                entry(42),
                "junk",
            ],
            "rateLimits": "nope",
        }
    )
    info = parse_exchange_info(body, UM)
    assert info.weight_limit == UM.default_weight_limit
    assert info.server_time_ms is None
    assert [r[0] for r in info.rejected] == ["NANUSDT", "?", "?"]
    selection = select_symbols(info, TRADE_TYPES["usdt_perp"], None)
    assert [s.symbol for s in selection.symbols] == ["GOODUSDT"]
    assert ("../../EVILUSDT", "name is unsafe as a file name") in selection.rejected
    assert selection.names == frozenset({"GOODUSDT"})


@pytest.mark.parametrize("body", [b"", b"[]", b'{"symbols": 3}', b"{"])
def test_not_an_exchange_info(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_exchange_info(body, SPOT)


def test_empty_frame_has_the_columns() -> None:
    frame = exginfo_frame([])
    assert frame.height == 0
    assert frame.columns[:9] == [
        "symbol",
        "contract_type",
        "status",
        "base_asset",
        "quote_asset",
        "margin_asset",
        "price_tick",
        "lot_size",
        "min_notional_value",
    ]
