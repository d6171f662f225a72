"""The NATS messages of the market: subjects, headers, bodies and de-duplication ids.

Pure (no I/O, no NATS client), so the recorder, the follower, ``bmac_kit`` and other languages
agree on one description (docs/nats.md). Subjects under the configured prefix ``P``:

* ``P.candle.<SYMBOL>`` — one closed candle, JSON ``{"symbol", "open_ms", "open", ...}`` (the
  :class:`~bmac_trio.binance.candles.Candle` fields; floats written shortest-exact).
* ``P.period`` — a period report, JSON ``{"run_time_ms", "complete", "missing", "final",
  "lag_ms"}`` (published after the candles it names, so a consumer has them already).
* ``P.symbols`` — a new selection, JSON ``{"run_time_ms", "symbols"}``.
* ``P.exginfo`` — ``exginfo.pqt``'s frame as an Arrow IPC stream; header ``Bmac-Run-Time``.
* ``P.retired`` — JSON ``{"symbol"}``: its file was moved into ``_delisted/``.
* ``P.meta`` — ``bmac_meta.json`` (interval, trade type, save type, time zone, num_candles).

Headers: ``Bmac-Schema`` (:data:`SCHEMA_VERSION`), ``Bmac-Kind``, ``Bmac-Epoch`` (new at every
recorder start) and ``Nats-Msg-Id``, derived from the content (a candle: symbol and open time)
so that JetStream drops what a restarted recorder publishes twice.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from bmac_trio.binance.candles import FLOAT_COLUMNS, Candle
from bmac_trio.binance.symbols import is_safe_symbol
from bmac_trio.errors import RemoteProtocolError

__all__ = [
    "SCHEMA_VERSION",
    "Decoded",
    "Kind",
    "Outgoing",
    "PeriodNote",
    "candle_message",
    "decode",
    "exginfo_message",
    "meta_message",
    "period_message",
    "retired_message",
    "symbols_message",
]

SCHEMA_VERSION: Final = 1
Kind = Literal["candle", "period", "symbols", "exginfo", "retired", "meta"]
_FIELDS: Final = ("symbol", "open_ms", *FLOAT_COLUMNS)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: subject below the prefix, de-duplication id, body, kind."""

    suffix: str
    msg_id: str
    body: bytes
    kind: Kind
    #: Extra headers (``Bmac-Run-Time`` of exginfo).
    extra: tuple[tuple[str, str], ...] = ()

    def headers(self, epoch: str) -> dict[str, str]:
        """The NATS headers of this message from a publisher started at ``epoch``."""
        return {
            "Nats-Msg-Id": self.msg_id,
            "Bmac-Schema": str(SCHEMA_VERSION),
            "Bmac-Kind": self.kind,
            "Bmac-Epoch": epoch,
            **dict(self.extra),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodNote:
    """A decoded ``period`` message."""

    run_time_ms: int
    complete: tuple[str, ...]
    missing: tuple[str, ...]
    final: bool
    lag_ms: float | None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded message: its kind and value (Candle, PeriodNote, frozenset, frame, str, dict)."""

    kind: Kind
    value: Any
    run_time_ms: int | None = None


def candle_message(candle: Candle) -> Outgoing:
    """``P.candle.<SYMBOL>``, id ``c.<SYMBOL>.<open_ms>``."""
    body = orjson.dumps({name: getattr(candle, name) for name in _FIELDS})
    return Outgoing(
        f"candle.{candle.symbol}", f"c.{candle.symbol}.{candle.open_ms}", body, "candle"
    )


def period_message(
    run_time_ms: int,
    *,
    complete: Any,
    missing: Any,
    final: bool,
    lag_ms: float | None,
) -> Outgoing:
    """``P.period``; the id names the report's content, so a repeat is dropped."""
    complete, missing = sorted(complete), sorted(missing)
    body = orjson.dumps(
        {
            "run_time_ms": run_time_ms,
            "complete": complete,
            "missing": missing,
            "final": final,
            "lag_ms": lag_ms,
        }
    )
    digest = _digest(orjson.dumps([complete, missing]))
    return Outgoing("period", f"p.{run_time_ms}.{int(final)}.{digest}", body, "period")


def symbols_message(run_time_ms: int, symbols: frozenset[str]) -> Outgoing:
    """``P.symbols``: the selection from ``run_time_ms`` on."""
    names = sorted(symbols)
    body = orjson.dumps({"run_time_ms": run_time_ms, "symbols": names})
    return Outgoing("symbols", f"s.{run_time_ms}.{_digest(orjson.dumps(names))}", body, "symbols")


def exginfo_message(run_time_ms: int, frame: Any) -> Outgoing:
    """``P.exginfo``: the polars frame as an Arrow IPC stream."""
    buffer = io.BytesIO()
    frame.write_ipc_stream(buffer)
    body = buffer.getvalue()
    return Outgoing(
        "exginfo",
        f"x.{run_time_ms}.{_digest(body)}",
        body,
        "exginfo",
        (("Bmac-Run-Time", str(run_time_ms)),),
    )


def retired_message(symbol: str, last_open_ms: int | None) -> Outgoing:
    """``P.retired``: ``symbol``'s file went to ``_delisted/``."""
    body = orjson.dumps({"symbol": symbol, "last_open_ms": last_open_ms})
    return Outgoing("retired", f"r.{symbol}.{last_open_ms}", body, "retired")


def meta_message(meta: dict[str, Any]) -> Outgoing:
    """``P.meta``: what a follower needs to write the same files."""
    body = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS)
    return Outgoing("meta", f"m.{_digest(body)}", body, "meta")


