"""Candles: the typed value every source produces, the checks of Binance's numbers, and the
frame with exactly ``CANDLE_SCHEMA``. Pure; shared by the WebSocket and REST decoders in
``_protocol`` (which re-exports :class:`Candle` and :func:`candles_to_frame`).

The checks turn anything malformed or hostile into :class:`RemoteProtocolError` with a short
message naming the field and the bad value: decimals must be strings of finite, non-negative,
sane numbers (no NaN, infinities, negatives, or values above :data:`MAX_DECIMAL`), times
non-negative integers before the year 2500, symbols safe as file names, candles on the
interval's grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import polars as pl

from bmac_trio.binance.intervals import Interval, parse_interval
from bmac_trio.binance.symbols import is_safe_symbol
from bmac_trio.errors import RemoteProtocolError

__all__ = [
    "CANDLE_COLUMNS",
    "CANDLE_SCHEMA",
    "FLOAT_COLUMNS",
    "MAX_COUNT",
    "MAX_DECIMAL",
    "MAX_TIME_MS",
    "Candle",
    "candles_to_frame",
    "epoch_ms",
]

FLOAT_COLUMNS: Final = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_num",
    "taker_buy_base_asset_volume",
    "taker_buy_quote_asset_volume",
)
CANDLE_COLUMNS: Final = ("candle_begin_time", "candle_end_time", *FLOAT_COLUMNS)
_TIME = pl.Datetime("ms", "UTC")
#: Every candle file has exactly this schema. ``trade_num`` is a float, as in BMAC, so that
#: pandas-style factor code written for BMAC keeps working unchanged.
CANDLE_SCHEMA: Final = pl.Schema(
    {"candle_begin_time": _TIME, "candle_end_time": _TIME}
    | {name: pl.Float64 for name in FLOAT_COLUMNS}
)

#: Largest decimal value we accept for a price or volume (well above any real market).
MAX_DECIMAL: Final = 1e20
#: Epoch milliseconds must fall before the year 2500.
MAX_TIME_MS: Final = 16_725_225_600_000
#: Trade counts and ids must stay below 2**53 (exact in a float64).
MAX_COUNT: Final = 2**53
_MAX_TEXT: Final = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Candle:
    """One kline, prices and volumes parsed from Binance's decimal strings."""

    symbol: str
    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    #: A float, as in BMAC's files.
    trade_num: float
    taker_buy_base_asset_volume: float
    taker_buy_quote_asset_volume: float


# --------------------------------------------------------------------------- helpers


def _fail(what: str, value: object = None) -> RemoteProtocolError:
    text = repr(value)
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 3] + "..."
    return RemoteProtocolError(f"{what}: {text}" if value is not None else what)


def _loads(data: str | bytes | bytearray | memoryview, what: str) -> Any:
    try:
        return orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise _fail(f"{what} is not valid JSON ({exc})") from None


def _as_interval(interval: Interval | str) -> Interval:
    if isinstance(interval, Interval):
        return interval
    try:
        return parse_interval(interval)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _dec(value: object, field: str) -> float:
    """A Binance decimal string as a finite, non-negative, sane float."""
    if type(value) is not str or not 0 < len(value) <= 64:
        raise _fail(f"{field} must be a decimal string", value)
    try:
        number = float(value)
    except ValueError:
        raise _fail(f"{field} is not a decimal", value) from None
    if not 0.0 <= number <= MAX_DECIMAL:  # also false for NaN
        raise _fail(f"{field} is out of range", value)
    return number


def _int(value: object, field: str, hi: int = MAX_COUNT) -> int:
    if type(value) is not int or not 0 <= value < hi:
        raise _fail(f"{field} must be a non-negative integer", value)
    return value


def _ms(value: object, field: str) -> int:
    return _int(value, field, MAX_TIME_MS)


def _symbol(value: object, field: str = "symbol") -> str:
    if not is_safe_symbol(value):
        raise _fail(f"{field} is not a safe symbol name", value)
    assert isinstance(value, str)
    return value


def _check_grid(interval: Interval, open_ms: int, close_ms: int, where: str) -> None:
    if not interval.is_aligned(open_ms):
        raise _fail(f"{where}: open time is not on the {interval.name} grid", open_ms)
    if close_ms != interval.close_time(open_ms):
        raise _fail(f"{where}: close time does not match open time {open_ms}", close_ms)


# --------------------------------------------------------------------------- frames


def candles_to_frame(candles: Sequence[Candle], interval: Interval | str) -> pl.DataFrame:
    """Candles as a frame with exactly :data:`CANDLE_SCHEMA`, in the given order.

    Built column by column (no per-row dicts), so 1500 candles take well under a millisecond.
    """
    iv = _as_interval(interval)
    begins = [c.open_ms for c in candles]
    if iv.months:
        ends = [iv.end(t) for t in begins]
        end_series = pl.Series("candle_end_time", ends, dtype=pl.Int64)
    else:
        end_series = pl.Series("candle_end_time", begins, dtype=pl.Int64) + iv.ms
    columns = [
        pl.Series("candle_begin_time", begins, dtype=pl.Int64).cast(
            CANDLE_SCHEMA["candle_begin_time"]
        ),
        end_series.cast(CANDLE_SCHEMA["candle_end_time"]).alias("candle_end_time"),
    ]
    columns.extend(
        pl.Series(name, [getattr(c, name) for c in candles], dtype=pl.Float64)
        for name in FLOAT_COLUMNS
    )
    return pl.DataFrame(columns)


def epoch_ms(times: pl.Series) -> pl.Series:
    """A candle time column as Int64 epoch milliseconds (``to_numpy()`` of it is copy-free).

    A cast, not ``dt.epoch`` or ``to_physical``: both run a query through polars' engine,
    70-250 us a call, and the recorder asked for a symbol's newest time twice on every write.
    No numpy: the recorder does not need it.
    """
    if getattr(times.dtype, "time_unit", None) == "ms":
        return times.cast(pl.Int64)
    return times.dt.epoch("ms")
