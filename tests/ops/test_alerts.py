"""Alerts reach a real local HTTP server: DingDing signed, WeChat Work, webhook; rate-limited."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
import trio

from bmac_trio.clock import TrioClock
from bmac_trio.errors import ConfigError
from bmac_trio.ops.alerts import (
    Alerter,
    AlertPolicy,
    NullAlerter,
    build_alerter,
    dingding_sign,
)
from bmac_trio.store.config import load_config

from .conftest import ACCESS_TOKEN, SECRET, WebhookServer

START_MS = 1_764_000_000_000


def dingding(url: str) -> dict[str, object]:
    return {"error": {"access_token": ACCESS_TOKEN, "secret": SECRET, "base_url": url}}


async def test_dingding_signature_matches_bmac_reference() -> None:
    # A fixed vector of BMAC v2's recipe (§6.2), computed once with hmac/base64/quote_plus.
    sign = dingding_sign("SECabc", 1_700_000_000_000)
    assert sign == "jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM%3D"


async def test_dingding_alert_is_signed_and_verified(webhook_server: WebhookServer) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(
                dingding(webhook_server.url), None, http=http, clock=TrioClock(START_MS)
            )
            await nursery.start(alerter.run)
            alerter.notify("crash", "An error occurred boom")
            (got,) = await webhook_server.wait_for(1)
            alerter.close()
        assert got.path == "/robot/send"
        assert got.signature_ok is True
        assert got.query["timestamp"] == str(START_MS) or int(got.query["timestamp"]) >= START_MS
        assert got.body["msgtype"] == "text"
        assert "crash: An error occurred boom" in got.body["text"]["content"]
        assert alerter.statistics().sent == 1


async def test_wrong_secret_is_refused_and_counted(webhook_server: WebhookServer) -> None:
    config = {"error": {"access_token": ACCESS_TOKEN, "secret": "wrong", "url": webhook_server.url}}
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(config, None, http=http, clock=TrioClock(START_MS))
            await nursery.start(alerter.run)
            alerter.notify("ban", "418")
            (got,) = await webhook_server.wait_for(1)
            alerter.close()
    assert got.signature_ok is False
    stats = alerter.statistics()
    assert (stats.sent, stats.failed) == (0, 1)


@pytest.mark.parametrize(
    "shape",
    [
        "top",  # BMAC PR #8: type at the top
        "inside",  # type inside the channel: what BMAC's report_error read
    ],
)
async def test_wechat_work_payload(webhook_server: WebhookServer, shape: str) -> None:
    url = f"{webhook_server.url}/cgi-bin/webhook/send?key=k1"
    if shape == "top":
        msg_sender = {"type": "wechat_work", "error": {"webhook_url": url}}
    else:
        msg_sender = {"error": {"type": "wechat_work", "webhook_url": url}}
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(None, msg_sender, http=http, clock=TrioClock(START_MS))
            await nursery.start(alerter.run)
            alerter.notify("delisting", "FOOUSDT stopped trading")
            (got,) = await webhook_server.wait_for(1)
            alerter.close()
    assert got.path == "/cgi-bin/webhook/send"
    assert got.query == {"key": "k1"}
    content = got.body["text"]["content"]
    assert got.body["msgtype"] == "text"
    assert content.startswith("[bmac-trio] delisting: FOOUSDT stopped trading\n")
    assert content.endswith(" UTC")  # BMAC appended the time


@pytest.mark.parametrize("flat", [True, False])
async def test_generic_webhook_payload(webhook_server: WebhookServer, flat: bool) -> None:
    url = f"{webhook_server.url}/hook"
    msg_sender = (
        {"type": "webhook", "url": url} if flat else {"type": "webhook", "error": {"url": url}}
    )
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(None, msg_sender, http=http, clock=TrioClock(START_MS))
            await nursery.start(alerter.run)
            alerter.notify("listing", "NEWUSDT listed")
            (got,) = await webhook_server.wait_for(1)
            alerter.close()
    assert got.path == "/hook"
    assert got.body["source"] == "bmac-trio"
    assert got.body["kind"] == "listing"
    assert got.body["text"] == "[bmac-trio] listing: NEWUSDT listed"
    assert got.body["time_ms"] >= START_MS


async def test_both_dingding_and_msg_sender_receive(webhook_server: WebhookServer) -> None:
    msg_sender = {"type": "webhook", "url": f"{webhook_server.url}/hook"}
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(
                dingding(webhook_server.url), msg_sender, http=http, clock=TrioClock(START_MS)
            )
            await nursery.start(alerter.run)
            alerter.notify("symbols_missing", "2 symbols missing at the deadline: A, B")
            got = await webhook_server.wait_for(2)
            alerter.close()
    assert sorted(r.path for r in got) == ["/hook", "/robot/send"]


async def test_burst_of_1000_sends_a_handful_and_one_summary(
    webhook_server: WebhookServer,
) -> None:
    # burst 3, then one token every 0.25 s (real): the flood is coalesced into one summary.
    policy = AlertPolicy(burst=3, per_hour=4 * 3600)
    url = f"{webhook_server.url}/hook"
    with trio.fail_after(20):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(
                None,
                {"type": "webhook", "url": url},
                http=http,
                clock=TrioClock(START_MS),
                policy=policy,
            )
            await nursery.start(alerter.run)
            for i in range(1000):
                alerter.notify("reconnects", f"reconnect {i}")
            got = await webhook_server.wait_for(4)
            # nothing more is coming: the only pending item was the summary
            with trio.move_on_after(0.6):
                await webhook_server.wait_for(5)
            alerter.close()
    texts = [r.body["text"] for r in webhook_server.received]
    assert len(texts) == 4
    assert texts[:3] == [f"[bmac-trio] reconnects: reconnect {i}" for i in range(3)]
    assert "997 more reconnects alerts suppressed; latest: reconnect 999" in texts[3]
    stats = alerter.statistics()
    assert (stats.queued, stats.suppressed, stats.dropped, stats.sent) == (3, 997, 0, 4)
    del got


async def test_rate_limit_is_per_kind(webhook_server: WebhookServer) -> None:
    policy = AlertPolicy(burst=1, per_hour=1)  # practically no refill within the test
    url = f"{webhook_server.url}/hook"
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(
                None,
                {"type": "webhook", "url": url},
                http=http,
                clock=TrioClock(START_MS),
                policy=policy,
            )
            await nursery.start(alerter.run)
            for kind in ("crash", "crash", "recovered", "ban", "ban", "ban"):
                alerter.notify(kind, kind)
            await webhook_server.wait_for(3)
            alerter.close()  # leaving: the suppressed ones get their summaries
    kinds = [r.body["kind"] for r in webhook_server.received]
    assert kinds[:3] == ["crash", "recovered", "ban"]
    summaries = sorted(r.body["text"] for r in webhook_server.received[3:])
    assert summaries == [
        "[bmac-trio] ban: 2 more ban alerts suppressed; latest: ban",
        "[bmac-trio] crash: 1 more crash alerts suppressed; latest: crash",
    ]


async def test_repeated_reconnects_make_one_alert(webhook_server: WebhookServer) -> None:
    policy = AlertPolicy(reconnect_threshold=3, reconnect_window=60)
    url = f"{webhook_server.url}/hook"
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(
                None,
                {"type": "webhook", "url": url},
                http=http,
                clock=TrioClock(START_MS),
                policy=policy,
            )
            await nursery.start(alerter.run)
            for i in range(5):
                alerter.note_reconnect(f"conn {i} dropped")
            (got,) = await webhook_server.wait_for(1)
            alerter.close()
    assert len(webhook_server.received) == 1
    assert got.body["kind"] == "reconnects"
    assert "3 reconnects in 1 min; last: conn 2 dropped" in got.body["text"]


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_failing_webhook_never_blocks_or_raises(
    webhook_server: WebhookServer, mode: str
) -> None:
    webhook_server.mode = mode
    policy = AlertPolicy(send_timeout=0.3, flush_timeout=0.5)
    url = f"{webhook_server.url}/hook"
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(
                None,
                {"type": "webhook", "url": url},
                http=http,
                clock=TrioClock(START_MS),
                policy=policy,
            )
            await nursery.start(alerter.run)
            before = trio.current_time()
            for i in range(500):  # every kind, many times: notify() stays instant
                alerter.notify(("crash", "ban", "listing", "delisting")[i % 4], f"n{i}")
            assert trio.current_time() - before < 0.5
            await webhook_server.wait_for(2)
            # meanwhile "recording" goes on: the event loop is free
            with trio.fail_after(0.2):
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()  # the recorder stops: no exception escapes
    stats = alerter.statistics()
    assert stats.sent == 0
    assert stats.failed >= 2
    assert stats.queued + stats.suppressed + stats.dropped == 500


async def test_dead_port_is_a_logged_failure() -> None:
    # Nothing listens on the port: connection refused is logged and counted, not raised.
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(10):
        async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
            alerter = build_alerter(
                None,
                {"type": "webhook", "url": f"http://127.0.0.1:{port}/hook"},
                http=http,
                clock=TrioClock(START_MS),
            )
            await nursery.start(alerter.run)
            alerter.notify("crash", "x")
            alerter.close()
    assert alerter.statistics().failed == 1


async def test_no_config_is_the_null_alerter() -> None:
    async with httpx.AsyncClient() as http:
        alerter = build_alerter(None, None, http=http, clock=TrioClock(START_MS))
    assert isinstance(alerter, NullAlerter)
    alerter.notify("crash", "ignored")
    alerter.note_reconnect("ignored")
    await alerter.run()
    assert alerter.statistics().sent == 0


@pytest.mark.parametrize(
    ("dingding_cfg", "msg_sender"),
    [
        (None, {"type": "carrier_pigeon", "error": {"url": "http://x"}}),
        (None, {"type": "wechat_work", "error": {"url": "http://x"}}),
        ({"error": {"secret": "s"}}, None),
        (None, {"type": "webhook", "error": {"url": "ftp://x/hook"}}),
        (None, {"type": "webhook", "error": {"url": "http://h:99999/hook"}}),
    ],
)
async def test_bad_channel_config_is_a_config_error(
    dingding_cfg: dict[str, object] | None, msg_sender: dict[str, object] | None
) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(ConfigError):
            build_alerter(dingding_cfg, msg_sender, http=http, clock=TrioClock(START_MS))


@pytest.mark.parametrize(
    ("alerts", "sink_type"),
    [
        ({"dingding": {"error": {"access_token": "t", "secret": "SECs"}}}, "DingDingSink"),
        (
            {"msg_sender": {"type": "dingding", "error": {"access_token": "t", "secret": "s"}}},
            "DingDingSink",
        ),
        (
            {"msg_sender": {"type": "wechat_work", "error": {"webhook_url": "https://h/x?key=k"}}},
            "WeChatWorkSink",
        ),
        (
            {"msg_sender": {"error": {"type": "wechat_work", "webhook_url": "https://h/x?key=k"}}},
            "WeChatWorkSink",
        ),
        ({"msg_sender": {"type": "webhook", "error": {"url": "https://h/hook"}}}, "WebhookSink"),
    ],
)
async def test_readme_alert_configs_pass_the_config_and_build_sinks(
    tmp_path: Path, alerts: dict[str, object], sink_type: str
) -> None:
    # Every shape the README documents is accepted by config.json validation ...
    config = {"interval": "5m", "trade_type": "usdt_perp", **alerts}
    (tmp_path / "config.json").write_bytes(orjson.dumps(config))
    cfg = load_config(tmp_path)
    # ... and becomes an alerter whose "error" channel has the right sink.
    async with httpx.AsyncClient() as http:
        alerter = build_alerter(cfg.dingding, cfg.msg_sender, http=http, clock=TrioClock(START_MS))
    assert isinstance(alerter, Alerter)
    assert [type(s).__name__ for s in alerter.channels["error"]] == [sink_type]
