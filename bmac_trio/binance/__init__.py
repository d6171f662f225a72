"""What Binance is, sans-IO: markets, intervals, request weights, the REST/WebSocket protocol.

Pure functions and small state objects that turn Binance's bytes and JSON into typed values and
back (the h11/wsproto model): market definitions and trade types, interval alignment, symbol
names safe as file names, kline decoding and checks, exchangeInfo selection, weight-optimal
paging. Tested without sockets.

May import: :mod:`bmac_trio.errors` only (and polars/orjson for frames). Never trio, httpx,
trio-websocket or the disk.
"""
