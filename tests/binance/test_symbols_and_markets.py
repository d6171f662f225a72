import pytest

from bmac_trio.binance.markets import (
    CM,
    SPOT,
    TRADE_TYPES,
    UM,
    futures_kline_weight,
    resolve_trade_type,
)
from bmac_trio.binance.symbols import check_symbol, is_safe_symbol
from bmac_trio.errors import UnsafeSymbol


@pytest.mark.parametrize("good", ["BTCUSDT", "BTCUSD_210924", "1000SATSUSDT", "币安人生USDT"])
def test_real_symbol_names_are_safe(good: str) -> None:
    assert check_symbol(good) == good


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "../etc", "a/b", "a\\b", "BTC\x00", ".hidden", "-x", "A" * 65, None]
)
def test_names_that_escape_the_directory_are_refused(bad: object) -> None:
    assert not is_safe_symbol(bad)
    with pytest.raises(UnsafeSymbol, match="refusing symbol name"):
        check_symbol(bad)


@pytest.mark.parametrize(
    ("limit", "weight"), [(1, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10)]
)
def test_futures_kline_weight_by_limit(limit: int, weight: int) -> None:
    assert futures_kline_weight(limit) == weight
    assert UM.kline_weight(limit) == CM.kline_weight(limit) == weight
    assert SPOT.kline_weight(limit) == 2


def test_all_eleven_trade_types_resolve() -> None:
    names = [*TRADE_TYPES, "usdt_swap", "coin_swap"]
    assert len(names) == 12  # BMAC's eleven and usdt_tradifi_perp
    tradifi = resolve_trade_type("usdt_tradifi_perp")
    assert (tradifi.market, tradifi.contract_types) == (UM, frozenset({"TRADIFI_PERPETUAL"}))
    assert TRADE_TYPES["usdt_perp"].contract_types == frozenset({"PERPETUAL"})
    assert resolve_trade_type("usdt_swap") is TRADE_TYPES["usdt_perp"]
    assert resolve_trade_type("coin_swap").market is CM
    assert resolve_trade_type("usdt_deli").is_delivery
    with pytest.raises(KeyError):
        resolve_trade_type("eth_perp")
