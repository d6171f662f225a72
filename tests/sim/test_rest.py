"""REST fidelity over real HTTP: limits, weights, headers, paging rules, errors, funding."""

from __future__ import annotations

import pytest
import trio

from .conftest import START_MS, get_json, running

MIN = 60_000
D201 = str(201 * 86_400_000)


@pytest.mark.parametrize(
    ("market", "limit", "weight"),
    [
        ("um", None, 5), ("um", 99, 1), ("um", 100, 2), ("um", 499, 2), ("um", 500, 5),
        ("um", 1000, 5), ("um", 1001, 10), ("um", 1500, 10), ("cm", 99, 1), ("cm", 1500, 10),
        ("spot", None, 2), ("spot", 1, 2), ("spot", 1000, 2),
    ],
)  # fmt: skip
async def test_klines_weight_by_limit_and_headers(
    market: str, limit: int | None, weight: int
) -> None:
    symbol = "BTCUSD_PERP" if market == "cm" else "BTCUSDT"
    with trio.fail_after(20):
        async with running(START_MS + 1000, market=market, symbols=6) as (sim, client):
            params = {"symbol": symbol, "interval": "1m"}
            if limit is not None:
                params["limit"] = str(limit)
            default = {"spot": 500, "um": 500, "cm": 500}[market]
            for i in (1, 2):
                status, rows, headers = await get_json(client, "/klines", **params)
                assert status == 200
                assert len(rows) == (limit or default)
                assert headers["x-mbx-used-weight-1m"] == str(weight * i)
                assert headers["x-mbx-used-weight"] == str(weight * i)
                assert headers["content-type"] == "application/json;charset=UTF-8"
            assert sim.stats.weight_per_ip["127.0.0.1"] == 2 * weight


async def test_weight_headers_on_errors_and_other_endpoints() -> None:
    with trio.fail_after(20):
        async with running(START_MS + 1000, market="spot", symbols=6) as (_, client):
            status, body, headers = await get_json(client, "/exchangeInfo")
            assert status == 200
            assert headers["x-mbx-used-weight-1m"] == "20"
            status, body, headers = await get_json(client, "/klines", symbol="NOPE", interval="1m")
            assert (status, body) == (400, {"code": -1121, "msg": "Invalid symbol."})
            assert headers["x-mbx-used-weight-1m"] == "22"
            status, body, headers = await get_json(client, "/nothing")
            assert status == 404
            assert headers["x-mbx-used-weight-1m"] == "23"
            status, body, _ = await get_json(client, "/ping")
            assert (status, body) == (200, {})
            status, body, _ = await get_json(client, "/time")
            assert abs(body["serverTime"] - (START_MS + 1000)) < 5_000


async def test_429_then_418_ban_with_retry_after() -> None:
    with trio.fail_after(20):
        async with running(
            START_MS + 1000, market="spot", symbols=4, weight_limit=10, ban_grace_s=0
        ) as (
            sim,
            client,
        ):
            status, _, _ = await get_json(client, "/exchangeInfo")  # weight 20 > 10
            assert status == 429
            status, body, headers = await get_json(client, "/ping")
            assert status == 418
            assert body["code"] == -1003
            assert "IP banned until" in body["msg"]
            assert int(headers["retry-after"]) == 120
            status, body, headers = await get_json(client, "/ping")
            assert status == 418
            assert 110 <= int(headers["retry-after"]) <= 120
            assert sim.stats.rest_by_status[429] == 1
            assert sim.stats.rest_by_status[418] == 2


async def test_429_body_and_limit_in_exchange_info() -> None:
    with trio.fail_after(20):
        async with running(START_MS + 1000, market="um", symbols=4, weight_limit=12) as (_, client):
            status, info, _ = await get_json(client, "/exchangeInfo")
            assert status == 200
            weight_rule = [r for r in info["rateLimits"] if r["rateLimitType"] == "REQUEST_WEIGHT"]
            assert weight_rule == [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 12,
                }
            ]
            for _ in range(2):
                status, _, _ = await get_json(client, "/klines", symbol="BTCUSDT", interval="1m")
                assert status == 200  # 1 + 5 + 5 = 11
            status, body, headers = await get_json(
                client, "/klines", symbol="BTCUSDT", interval="1m"
            )
            assert status == 429
            assert body["code"] == -1003
            assert "current limit is 12 requests per minute" in body["msg"]
            assert 1 <= int(headers["retry-after"]) <= 60
            assert headers["x-mbx-used-weight-1m"] == "16"


