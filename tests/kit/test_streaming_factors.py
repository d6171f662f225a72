"""Streaming factors equal the batch polars factors, period by period (hypothesis).

Scenarios: symbols listed mid-window (with or without history loaded at once), delisted,
candles late by a period or two (gaps healed) or never sent (gaps kept), the window rebuilt
from what the files hold (a restart, or the bus healing under the same calculator),
parameters longer than the window or the history. The batch reference is
``apply_all_market`` on exactly what each symbol's file would hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from hypothesis import given, settings, strategies as st

from bmac_kit._factors import apply_all_market, load_factors
from bmac_kit._reader import MarketFrame
from bmac_kit.streaming import KERNELS, BmacStreamingCalculator, ReplayPeriod
from bmac_kit.window import MarketWindow

T0_MS = 1_721_216_400_000
#: Where a formula cancels (Bias = close / mean - 1 near 0, Cci and ZScore near 0), the two
#: summation orders differ by ~1e-16 of the operands, which is more than 1e-9 of a result
#: near zero: there the values must agree to 1e-10 absolute instead.
ABS_TOL = 1e-10
FIVE_MIN_MS = 300_000
NAMES = sorted(KERNELS)


def history(n: int, *, first_end_ms: int, seed: int) -> pl.DataFrame:
    """``n`` plausible candles from ``first_end_ms`` on (a random walk; volumes > 0)."""
    rng = np.random.default_rng(seed)
    end = first_end_ms + FIVE_MIN_MS * np.arange(n, dtype=np.int64)
    sigma = rng.uniform(0.001, 0.05)
    close = 100 * np.exp(np.cumsum(rng.normal(0, sigma, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, sigma / 2, n)) * close
    volume = rng.gamma(2.0, 50.0, n) + 1e-3
    taker = rng.random(n)
    frame = pl.DataFrame(
        {
            "candle_begin_time": end - FIVE_MIN_MS,
            "candle_end_time": end,
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread * rng.random(n),
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trade_num": np.floor(rng.gamma(2.0, 100.0, n)),
            "taker_buy_base_asset_volume": volume * taker,
            "taker_buy_quote_asset_volume": volume * close * taker,
        }
    )
    return frame.with_columns(pl.col("^candle_.*_time$").cast(pl.Datetime("ms", "UTC")))


@dataclass
class WindowOnly:
    """The part of a market ``calc_period`` reads (periods are handed over directly here)."""

    window: MarketWindow


@dataclass
class Listing:
    symbol: str
    prehistory: int  # candles already "on disk" when it appears
    start: int  # the period it appears in
    stop: int  # the period it is delisted in (== periods: never)
    delays: list[int | None]  # per live candle: periods late (None: never sent)


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    periods = draw(st.integers(1, 30), label="periods")
    listings = []
    for i in range(draw(st.integers(1, 4), label="symbols")):
        start = draw(st.integers(0, periods - 1))
        stop = draw(st.integers(start + 1, periods))
        delays = st.sampled_from([0, 0, 0, 0, 0, 1, 2, None])
        listings.append(
            Listing(
                symbol=f"S{i}USDT",
                prehistory=draw(st.integers(0, 40)),
                start=start,
                stop=stop,
                delays=draw(st.lists(delays, min_size=stop - start, max_size=stop - start)),
            )
        )
    num_candles = draw(st.integers(1, 30), label="num_candles")
    return {
        "periods": periods,
        "listings": listings,
        "num_candles": num_candles,
        "mirror": draw(st.integers(0, num_candles), label="mirror"),
        "params": {name: draw(st.integers(1, 12), label=name) for name in NAMES},
        "restart": draw(st.none() | st.integers(0, periods - 1), label="restart"),
        "heal": draw(st.booleans(), label="heal"),
        "seed": draw(st.integers(0, 2**32 - 1), label="seed"),
    }


def file_of(sent: list[pl.DataFrame], num_candles: int) -> pl.DataFrame:
    """What the recorder's file holds: sorted, unique by end time, the last num_candles."""
    frame = pl.concat(sent).unique("candle_end_time", keep="first", maintain_order=True)
    return frame.sort("candle_end_time").tail(num_candles)


def batch_frame(out: Any) -> pl.DataFrame:
    """apply_all_market's frame (since issue 13 it returns (frame, errors))."""
    return out[0] if isinstance(out, tuple) else out


def assert_same(streamed: pl.DataFrame, batch: pl.DataFrame, columns: list[str]) -> None:
    assert streamed.get_column("symbol").to_list() == batch.get_column("symbol").to_list()
    assert streamed.drop(columns).equals(batch.drop(columns))
    for column in columns:
        for symbol, got, want in zip(
            streamed.get_column("symbol"), streamed[column], batch[column], strict=True
        ):
            if want is None or math.isnan(want):
                assert math.isnan(got), (column, symbol, got, want)
            else:
                close = math.isclose(got, want, rel_tol=1e-9, abs_tol=ABS_TOL)
                assert close, (column, symbol, got, want)


