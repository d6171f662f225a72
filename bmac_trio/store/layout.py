"""The data-directory contract: where every file lives and what the candle files hold.

The recorder writes this layout and ``bmac_kit`` reads it; both import these names so they
cannot drift apart. It is BMAC v2's layout (so its users can switch) plus a metadata file, one
manifest per period and a place for delisted history::

    <base>/config.json
    <base>/.bmac.lock                       held by the running recorder
    <base>/bmac_status.json                 what `bmac-trio status` shows
    <base>/<trade_type>_<interval>/
        bmac_meta.json                      format version, interval, trade type, save type, tz
        <SYMBOL>.pqt | <SYMBOL>.fea         closed candles, sorted, unique, the last num_candles
        <SYMBOL>_<YYYYmmdd_HHMMSS>.ready    the period end the data file now includes
        _periods/<YYYYmmdd_HHMMSS>.json     per-period manifest: complete and missing symbols
        _delisted/<SYMBOL>.<ext>            history of symbols that stopped trading
        _other_save_type/<SYMBOL>.<ext>     files of the previous save_type, once adopted
    <base>/exginfo_<interval>/
        bmac_meta.json
        exginfo.pqt + exginfo_<ts>.ready
        funding.pqt + funding_<ts>.ready    with funding_rate
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo

from bmac_trio.binance.candles import (
    CANDLE_COLUMNS as CANDLE_COLUMNS,
    CANDLE_SCHEMA as CANDLE_SCHEMA,
    FLOAT_COLUMNS as FLOAT_COLUMNS,
)

__all__ = [
    "CANDLE_COLUMNS",
    "CANDLE_SCHEMA",
    "DEFAULT_TIMEZONE",
    "DELISTED_DIR",
    "EXTENSIONS",
    "FLOAT_COLUMNS",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "MANIFEST_DIR",
    "META_FILE",
    "OTHER_SAVE_TYPE_DIR",
    "STATUS_FILE",
    "SaveType",
    "candle_dir",
    "data_file",
    "exginfo_dir",
    "manifest_path",
    "ready_file",
    "run_time_label",
]

FORMAT_VERSION: Final = 1
SaveType = Literal["parquet", "feather"]
EXTENSIONS: Final[dict[str, str]] = {"parquet": ".pqt", "feather": ".fea"}
#: BMAC v2 names ready files in Hong Kong time; the config's ``timezone`` key overrides it.
DEFAULT_TIMEZONE: Final = "Asia/Hong_Kong"

META_FILE: Final = "bmac_meta.json"
STATUS_FILE: Final = "bmac_status.json"
LOCK_FILE: Final = ".bmac.lock"
MANIFEST_DIR: Final = "_periods"
DELISTED_DIR: Final = "_delisted"
#: Where a start moves data files of the other save type after adopting them as history.
OTHER_SAVE_TYPE_DIR: Final = "_other_save_type"


def candle_dir(base: Path, trade_type: str, interval: str) -> Path:
    """``<base>/<trade_type>_<interval>``, named after the trade type the user wrote."""
    return base / f"{trade_type}_{interval}"


def exginfo_dir(base: Path, interval: str) -> Path:
    """``<base>/exginfo_<interval>``."""
    return base / f"exginfo_{interval}"


def data_file(directory: Path, symbol: str, save_type: SaveType) -> Path:
    """The candle file of ``symbol`` (the caller has checked the name is safe)."""
    return directory / f"{symbol}{EXTENSIONS[save_type]}"


def run_time_label(run_time_ms: int, tz: ZoneInfo) -> str:
    """A period end as BMAC names it in files: ``YYYYmmdd_HHMMSS`` in the zone ``tz``."""
    return datetime.fromtimestamp(run_time_ms / 1000, tz).strftime("%Y%m%d_%H%M%S")


def ready_file(directory: Path, symbol: str, run_time_ms: int, tz: ZoneInfo) -> Path:
    """``<SYMBOL>_<YYYYmmdd_HHMMSS>.ready``: this symbol's file includes the period ending then."""
    return directory / f"{symbol}_{run_time_label(run_time_ms, tz)}.ready"


def manifest_path(directory: Path, run_time_ms: int, tz: ZoneInfo) -> Path:
    """The manifest of the period that ends at ``run_time_ms``."""
    return directory / MANIFEST_DIR / f"{run_time_label(run_time_ms, tz)}.json"