@pytest.mark.parametrize(
    ("market", "params", "code"),
    [
        ("um", {"interval": "1m"}, -1102),
        ("um", {"symbol": "BTCUSDT"}, -1102),
        ("um", {"symbol": "BTCUSDT", "interval": "7m"}, -1120),
        ("um", {"symbol": "BTCUSDT", "interval": "1s"}, -1120),
        ("um", {"symbol": "btcusdt", "interval": "1m"}, -1121),
        ("um", {"symbol": "BTCUSDT", "interval": "1m", "startTime": "abc"}, -1100),
        ("um", {"symbol": "BTCUSDT", "interval": "1m", "limit": "0"}, -1130),
        ("um", {"symbol": "BTCUSDT", "interval": "1m", "limit": "1501"}, -1130),
        ("spot", {"symbol": "BTCUSDT", "interval": "1m", "limit": "1001"}, -1130),
        ("spot", {"symbol": "BTCUSDT", "interval": "1m", "timeZone": "+14:30"}, -1130),
        ("spot", {"symbol": "BTCUSDT", "interval": "1m", "timeZone": "-13"}, -1130),
        ("spot", {"symbol": "BTCUSDT", "interval": "1m", "timeZone": "8:7"}, -1130),
        ("um", {"symbol": "BTCUSDT", "interval": "1m", "foo": "1"}, -1104),
        ("um", {"symbol": "BTCUSDT", "interval": "1m", "startTime": "2", "endTime": "1"}, -1023),
        ("cm", {"symbol": "BTCUSD_PERP", "interval": "1m", "startTime": "0", "endTime": D201}, -4088),  # noqa: E501
    ],
)  # fmt: skip
async def test_klines_errors(market: str, params: dict[str, str], code: int) -> None:
    with trio.fail_after(20):
        async with running(START_MS, market=market, symbols=6) as (_, client):
            status, body, headers = await get_json(client, "/klines", **params)
            assert status == 400
            assert body["code"] == code
            assert isinstance(body["msg"], str)
            assert body["msg"]
            assert "x-mbx-used-weight-1m" in headers


async def test_spot_start_after_end_is_empty() -> None:
    async with running(START_MS, market="spot", symbols=4) as (_, client):
        status, rows, _ = await get_json(
            client, "/klines", symbol="BTCUSDT", interval="1m", startTime="2", endTime="1"
        )
        assert (status, rows) == (200, [])


@pytest.mark.parametrize("market", ["spot", "um"])
async def test_inclusive_open_time_window_oldest_first(market: str) -> None:
    now = START_MS + 30_000
    async with running(now, market=market, symbols=4) as (sim, client):
        start, end = START_MS - 100 * MIN, START_MS - 90 * MIN
        _, rows, _ = await get_json(
            client,
            "/klines",
            symbol="BTCUSDT",
            interval="1m",
            startTime=str(start),
            endTime=str(end),
        )
        assert [r[0] for r in rows] == list(range(start, end + 1, MIN))
        _, rows, _ = await get_json(
            client, "/klines", symbol="BTCUSDT", interval="1m", startTime=str(start + 1), limit="3"
        )
        assert [r[0] for r in rows] == [start + MIN, start + 2 * MIN, start + 3 * MIN]
        _, rows, _ = await get_json(
            client, "/klines", symbol="BTCUSDT", interval="1m", endTime=str(end), limit="2"
        )
        assert [r[0] for r in rows] == [end - MIN, end]
        truth = {r[0]: r for r in sim.ground_truth("BTCUSDT", "1m")}
        assert all(truth[r[0]] == r for r in rows)


async def test_forming_last_candle() -> None:
    now = START_MS + 30_000
    async with running(now, market="um", symbols=4) as (sim, client):
        _, rows, _ = await get_json(client, "/klines", symbol="ETHUSDT", interval="1m", limit="3")
        last = rows[-1]
        assert last[0] == START_MS
        assert last[6] == START_MS + MIN - 1
        assert rows[-2] == sim.ground_truth("ETHUSDT", "1m")[-1]
        final = sim.exchange.ground_truth("ETHUSDT", "1m", START_MS + MIN)[-1]
        assert final[0] == START_MS
        assert last[8] <= final[8]
        assert last[1] == final[1]  # opens at the previous close
        assert float(last[2]) <= float(final[2])
        assert float(last[3]) >= float(final[3])


async def test_coin_m_returns_newest_candles_before_end() -> None:
    now = START_MS + 30_000
    async with running(now, market="cm", symbols=6) as (_, client):
        start = START_MS - 1000 * MIN
        _, rows, _ = await get_json(
            client, "/klines", symbol="BTCUSD_PERP", interval="1m", startTime=str(start), limit="10"
        )
        # start only: endTime = min(start + 200 days, now) and the newest 10 before it.
        assert [r[0] for r in rows] == list(range(START_MS - 9 * MIN, START_MS + 1, MIN))
        end = start + 50 * MIN
        _, rows, _ = await get_json(
            client, "/klines", symbol="BTCUSD_PERP", interval="1m", startTime=str(start),
            endTime=str(end), limit="10",
        )  # fmt: skip
        assert [r[0] for r in rows] == list(range(end - 9 * MIN, end + 1, MIN))


