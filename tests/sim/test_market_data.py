"""The candle model: deterministic, chained, lazily computed, forming candles are prefixes."""

from __future__ import annotations

import itertools
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.sim import SimConfig
from bmac_trio.sim._encode import rest_row
from bmac_trio.sim._exchange import Exchange

from .conftest import START_MS

MIN = 60_000


def _ex(market: str = "um", seed: int = 1, symbols: int = 12) -> Exchange:
    return Exchange(SimConfig(market=market, symbols=symbols, seed=seed), START_MS)


def test_same_seed_same_candles_other_seed_others() -> None:
    a, b, c = _ex(seed=5), _ex(seed=5), _ex(seed=6)
    now = START_MS + 10 * MIN
    for symbol in ("BTCUSDT", "SIM003USDT"):
        ta = a.ground_truth(symbol, "5m", now, since_ms=START_MS - 600 * MIN)
        assert ta == b.ground_truth(symbol, "5m", now, since_ms=START_MS - 600 * MIN)
        assert ta != c.ground_truth(symbol, "5m", now, since_ms=START_MS - 600 * MIN)


@pytest.mark.parametrize("interval", ["1m", "15m", "1h", "6h", "1d", "1w", "1M"])
@pytest.mark.parametrize("market", ["spot", "um", "cm"])
def test_candles_chain_and_are_consistent(market: str, interval: str) -> None:
    ex = _ex(market)
    iv = parse_interval(interval)
    symbol = next(iter(ex.specs))
    spec = ex.specs[symbol]
    rows = ex.ground_truth(
        symbol, interval, START_MS + 400 * iv.seconds * 1000 if iv.ms else START_MS
    )
    rows = rows[-300:]
    assert rows
    for prev, row in itertools.pairwise(rows):
        assert row[1] == prev[4]  # open = previous close
        assert row[0] == iv.add(prev[0])
        assert row[6] == iv.close_time(row[0])
    for row in rows:
        o, h, lo, c = (float(x) for x in row[1:5])
        assert lo <= min(o, c) <= max(o, c) <= h
        assert float(row[9]) <= float(row[5])
        assert float(row[10]) <= float(row[7])
        if row[8]:
            assert float(row[5]) > 0
        assert (
            len(row[1].split(".")[-1]) == (8 if market == "spot" else spec.price_dp)
            or spec.price_dp == 0
        )


def test_zero_trade_candles_like_binance() -> None:
    ex = Exchange(SimConfig(market="spot", symbols=6, zero_trade_fraction=0.2), START_MS)
    rows = ex.ground_truth("ETHBTC", "1m", START_MS)[-1000:]
    zeros = [(i, r) for i, r in enumerate(rows) if r[8] == 0]
    assert len(zeros) > 50
    for i, r in zeros:
        assert r[1] == r[2] == r[3] == r[4] == rows[i - 1][4]
        assert r[5] == r[7] == r[9] == r[10] == "0.00000000"
        assert rows[i + 1][8] > 0  # never two in a row
    spec = ex.specs["ETHBTC"]
    iv = parse_interval("1m")
    t = zeros[0][1][0]
    c = ex.model.closed_candle(spec, iv, t)
    assert (c.first_id, c.last_id) == (-1, -1)


@settings(max_examples=60, deadline=None)
@given(
    offset=st.integers(min_value=0, max_value=59_999), k=st.integers(min_value=1, max_value=2000)
)
def test_forming_candle_is_a_prefix_of_the_closed_one(offset: int, k: int) -> None:
    ex = _EX
    spec = ex.specs["SIM002USDT"]
    iv = parse_interval("1m")
    t = START_MS - k * MIN
    final = ex.model.closed_candle(spec, iv, t)
    part = ex.model.candle(spec, iv, t, t + offset)
    assert part.closed is False
    assert part.o == final.o
    assert part.n <= final.n
    assert final.l <= part.l <= part.h <= final.h
    assert part.l <= part.c <= part.h
    assert part.v <= final.v
    assert part.q <= final.q
    if part.n:
        assert part.first_id == final.first_id
        assert part.last_id == final.first_id + part.n - 1
    assert ex.model.candle(spec, iv, t, t + MIN) == final


_EX = _ex()


def test_trade_ids_never_overlap_between_candles() -> None:
    ex = _ex()
    rows = ex.ground_truth("BTCUSDT", "1m", START_MS)[-500:]
    spec = ex.specs["BTCUSDT"]
    iv = parse_interval("1m")
    last = -1
    for r in rows:
        c = ex.model.closed_candle(spec, iv, r[0])
        if c.n:
            assert c.first_id > last
            last = c.last_id


def test_thousand_symbols_are_lazy() -> None:
    """No history is stored: 1000 symbols cost nothing until a candle is asked for."""
    ex = Exchange(SimConfig(market="um", symbols=1000), START_MS)
    # 1000 generated, plus two NEXT_QUARTER and three TradFi contracts (and hidden successors)
    assert len(ex.trading_symbols(START_MS)) == 1005
    assert ex.model.closed_candle.cache_info().currsize == 0
    spec = ex.specs["SIM0901USDT"]
    rows = ex.select(
        spec, parse_interval("1m"), lower=None, upper=None, limit=1500, newest=True, now_ms=START_MS
    )
    assert len(rows) == 1500
    assert rest_row(spec, rows[-1])[6] == START_MS + MIN - 1


def test_generated_names() -> None:
    um = list(_ex("um", symbols=30).specs)
    assert um[:2] == ["BTCUSDT", "ETHUSDT"]
    assert any(s.startswith("BTCUSDT_") for s in um)
    assert "SIM001USDT" in um
    assert any(s.endswith("USDC") for s in um)
    cm = list(_ex("cm", symbols=12).specs)
    assert "BTCUSD_PERP" in cm
    assert any(s.startswith("BTCUSD_2") for s in cm)
    spot = _ex("spot", symbols=12).specs
    assert "USDCUSDT" in spot
    assert {s.quote for s in spot.values()} >= {"USDT", "USDC", "BTC"}


PURE = [
    "bmac_trio.sim._config", "bmac_trio.sim._hashing", "bmac_trio.sim._symbols",
    "bmac_trio.sim._market_data", "bmac_trio.sim._encode", "bmac_trio.sim._exchange",
    "bmac_trio.sim._spec", "bmac_trio.sim._entries", "bmac_trio.sim._snapshot",
    "bmac_trio.sim._ratelimit", "bmac_trio.sim._rest", "bmac_trio.sim._ws_protocol",
    "bmac_trio.sim._zones",
]  # fmt: skip


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io_library(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "bad = sorted(m for m in ('trio', 'httpx', 'trio_websocket', 'hypercorn') "
        "if m in sys.modules); print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"market": "futures"}, "market"),
        ({"symbols": 0}, "symbols"),
        ({"interval_hint": "7m"}, "interval_hint"),
        ({"weight_limit": 0}, "weight_limit"),
    ],
)
def test_bad_config_is_refused(kwargs: dict, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        SimConfig(**kwargs)


def test_same_candles_in_another_process() -> None:
    code = (
        "from bmac_trio.sim import SimConfig; from bmac_trio.sim._exchange import Exchange; "
        f"ex = Exchange(SimConfig(market='cm', symbols=8, seed=3), {START_MS}); "
        f"import json; print(json.dumps(ex.ground_truth('BTCUSD_PERP', '5m', {START_MS})[-50:]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    ex = Exchange(SimConfig(market="cm", symbols=8, seed=3), START_MS)
    assert orjson.loads(out.stdout) == ex.ground_truth("BTCUSD_PERP", "5m", START_MS)[-50:]
