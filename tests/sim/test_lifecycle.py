"""A scripted market: listings, delistings, delivery expiry, maintenance, scenario files."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import trio

from bmac_trio.clock import TrioClock
from bmac_trio.sim import SimConfig, load_scenario
from bmac_trio.sim._config import scenario_from_mapping
from bmac_trio.sim._exchange import Exchange

from .conftest import START_MS, get_json, open_ws, running

MIN = 60_000


def _entry(info: dict, symbol: str) -> dict:
    return next(s for s in info["symbols"] if s["symbol"] == symbol)


async def _closing_opens(ws, until_ms: int, clock) -> list[tuple[str, int]]:
    """Closing pushes (stream, open) received until exchange time ``until_ms``."""
    seen = []
    with trio.move_on_after(clock.to_real((until_ms - clock.now_ms()) / 1000)):
        while True:
            frame = orjson.loads(await ws.get_message())
            if frame.get("data", {}).get("k", {}).get("x"):
                seen.append((frame["stream"], frame["data"]["k"]["t"]))
    return seen


async def test_listing_pending_then_trading_with_klines_from_onboard() -> None:
    at = START_MS + 3 * MIN  # 0.9 s of real time to check the pending state
    with trio.fail_after(20):
        async with running(START_MS + 1000, speed=200.0, market="um", symbols=6) as (sim, client):
            sim.market_events.list_symbol("NEWUSDT", at)
            _, info, _ = await get_json(client, "/exchangeInfo")
            pending = _entry(info, "NEWUSDT")
            assert pending["status"] == "PENDING_TRADING"
            assert pending["contractType"] == ""
            assert pending["onboardDate"] == at
            assert "NEWUSDT" not in sim.trading_symbols()
            _, rows, _ = await get_json(client, "/klines", symbol="NEWUSDT", interval="1m")
            assert rows == []
            async with open_ws(sim.ws_url + "/market/stream?streams=newusdt@kline_1m") as ws:
                seen = await _closing_opens(ws, at + 2 * MIN + 30_000, sim.clock)
            assert seen[:2] == [("newusdt@kline_1m", at), ("newusdt@kline_1m", at + MIN)]
            _, info, _ = await get_json(client, "/exchangeInfo")
            listed = _entry(info, "NEWUSDT")
            assert listed["status"] == "TRADING"
            assert listed["contractType"] == "PERPETUAL"
            truth = sim.ground_truth("NEWUSDT", "1m")  # first: rows may then hold one more
            _, rows, _ = await get_json(client, "/klines", symbol="NEWUSDT", interval="1m")
            assert rows[0][0] == at
            assert truth[0][0] == at
            assert rows[: len(truth)] == truth


async def test_um_perpetual_delisting() -> None:
    d = START_MS + 3 * MIN
    with trio.fail_after(20):
        async with running(START_MS + 1000, speed=200.0, market="um", symbols=8) as (sim, client):
            sim.market_events.delist_symbol("SIM001USDT", d)
            _, info, _ = await get_json(client, "/exchangeInfo")
            entry = _entry(info, "SIM001USDT")
            assert entry["deliveryDate"] == d  # Binance moves it to the delisting time
            assert entry["status"] == "TRADING"
            async with open_ws(sim.ws_url + "/market/stream?streams=sim001usdt@kline_1m") as ws:
                seen = await _closing_opens(ws, d + 3 * MIN, sim.clock)
            assert [t for _, t in seen] == [
                START_MS,
                START_MS + MIN,
                START_MS + 2 * MIN,
            ]  # then stop
            _, info, _ = await get_json(client, "/exchangeInfo")
            assert _entry(info, "SIM001USDT")["status"] == "SETTLING"
            assert "SIM001USDT" not in sim.trading_symbols()
            _, rows, _ = await get_json(client, "/klines", symbol="SIM001USDT", interval="1m")
            assert rows[-1][0] == d - MIN
            assert sim.ground_truth("SIM001USDT", "1m")[-1][0] == d - MIN
            spec = sim.exchange.specs["SIM001USDT"]
            assert sim.exchange.status(spec, d + 2 * 3600_000) == "CLOSE"


def test_spot_delisting_is_break_and_listing_hidden_before() -> None:
    ex = Exchange(SimConfig(market="spot", symbols=8), START_MS)
    ex.delist_symbol("SIM001USDT", START_MS + MIN)
    spec = ex.specs["SIM001USDT"]
    assert ex.status(spec, START_MS) == "TRADING"
    assert ex.status(spec, START_MS + MIN) == "BREAK"
    ex.list_symbol("NEWUSDC", START_MS + MIN)
    assert ex.symbol_entry(ex.specs["NEWUSDC"], START_MS) is None
    assert ex.symbol_entry(ex.specs["NEWUSDC"], START_MS + MIN)["quoteAsset"] == "USDC"


async def test_delivery_contract_expires() -> None:
    with trio.fail_after(20):
        async with running(START_MS + 1000, speed=200.0, market="cm", symbols=6) as (sim, client):
            quarterly = next(
                s for s in sim.trading_symbols() if s.startswith("BTCUSD_") and "PERP" not in s
            )
            natural = sim.exchange.specs[quarterly].delivery_ms
            assert natural % 86_400_000 == 8 * 3600_000  # 08:00 UTC
            expiry = START_MS + 2 * MIN
            sim.market_events.set_delivery(quarterly, expiry)
            await sim.clock.sleep_until_ms(expiry + MIN)
            _, info, _ = await get_json(client, "/exchangeInfo")
            entry = _entry(info, quarterly)
            assert entry["contractStatus"] == "DELIVERING"
            assert entry["deliveryDate"] == expiry
            _, rows, _ = await get_json(client, "/klines", symbol=quarterly, interval="1m")
            assert rows[-1][0] == expiry - MIN
            spec = sim.exchange.specs[quarterly]
            assert sim.exchange.status(spec, expiry + 11 * MIN) == "DELIVERED"


async def test_maintenance_window_no_candles_and_silent_streams() -> None:
    a, b = START_MS + MIN, START_MS + 3 * MIN
    with trio.fail_after(20):
        async with running(START_MS + 1000, speed=200.0, market="um", symbols=6) as (sim, client):
            sim.market_events.maintenance(a, b)
            async with open_ws(sim.ws_url + "/market/stream?streams=btcusdt@kline_1m") as ws:
                frames = []
                with trio.move_on_after(
                    sim.clock.to_real((b + 3 * MIN - sim.clock.now_ms()) / 1000)
                ):
                    while True:
                        frames.append(orjson.loads(await ws.get_message()))
            times = [f["data"]["E"] for f in frames]
            assert times
            assert not [t for t in times if a <= t < b]
            assert any(t >= b for t in times)  # connected all along, data again after
            closed = [f["data"]["k"]["t"] for f in frames if f["data"]["k"]["x"]]
            assert START_MS not in closed  # its closing push fell in the window
            assert b in closed
            _, rows, _ = await get_json(
                client,
                "/klines",
                symbol="BTCUSDT",
                interval="1m",
                startTime=str(START_MS - MIN),
                limit="6",
            )
            assert [r[0] for r in rows][:4] == [START_MS - MIN, START_MS, b, b + MIN]
            truth_opens = [
                r[0] for r in sim.ground_truth("BTCUSDT", "1m", since_ms=START_MS - MIN)
            ][:4]
            assert truth_opens == [START_MS - MIN, START_MS, b, b + MIN]


def test_scenario_file_drives_the_market(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(
        orjson.dumps(
            {
                "listings": [["NEWUSDT", START_MS + MIN]],
                "delistings": [["SIM002USDT", START_MS + 2 * MIN]],
                "maintenance": [[START_MS + 5 * MIN, START_MS + 6 * MIN]],
            }
        ).decode()
    )
    cfg = SimConfig(market="um", symbols=10, scenario=load_scenario(path))
    ex = Exchange(cfg, START_MS)
    assert ex.status(ex.specs["NEWUSDT"], START_MS) == "PENDING_TRADING"
    assert ex.status(ex.specs["NEWUSDT"], START_MS + MIN) == "TRADING"
    assert ex.status(ex.specs["SIM002USDT"], START_MS + 2 * MIN) == "SETTLING"
    assert ex.in_maintenance(START_MS + 5 * MIN)
    assert not ex.in_maintenance(START_MS + 6 * MIN)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"listing": []}, "unknown scenario key"),
        ({"listings": [["X", "soon"]]}, "bad entry"),
        ({"maintenance": "now"}, "must be a list"),
        ([], "JSON object"),
    ],
)
def test_bad_scenario_is_refused(data: object, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        scenario_from_mapping(data)


async def test_clock_is_injected() -> None:
    clock = TrioClock(start_ms=START_MS, speed=1.0)
    ex = Exchange(SimConfig(market="um", symbols=3), clock.now_ms())
    assert ex.start_ms == START_MS
    assert ex.data_start_ms == START_MS - 3000 * MIN


async def test_events_cannot_rewrite_the_past() -> None:
    async with running(START_MS + 1000, market="um", symbols=6) as (sim, _):
        before = sim.ground_truth("BTCUSDT", "1m")
        sim.market_events.maintenance(START_MS - 10 * MIN, START_MS + 5 * MIN)
        sim.market_events.delist_symbol("ETHUSDT", START_MS - 30 * MIN)
        assert sim.ground_truth("BTCUSDT", "1m") == before  # already published: kept
        assert sim.ground_truth("ETHUSDT", "1m")[-1][0] == START_MS - MIN
        assert sim.exchange.in_maintenance(START_MS + 2 * MIN)
