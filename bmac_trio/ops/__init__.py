"""Operations: what the recorder reports to people and machines.

Alerts and their sinks (DingDing, WeChat Work, webhooks, rate limited), Prometheus metrics and
the ``bmac_status.json`` tracker behind ``bmac-trio status``. The recorder reports into these;
they know nothing of the recorder's tasks.

May import: :mod:`bmac_trio.errors`, :mod:`bmac_trio.clock`, :mod:`bmac_trio.binance`,
:mod:`bmac_trio.store`. Never :mod:`bmac_trio.recorder` or the CLI.
"""