def decode(suffix: str, headers: dict[str, str] | None, body: bytes) -> Decoded:
    """A message received under the prefix (``suffix`` = subject without ``P.``).

    Raises:
        RemoteProtocolError: an unknown kind, a newer schema, or a malformed body.
    """
    headers = headers or {}
    schema = headers.get("Bmac-Schema", str(SCHEMA_VERSION))
    if schema != str(SCHEMA_VERSION):
        raise RemoteProtocolError(f"NATS message schema {schema!r} is not {SCHEMA_VERSION}")
    kind = suffix.split(".", 1)[0]
    try:
        if kind == "candle":
            data = orjson.loads(body)
            candle = Candle(**{name: data[name] for name in _FIELDS})
            if not is_safe_symbol(candle.symbol) or suffix != f"candle.{candle.symbol}":
                raise ValueError(f"subject {suffix} does not match {candle.symbol!r}")
            return Decoded("candle", candle)
        if kind == "period":
            data = orjson.loads(body)
            note = PeriodNote(
                run_time_ms=int(data["run_time_ms"]),
                complete=tuple(data["complete"]),
                missing=tuple(data["missing"]),
                final=bool(data["final"]),
                lag_ms=data["lag_ms"],
            )
            return Decoded("period", note, note.run_time_ms)
        if kind == "symbols":
            data = orjson.loads(body)
            return Decoded("symbols", frozenset(data["symbols"]), int(data["run_time_ms"]))
        if kind == "exginfo":
            import polars as pl

            frame = pl.read_ipc_stream(io.BytesIO(body))
            return Decoded("exginfo", frame, int(headers["Bmac-Run-Time"]))
        if kind == "retired":
            data = orjson.loads(body)
            if not is_safe_symbol(data["symbol"]):
                raise ValueError(f"unsafe symbol {data['symbol']!r}")
            return Decoded("retired", data["symbol"])
        if kind == "meta":
            return Decoded("meta", orjson.loads(body))
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise RemoteProtocolError(f"malformed NATS {kind} message: {exc!r}") from None
    raise RemoteProtocolError(f"unknown NATS message subject {suffix!r}")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()
