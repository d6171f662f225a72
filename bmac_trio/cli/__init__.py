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
#: One line per command for ``bmac-trio --help``: a lazy command's docstring is not read
#: until the command runs, so the listing needs its summary here.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "bmac_trio.cli.run:run",
        "Record the market of BASE_DIR/config.json, live, until SIGINT/SIGTERM.",
    ),
    "check": (
        "bmac_trio.cli.run:check",
        "Check config.json, the paths run needs and the data files; say what is wrong.",
    ),
    "status": (
        "bmac_trio.cli.ops:status",
        "Show what the recorder of BASE_DIR is doing; exit 0 only when it is healthy.",
    ),
    "hourly": (
        "bmac_kit._cli:hourly",
        "Build 1h candles for each 5-minute offset from a 5m data directory.",
    ),
    "demo": (
        "bmac_trio.cli.ops:demo",
        "Watch bmac-trio record a simulated exchange on a 30x clock.",
    ),
    "tail": (
        "bmac_trio.cli.tail:tail",
        "Print the live bus's messages of a data directory or endpoint; flag lost ones.",
    ),
    "follow": (
        "bmac_trio.cli.follow:follow",
        "Keep BASE_DIR's files from a NATS JetStream stream (another host's recorder).",
    ),
    "sim": (
        "bmac_trio.sim._cli:sim",
        "Serve a simulated Binance market (REST and WebSocket) for tests and demos.",
    ),
}
for _name, (_target, _summary) in COMMANDS.items():
    app.command(_target, name=_name, help=_summary)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``bmac-trio`` console script; exits with the command's status."""
    args = argv if argv is not None else sys.argv[1:]
    if args and args[0] in COMMANDS:
        # running (or asking help of) one command: its whole docstring, exit statuses included
        app[args[0]].help = None
    result = app(args, result_action="return_value")
    if isinstance(result, int) and result:
        sys.exit(result)
