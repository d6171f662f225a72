"""Factor modules for ``bmac_kit``: one module per factor, ``factor/<Name>.py``.

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