def run_scenario(s: dict[str, Any]) -> int:
    """Replay the scenario through the streaming calculator; compare every period with batch."""
    num_candles, listings = s["num_candles"], s["listings"]
    cfgs = [(name, s["params"][name]) for name in NAMES]
    specs = load_factors(cfgs)
    columns = [spec.column for spec in specs]
    deliveries: dict[int, list[tuple[str, pl.DataFrame]]] = {}
    recorded: dict[str, pl.DataFrame] = {}  # every candle of the symbol (the recorder has it)
    for i, listing in enumerate(listings):
        first_end = T0_MS + FIVE_MIN_MS * (listing.start - listing.prehistory)
        total = listing.prehistory + listing.stop - listing.start
        candles = history(total, first_end_ms=first_end, seed=s["seed"] + i)
        recorded[listing.symbol] = candles
        if listing.prehistory:
            pre = candles.head(listing.prehistory)
            deliveries.setdefault(listing.start, []).append((listing.symbol, pre))
        for j, delay in enumerate(listing.delays):
            due = listing.start + j + (delay or 0)
            if delay is not None and due < listing.stop:
                row = candles.slice(listing.prehistory + j, 1)
                deliveries.setdefault(due, []).append((listing.symbol, row))

    window = MarketWindow(num_candles, "5m", mirror=s["mirror"])
    market = WindowOnly(window)
    calc = BmacStreamingCalculator(market, cfgs)  # type: ignore[arg-type]
    sent: dict[str, list[pl.DataFrame]] = {}
    compared = 0
    for period in range(s["periods"]):
        for listing in listings:
            if listing.stop == period:
                window.remove(listing.symbol)
                sent.pop(listing.symbol, None)
        if s["restart"] == period:  # the window is rebuilt from the files
            # which hold every candle so far, also those late or lost on the way to the window
            before = pl.col("candle_end_time").dt.epoch("ms") < T0_MS + FIVE_MIN_MS * period
            for listing in listings:
                if listing.start < period < listing.stop:
                    candles = recorded[listing.symbol].filter(before)
                    sent.setdefault(listing.symbol, []).append(candles)
            files = {sym: file_of(parts, num_candles) for sym, parts in sent.items()}
            window = MarketWindow(num_candles, "5m", mirror=num_candles - s["mirror"])
            window.load(
                MarketFrame(
                    pl.concat(files.values()) if files else pl.DataFrame(),
                    list(files),
                    [f.height for f in files.values()],
                )
            )
            if s["heal"]:  # the bus healing: the same calculator, the market's new window
                market.window = window
            else:  # a restart of the strategy
                market = WindowOnly(window)
                calc = BmacStreamingCalculator(market, cfgs)  # type: ignore[arg-type]
        parts = deliveries.get(period, [])
        if parts:
            window.apply(
                pl.concat([c.select(pl.lit(sym).alias("symbol"), pl.all()) for sym, c in parts])
            )
        for sym, c in parts:
            sent.setdefault(sym, []).append(c)
        run_ms = T0_MS + FIVE_MIN_MS * period
        ready = tuple(
            sym
            for sym in window.symbols()
            if window.last_end_time(sym) and window.last_ends()[window.slot(sym)] == run_ms
        )
        result = calc.calc_period(
            ReplayPeriod(
                run_time=pl.select(pl.lit(run_ms).cast(pl.Datetime("ms", "UTC"))).item(),
                candles=pl.DataFrame(),
                ready=ready,
                missing=(),
            )
        )
        files = {sym: file_of(sent[sym], num_candles) for sym in ready}
        market_frame = MarketFrame(
            pl.concat(files.values()) if files else pl.DataFrame(),
            list(files),
            [f.height for f in files.values()],
        )
        batch = batch_frame(apply_all_market(market_frame, specs, run_ms)) if files else None
        if batch is None:
            assert result.frame.is_empty()
            continue
        assert_same(result.frame, batch, columns)
        compared += batch.height
    return compared


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_streaming_equals_batch_for_every_bundled_factor(scenario: dict[str, Any]) -> None:
    run_scenario(scenario)


def test_a_long_run_compares_hundreds_of_rows() -> None:
    """A fixed scenario long enough that every factor has values (and the Ema seed moves)."""
    listings = [
        Listing("AUSDT", prehistory=40, start=0, stop=60, delays=[0] * 60),
        Listing("BUSDT", prehistory=0, start=5, stop=60, delays=[0, 1, None, 0, 2] * 11),
        Listing("CUSDT", prehistory=3, start=10, stop=45, delays=[0] * 35),
    ]
    scenario = {
        "periods": 60,
        "listings": listings,
        "num_candles": 30,
        "mirror": 7,
        "params": {name: 6 for name in NAMES},
        "restart": 30,
        "heal": True,
        "seed": 7,
    }
    assert run_scenario(scenario) > 100