async def test_premium_index_shapes() -> None:
    async with running(START_MS + 1000, market="um", symbols=6) as (sim, client):
        _, one, headers = await get_json(client, "/premiumIndex", symbol="BTCUSDT")
        assert isinstance(one, dict)
        assert headers["x-mbx-used-weight-1m"] == "1"
        assert set(one) == {
            "symbol", "markPrice", "indexPrice", "estimatedSettlePrice", "lastFundingRate",
            "interestRate", "nextFundingTime", "time",
        }  # fmt: skip
        assert isinstance(one["nextFundingTime"], int)
        assert one["nextFundingTime"] % (8 * 3600_000) == 0
        _, many, headers = await get_json(client, "/premiumIndex")
        assert isinstance(many, list)
        assert {e["symbol"] for e in many} == set(sim.trading_symbols())
        assert headers["x-mbx-used-weight-1m"] == "11"
    async with running(START_MS + 1000, market="cm", symbols=6) as (sim, client):
        _, perp, _ = await get_json(client, "/premiumIndex", symbol="BTCUSD_PERP")
        assert isinstance(perp, list)
        assert perp[0]["pair"] == "BTCUSD"
        assert perp[0]["lastFundingRate"] != ""
        quarterly = next(s for s in sim.trading_symbols() if not s.endswith("_PERP"))
        _, deli, _ = await get_json(client, "/premiumIndex", symbol=quarterly)
        assert deli[0]["lastFundingRate"] == ""
        assert deli[0]["interestRate"] == ""
        assert deli[0]["nextFundingTime"] == 0


async def test_funding_rate_history() -> None:
    eight_h = 8 * 3600_000
    async with running(START_MS + 1000, market="um", symbols=6) as (_, client):
        _, rows, _ = await get_json(
            client,
            "/fundingRate",
            symbol="BTCUSDT",
            startTime=str(START_MS - 10 * eight_h),
            limit="5",
        )
        assert [r["fundingTime"] for r in rows] == [START_MS - (10 - i) * eight_h for i in range(5)]
        assert list(rows[0]) == ["symbol", "fundingRate", "fundingTime", "markPrice"]
        assert all(isinstance(r["fundingRate"], str) and "." in r["fundingRate"] for r in rows)
        _, latest, _ = await get_json(client, "/fundingRate", symbol="BTCUSDT", limit="2")
        assert [r["fundingTime"] for r in latest] == [START_MS - eight_h, START_MS]
    async with running(START_MS + 1000, market="cm", symbols=6) as (sim, client):
        status, body, _ = await get_json(client, "/fundingRate")
        assert (status, body["code"]) == (400, -1102)
        _, rows, _ = await get_json(client, "/fundingRate", symbol="BTCUSD_PERP", limit="3")
        assert list(rows[0]) == ["symbol", "fundingTime", "fundingRate"]
        quarterly = next(s for s in sim.trading_symbols() if not s.endswith("_PERP"))
        _, rows, _ = await get_json(client, "/fundingRate", symbol=quarterly)
        assert rows == []


async def test_spot_exchange_info_symbol_filters() -> None:
    async with running(START_MS, market="spot", symbols=8) as (_, client):
        _, info, _ = await get_json(client, "/exchangeInfo", symbol="ETHBTC")
        assert [s["symbol"] for s in info["symbols"]] == ["ETHBTC"]
        _, info, _ = await get_json(client, "/exchangeInfo", symbols='["BTCUSDT","USDCUSDT"]')
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "USDCUSDT"]
        status, body, _ = await get_json(client, "/exchangeInfo", symbol="NOPE")
        assert (status, body["code"]) == (400, -1121)
        _, info, _ = await get_json(client, "/exchangeInfo")
        quotes = {s["quoteAsset"] for s in info["symbols"]}
        assert {"USDT", "USDC", "BTC"} <= quotes


async def test_spot_accepts_microsecond_times() -> None:
    async with running(START_MS + 1000, market="spot", symbols=4) as (_, client):
        start = START_MS - 10 * MIN
        _, ms_rows, _ = await get_json(
            client, "/klines", symbol="BTCUSDT", interval="1m", startTime=str(start), limit="3"
        )
        _, us_rows, _ = await get_json(
            client,
            "/klines",
            symbol="BTCUSDT",
            interval="1m",
            startTime=str(start * 1000),
            limit="3",
        )
        assert (
            [r[0] for r in us_rows]
            == [r[0] for r in ms_rows]
            == [start, start + MIN, start + 2 * MIN]
        )


async def test_continuous_klines_follow_the_contract() -> None:
    async with running(START_MS + 1000, market="um", symbols=6) as (sim, client):
        quarterly = next(s for s in sim.trading_symbols() if s.startswith("BTCUSDT_"))
        for ctype, symbol in (("PERPETUAL", "BTCUSDT"), ("CURRENT_QUARTER", quarterly)):
            end = str(START_MS - MIN)  # closed candles only: no race with the forming one
            _, cont, _ = await get_json(
                client,
                "/continuousKlines",
                pair="BTCUSDT",
                contractType=ctype,
                interval="1m",
                endTime=end,
                limit="5",
            )
            _, plain, _ = await get_json(
                client, "/klines", symbol=symbol, interval="1m", endTime=end, limit="5"
            )
            assert len(cont) == 5
            assert cont == plain
