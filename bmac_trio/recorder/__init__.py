"""The recorder service: the trio tasks that keep a market's candles on disk.

Nursery wiring (:mod:`.service`), the dispatcher that alone owns the disk and its collaborators
(roster, writer, period reporter, history progress), the pure book of what each period still
needs, the WebSocket listeners, the REST fetchers and the period alarm, connected by bounded
memory channels.

May import: :mod:`bmac_trio.errors`, :mod:`bmac_trio.clock`, :mod:`bmac_trio.binance`,
:mod:`bmac_trio.store`, :mod:`bmac_trio.ops`. Never the CLI or the simulator.
"""
