"""The factor modules bundled with ``bmac_kit``: one module per factor, ``<Name>.py``.

The calculators look a factor up in the user's package first (``package='factor'``, BMAC's
default: the ``factor/`` folder beside the strategy) and fall back to these, so a user's module
wins on a name clash and the bundled ones stay reachable. The wheel installs no top-level
``factor`` package; the repository's ``factor/`` is a user-style package that extends its
path to this one.

Each module defines ``expr(n) -> pl.Expr``, a polars expression over the candle columns of
*one* symbol (sorted by time), and documents its formula. The all-market calculator evaluates
every factor for every symbol in one lazy query by wrapping each expression in
``.over("symbol")``. Rolling windows need ``n`` candles: the first ``n - 1`` rows are null.

Optionally ``lookback(n) -> int`` says how many of the newest rows the newest value depends
on; the all-market calculator (which only needs the newest row) then evaluates that factor on
each symbol's last ``lookback`` rows instead of the whole history. A factor without it (like
``Ema``, whose value depends on every row) is evaluated on the whole history.

Each module also has BMAC's ``signal(df, n, factor_name)`` (a pandas frame in, the frame with
the factor column out), built from ``expr``, so old scripts calling it directly still work.
BMAC users' own pandas modules (only ``signal``) are loaded as they are.
"""
