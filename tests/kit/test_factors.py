"""Every bundled factor (bmac_kit/factors/) against a direct, loop-by-loop computation of its
docstring formula."""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable

import polars as pl
import pytest

import bmac_kit.factors as bundled
from bmac_kit._factors import apply_all_market, apply_single, load_factors
from bmac_kit._reader import MarketFrame

Col = list[float]
Out = list[float | None]


def _window(x: list[float | None], t: int, n: int) -> list[float] | None:
    if t < n - 1:
        return None
    w = x[t - n + 1 : t + 1]
    return None if any(v is None for v in w) else w  # type: ignore[return-value]


def _mean(x: list[float | None], n: int) -> Out:
    out: Out = []
    for t in range(len(x)):
        w = _window(x, t, n)
        out.append(None if w is None else sum(w) / n)
    return out


def _std(x: list[float | None], n: int) -> Out:
    out: Out = []
    for t in range(len(x)):
        w = _window(x, t, n)
        if w is None:
            out.append(None)
            continue
        m = sum(w) / n
        out.append(math.sqrt(sum((v - m) ** 2 for v in w) / (n - 1)))
    return out


def _sum(x: list[float | None], n: int) -> Out:
    return [None if v is None else v * n for v in _mean(x, n)]


def _lift(f: Callable[..., float], *cols: Out) -> Out:
    return [None if any(v is None for v in vs) else f(*vs) for vs in zip(*cols, strict=True)]


def _shift(x: Col, n: int) -> Out:
    return ([None] * n + x)[: len(x)]


def direct(name: str, n: int, c: dict[str, Col]) -> Out:
    close, high, low = c["close"], c["high"], c["low"]
    match name:
        case "PctChg":
            return _lift(lambda a, b: a / b - 1, close, _shift(close, n))
        case "TrdNumMeanV1":
            return _mean(c["trade_num"], n)
        case "Bias":
            return _lift(lambda a, m: a / m - 1, close, _mean(close, n))
        case "Cci":
            tp = [(h + lo + cl) / 3 for h, lo, cl in zip(high, low, close, strict=True)]
            ma = _mean(tp, n)
            md = _mean(_lift(lambda a, m: abs(a - m), tp, ma), n)
            return _lift(lambda a, m, d: (a - m) / (0.015 * d), tp, ma, md)
        case "Rsi":
            d = _lift(lambda a, b: a - b, close, _shift(close, 1))
            up = _mean([None if v is None else max(v, 0.0) for v in d], n)
            down = _mean([None if v is None else max(-v, 0.0) for v in d], n)
            return _lift(lambda u, w: 100 * u / (u + w), up, down)
        case "Ma":
            return _mean(close, n)
        case "Ema":
            a, out = 2 / (n + 1), [close[0]]
            for v in close[1:]:
                out.append(a * v + (1 - a) * out[-1])
            return out  # type: ignore[return-value]
        case "Volatility":
            return _std(_lift(lambda a, b: a / b - 1, close, _shift(close, 1)), n)
        case "QuoteVolumeMean":
            return _mean(c["quote_volume"], n)
        case "Momentum":
            return _lift(lambda a, b: a - b, close, _shift(close, n))
        case "Atr":
            prev = _shift(close, 1)
            tr = [
                h - lo if p is None else max(h - lo, abs(h - p), abs(lo - p))
                for h, lo, p in zip(high, low, prev, strict=True)
            ]
            return _lift(lambda m, cl: m / cl, _mean(tr, n), close)
        case "BollingerWidth":
            return _lift(lambda s, m: 4 * s / m, _std(close, n), _mean(close, n))
        case "TakerBuyRatio":
            buy, quote = _sum(c["taker_buy_quote_asset_volume"], n), _sum(c["quote_volume"], n)
            return _lift(lambda b, q: b / q, buy, quote)
        case "ZScore":
            return _lift(lambda v, m, s: (v - m) / s, close, _mean(close, n), _std(close, n))
    raise AssertionError(f"no direct computation for {name}")


FACTORS = sorted(
    m.name for m in pkgutil.iter_modules(bundled.__path__) if not m.name.startswith("_")
)


def _assert_close(got: list[float | None], want: Out) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if w is None:
            assert g is None, f"row {i}: expected null, got {g}"
        else:
            assert g is not None, f"row {i}: got null, expected {w}"
            assert g == pytest.approx(w, rel=1e-9, abs=1e-12), f"row {i}"


