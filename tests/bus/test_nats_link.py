"""The nats-py adapter against a real server: what it reads back is text, whatever the symbol."""

from __future__ import annotations

from bmac_trio.bus.aio_bridge import AsyncioThread
from bmac_trio.bus.messages import candle_msg_id
from bmac_trio.bus.nats_link import JetStreamLink, StreamSettings
from bmac_trio.bus.nats_server import NatsServer

SYMBOL = "币安人生USDT"
OPEN_MS = 1_767_225_600_000


async def test_last_candle_of_a_non_ascii_symbol_is_read_back_as_text(
    nats_server: NatsServer,
) -> None:
    # nats-py's stream-message API hands non-ASCII header values back as email Header objects:
    # a restarted recorder crashed asking where 币安人生USDT's candles end in the stream
    settings = StreamSettings(name="T", prefix="t.um.1m", max_age_s=3600.0)
    link = JetStreamLink([nats_server.url], settings)
    msg_id = candle_msg_id(SYMBOL, OPEN_MS)
    async with AsyncioThread("test-link") as aio:
        await aio.run(link.connect)
        try:
            await aio.run(link.ensure_stream)
            headers = {"Nats-Msg-Id": msg_id, "Bmac-Header": f'{{"symbol":"{SYMBOL}"}}'}
            stored, error = await aio.run(
                link.publish_batch, [(f"candle.{SYMBOL}", b"{}", headers)], 5.0
            )
            assert (stored, error) == (1, None)
            assert await aio.run(link.last_opens, [SYMBOL, "BTCUSDT"]) == {
                SYMBOL: OPEN_MS,
                "BTCUSDT": None,
            }
            last = await aio.run(link.last_of, f"candle.{SYMBOL}")
            assert last is not None
            assert last.headers == headers
        finally:
            await aio.run(link.close)
