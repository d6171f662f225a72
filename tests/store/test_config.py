"""config.json validation: BMAC's keys and defaults, ours, and one clear message per mistake."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bmac_trio.binance.markets import CM, SPOT, UM
from bmac_trio.errors import ConfigError
from bmac_trio.store.config import KNOWN_KEYS, load_config

OK = {"interval": "5m", "trade_type": "usdt_perp"}
SPOT_OK = {"interval": "5m", "trade_type": "usdt_spot"}


def write(tmp_path: Path, data: object) -> Path:
    (tmp_path / "config.json").write_bytes(orjson.dumps(data))
    return tmp_path


def test_minimal_config_gets_bmac_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"interval": "5m", "trade_type": "usdt_perp"}))
    assert cfg.interval.name == "5m"
    assert cfg.market is UM
    assert (cfg.num_candles, cfg.funding_rate, cfg.keep_symbols, cfg.save_type) == (
        1500,
        False,
        None,
        "parquet",
    )
    assert (cfg.http_timeout_sec, cfg.candle_close_timeout_sec) == (5, 15)
    assert (cfg.num_rest_fetchers, cfg.num_socket_listeners) == (8, 8)
    assert cfg.rest_url == UM.default_rest_url
    assert cfg.ws_url == UM.default_ws_url
    assert cfg.timezone.key == "Asia/Hong_Kong"
    assert cfg.candle_dir == tmp_path / "usdt_perp_5m"
    assert cfg.exginfo_dir == tmp_path / "exginfo_5m"


def test_full_config(tmp_path: Path) -> None:
    data = {
        "interval": "1h",
        "trade_type": "coin_swap",
        "num_candles": 10000,
        "funding_rate": True,
        "keep_symbols": ["BTCUSD_PERP", "ETHUSD_PERP"],
        "save_type": "feather",
        "http_timeout_sec": 2.5,
        "candle_close_timeout_sec": 20,
        "num_rest_fetchers": 4,
        "num_socket_listeners": 2,
        "dingding": {"error": {"access_token": "t", "secret": "s"}},
        "msg_sender": {"type": "wechat_work", "error": {"webhook_url": "http://127.0.0.1:1/x"}},
        "rest_url": "http://127.0.0.1:8080/",
        "ws_url": "ws://127.0.0.1:8081",
        "timezone": "UTC",
        "nats": {"servers": ["nats://127.0.0.1:4222"], "replicas": 3},
        "publish": ["tcp://127.0.0.1:6010"],
    }
    assert set(data) == KNOWN_KEYS
    cfg = load_config(write(tmp_path, data))
    assert cfg.publish_endpoints == ("tcp://127.0.0.1:6010",)
    assert cfg.trade_type_name == "coin_swap"
    assert cfg.trade_type.name == "coin_perp"
    assert cfg.market is CM
    assert cfg.candle_dir.name == "coin_swap_1h"
    assert cfg.keep_symbols == frozenset({"BTCUSD_PERP", "ETHUSD_PERP"})
    assert cfg.rest_url == "http://127.0.0.1:8080"
    assert cfg.ws_url == "ws://127.0.0.1:8081"
    meta = cfg.to_meta()
    assert meta["save_type"] == "feather"
    assert meta["extension"] == ".fea"
    assert meta["timezone"] == "UTC"
    assert meta["trade_type"] == "coin_swap"
    assert meta["format_version"] == 1


def test_spot_accepts_1s(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"interval": "1s", "trade_type": "usdt_spot"}))
    assert cfg.market is SPOT


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"trade_type": "usdt_perp"}, ["'interval'", "missing"]),
        ({"interval": "5m"}, ["'trade_type'", "missing"]),
        (
            {"interval": "5m", "trade_type": "usdt_future"},
            ["'trade_type'", "usdt_future", "coin_swap"],
        ),
        ({"interval": "7m", "trade_type": "usdt_perp"}, ["'interval'", "7m", "15m"]),
        ({"interval": "1s", "trade_type": "usdt_perp"}, ["'interval'", "1s"]),
        ({"interval": 5, "trade_type": "usdt_perp"}, ["'interval'"]),
        (OK | {"num_candles": 0}, ["num_candles", "1 to 10000"]),
        (OK | {"num_candles": 10001}, ["num_candles", "10001"]),
        (OK | {"num_candles": True}, ["num_candles", "True"]),
        (OK | {"num_candles": "1500"}, ["num_candles"]),
        (OK | {"num_candles": None}, ["num_candles"]),
        (OK | {"funding_rate": 1}, ["funding_rate"]),
        (OK | {"keep_symbols": "BTCUSDT"}, ["keep_symbols"]),
        (OK | {"keep_symbols": []}, ["keep_symbols"]),
        (OK | {"keep_symbols": ["../x"]}, ["keep_symbols"]),
        (OK | {"save_type": "csv"}, ["save_type", "csv"]),
        (OK | {"http_timeout_sec": -1}, ["http_timeout_sec"]),
        (OK | {"http_timeout_sec": False}, ["http_timeout_sec"]),
        (OK | {"num_rest_fetchers": 1.5}, ["num_rest_fetchers"]),
        (OK | {"num_socket_listeners": 0}, ["num_socket_listeners"]),
        (OK | {"dingding": {"error": {"secret": "s"}}}, ["dingding"]),
        (OK | {"msg_sender": {"type": "slack"}}, ["msg_sender"]),
        (OK | {"msg_sender": {"type": "webhook"}}, ["msg_sender"]),
        (OK | {"rest_url": "ftp://x"}, ["rest_url", "ftp://x"]),
        (OK | {"rest_url": "http://"}, ["rest_url"]),
        (OK | {"rest_url": "http://h:99999"}, ["rest_url"]),
        (OK | {"ws_url": "http://127.0.0.1:1"}, ["ws_url"]),
        (OK | {"ws_url": "ws://h/?a=1"}, ["ws_url"]),
        (OK | {"timezone": "Mars/Base"}, ["timezone", "Mars"]),
        (OK | {"timezone": 8}, ["timezone"]),
        ([1, 2], ["JSON object"]),
    ],
)
def test_bad_config_names_key_value_and_allowed(
    tmp_path: Path, data: object, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_and_non_json_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{interval: 5m")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    "name",
    ["usdt_spot", "usdc_spot", "btc_spot", "usdt_perp", "usdc_perp", "btc_perp", "usdt_deli",
     "coin_perp", "coin_deli", "usdt_swap", "coin_swap", "usdt_tradifi_perp"],
)  # fmt: skip
def test_all_eleven_trade_types(tmp_path: Path, name: str) -> None:
    cfg = load_config(write(tmp_path, {"interval": "1m", "trade_type": name}))
    assert cfg.trade_type_name == name
    assert cfg.candle_dir.name == f"{name}_1m"


@pytest.mark.parametrize(
    "data",
    [
        # the shapes of BMAC v2's bmac_example/*/config.json.example files
        {"interval": "5m", "trade_type": "coin_perp"},
        {
            "interval": "5m",
            "trade_type": "usdt_perp",
            "num_candles": 2000,
            "funding_rate": True,
            "http_timeout_sec": 5,
            "candle_close_timeout_sec": 15,
            "save_type": "parquet",
            "num_rest_fetchers": 8,
            "num_socket_listeners": 8,
            "msg_sender": {
                "type": "wechat_work",
                "error": {
                    "access_token": "f06e5...",
                    "secret": "SEC439...",
                    "webhook_url": "https://qyapi.example/cgi-bin/webhook/send?key=xxx",
                },
            },
        },
        {
            "interval": "1h",
            "http_timeout_sec": 3,
            "candle_close_timeout_sec": 12,
            "trade_type": "usdt_spot",
            "num_candles": 10000,
            "dingding": {"error": {"access_token": "bcd2...", "secret": "SEC5..."}},
        },
        {
            "interval": "5m",
            "trade_type": "coin_perp",
            "funding_rate": True,
            "num_candles": 1000,
            "dingding": {"error": {"access_token": "f06...", "secret": "SEC439..."}},
        },
        {"interval": "1m", "trade_type": "usdt_perp", "keep_symbols": None, "timezone": None},
    ],
)
def test_bmac_example_configs_load(tmp_path: Path, data: dict[str, object]) -> None:
    cfg = load_config(write(tmp_path, data))
    assert cfg.interval.name == data["interval"]
    assert cfg.num_candles == data.get("num_candles", 1500)
    assert cfg.timezone.key == "Asia/Hong_Kong"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (OK | {"num_candle": 10}, ["'num_candle'", "ignored", "did you mean 'num_candles'?"]),
        (OK | {"intervall": "1m"}, ["'intervall'", "did you mean 'interval'?"]),
        (OK | {"my_note": "x"}, ["'my_note'", "ignored", "known keys:", "num_candles"]),
        (SPOT_OK | {"funding_rate": True}, ["'funding_rate'", "usdt_spot", "ignored"]),
    ],
)
def test_what_bmac_accepted_starts_with_a_warning(
    tmp_path: Path, data: dict[str, object], words: list[str]
) -> None:
    """BMAC ignored unknown keys and forced spot funding off: such a config must still start."""
    cfg = load_config(write(tmp_path, data))
    assert len(cfg.warnings) == 1
    for word in words:
        assert word in cfg.warnings[0]
    assert cfg.funding_rate is False
    assert cfg.interval.name == "5m"  # the unknown key changed nothing
    assert load_config(write(tmp_path, OK)).warnings == ()


def test_a_key_written_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        '{"interval": "5m", "trade_type": "usdt_perp", "interval": "1m"}'
    )
    with pytest.raises(ConfigError, match=r"'interval' appears twice \('5m' and '1m'\)"):
        load_config(tmp_path)


def test_nats_key_defaults_and_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, OK))
    assert cfg.nats is None
    cfg = load_config(write(tmp_path, {**OK, "nats": {"servers": "nats://127.0.0.1:4222"}}))
    assert cfg.nats is not None
    assert cfg.nats.servers == ("nats://127.0.0.1:4222",)
    assert (cfg.nats.stream, cfg.nats.subject_prefix, cfg.nats.replicas) == (
        "BMAC_usdt_perp_5m",
        "bmac.usdt_perp.5m",
        1,
    )
    data = {
        "servers": ["nats://a:4222", "tls://b:4223"],
        "stream": "MARKET",
        "subject_prefix": "desk.um",
        "replicas": 3,
    }
    cfg = load_config(write(tmp_path, {**OK, "nats": data}))
    assert cfg.nats is not None
    assert (cfg.nats.stream, cfg.nats.subject_prefix, cfg.nats.replicas) == ("MARKET", "desk.um", 3)


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        "nats://127.0.0.1:4222",
        {"servers": []},
        {"servers": ["http://127.0.0.1:4222"]},
        {"servers": ["nats://"]},
        {"servers": ["nats://h:4222"], "stream": "a.b"},
        {"servers": ["nats://h:4222"], "stream": "a b"},
        {"servers": ["nats://h:4222"], "subject_prefix": "bmac.>"},
        {"servers": ["nats://h:4222"], "subject_prefix": "bmac..x"},
        {"servers": ["nats://h:4222"], "replicas": 0},
        {"servers": ["nats://h:4222"], "replicas": True},
        {"servers": ["nats://h:4222"], "server": "typo"},
    ],
)
def test_bad_nats_key_is_refused_with_its_name(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="'nats'"):
        load_config(write(tmp_path, {**OK, "nats": value}))


def test_config_without_nats_loads_no_nats_code(tmp_path: Path) -> None:
    import subprocess
    import sys

    write(tmp_path, OK)
    code = (
        "import sys; from bmac_trio.store.config import load_config; "
        f"load_config({str(tmp_path)!r}); "
        "import bmac_trio.recorder.service; "
        "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith('bmac_trio.bus.n')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