def test_at_least_twelve_factors_with_formulas() -> None:
    assert len(FACTORS) >= 12
    assert {"PctChg", "TrdNumMeanV1"} <= set(FACTORS)
    for name in FACTORS:
        module = importlib.import_module(f"bmac_kit.factors.{name}")
        assert "=" in (module.__doc__ or ""), f"{name} documents no formula"
        assert isinstance(module.expr(5), pl.Expr)


@pytest.mark.parametrize("name", FACTORS)
@pytest.mark.parametrize("n", [1, 3, 14])
def test_factor_equals_direct_computation(name: str, n: int, make_candles) -> None:
    if n == 1 and name in ("Volatility", "BollingerWidth", "ZScore", "Cci"):
        n = 2  # a std needs two values; CCI of one value is 0/0
    frame = make_candles(120, end_ms=1_721_216_400_000, seed=n)
    columns = {c: frame.get_column(c).to_list() for c in frame.columns[2:]}
    got = apply_single(frame, load_factors([(name, n)])).get_column(f"{name}_{n}").to_list()
    _assert_close(got, direct(name, n, columns))


@pytest.mark.parametrize("name", FACTORS)
def test_all_market_query_equals_per_symbol(name: str, make_candles) -> None:
    end = 1_721_216_400_000
    parts = {
        "AUSDT": make_candles(60, end_ms=end, seed=1),
        "BUSDT": make_candles(61, end_ms=end + 600_000, seed=2),  # already two periods ahead
        "CUSDT": make_candles(62, end_ms=end - 300_000, seed=3),  # not ready for this period
        "DUSDT": make_candles(3, end_ms=end, seed=4),  # shorter than the windows
        "EUSDT": make_candles(1, end_ms=end, seed=5).clear(),  # an empty file
    }
    market = MarketFrame(pl.concat(parts.values()), list(parts), [f.height for f in parts.values()])
    rows, errors = apply_all_market(market, load_factors([(name, 7)]), end)
    assert errors == {}
    assert rows.get_column("symbol").to_list() == ["AUSDT", "BUSDT", "DUSDT"]
    assert (rows.get_column("candle_end_time").dt.epoch("ms") == end).all()
    for symbol in ("AUSDT", "BUSDT", "DUSDT"):
        part = parts[symbol].filter(pl.col("candle_end_time").dt.epoch("ms") <= end)
        want = direct(name, 7, {c: part.get_column(c).to_list() for c in part.columns[2:]})[-1]
        got = rows.filter(pl.col("symbol") == symbol).item(0, f"{name}_7")
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("name", FACTORS)
@pytest.mark.parametrize("n", [2, 9])
def test_lookback_is_enough_for_the_newest_value(name: str, n: int, make_candles) -> None:
    module = importlib.import_module(f"bmac_kit.factors.{name}")
    if not hasattr(module, "lookback"):
        assert name == "Ema"  # depends on every row: evaluated on the whole history
        return
    frame = make_candles(80, end_ms=1_721_216_400_000, seed=n)
    full = frame.select(module.expr(n)).to_series()[-1]
    tail = frame.tail(module.lookback(n)).select(module.expr(n)).to_series()[-1]
    assert tail == pytest.approx(full, rel=1e-9)
    shorter = frame.tail(module.lookback(n) - 1).select(module.expr(n)).to_series()[-1]
    # and it is not larger than needed: one row fewer changes the value (except Atr here:
    # the synthetic open is the previous close, so the true range never needs it)
    assert name == "Atr" or shorter is None or shorter != pytest.approx(full, rel=1e-9)


@pytest.mark.parametrize("name", FACTORS)
def test_polars_module_signal_is_bmac_compatible(name: str, make_candles) -> None:
    frame = make_candles(50, end_ms=1_721_216_400_000, seed=3)
    pdf = frame.to_pandas().set_index("candle_end_time")
    module = importlib.import_module(f"bmac_kit.factors.{name}")
    out = module.signal(pdf, 5, f"{name}_5")
    assert out is pdf
    want = direct(name, 5, {c: frame.get_column(c).to_list() for c in frame.columns[2:]})
    got = [None if math.isnan(v) else float(v) for v in out[f"{name}_5"]]
    _assert_close(got, want)


def test_an_empty_file_is_left_out_not_misread(make_candles) -> None:
    end = 1_721_216_400_000
    a, empty = make_candles(30, end_ms=end, seed=1), make_candles(1, end_ms=end).clear()
    market = MarketFrame(pl.concat([a, empty]), ["AUSDT", "EUSDT"], [30, 0])
    rows, _ = apply_all_market(market, load_factors([("PctChg", 3)]), end)
    assert rows.get_column("symbol").to_list() == ["AUSDT"]
    assert rows.item(0, "close") == a.item(-1, "close")
