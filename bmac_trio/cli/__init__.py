"""The ``bmac-trio`` command line: thin, lazily-loaded subcommands.

Each subcommand lives beside the part it drives and is imported only when used, so
``bmac-trio sim --help`` does not load polars and ``bmac-trio status`` does not load the
simulator. Business logic never lives here: each command is a thin call into
:mod:`bmac_trio.recorder`, :mod:`bmac_trio.ops`, :mod:`bmac_trio.sim` or ``bmac_kit``.

May import: every package of ``bmac_trio`` and ``bmac_kit``; nothing imports it.
"""

from __future__ import annotations

import sys

import cyclopts

from bmac_trio import __version__

app = cyclopts.App(
    name="bmac-trio",
    help="Keep a rolling window of Binance candles for a whole market on local disk.",
    version=__version__,
)
app.command("bmac_trio.sim._cli:sim", name="sim")
app.command("bmac_trio.cli.run:run", name="run")
app.command("bmac_trio.cli.run:check", name="check")
app.command("bmac_trio.cli.ops:status", name="status")
app.command("bmac_trio.cli.ops:demo", name="demo")
app.command("bmac_kit._cli:hourly", name="hourly")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bmac-trio`` console script; exits with the command's status."""
    result = app(argv if argv is not None else sys.argv[1:], result_action="return_value")
    if isinstance(result, int) and result:
        sys.exit(result)
