"""The soak's consumer: a separate process that reads random symbol files while they are written.

Run as a script (``python _reader.py CANDLE_DIR SAVE_TYPE NUM_CANDLES STOP_FILE``). Until
``STOP_FILE`` exists it picks random data files and reads each with polars, alternating the two
ways a consumer reads: from one open handle (the storage contract's reader rule) and by path. It
also picks random ready files and checks that the data file already holds the candle ending at
the ready file's period (unless that candle has already rolled out of the window). At the end
it prints one JSON object of counts on stdout:

* ``reads``: files read; ``vanished``: gone between listing and reading (moved aside);
* ``torn``: reads that raised (a partial or mixed file), a polars panic included (a
  ``BaseException``: by path, polars may read two different files); ``schema``: readable
  files that break the contract (schema, order, uniqueness, length);
* ``ready_checks`` / ``ready_violations``: ready files whose data file lacked their candle.
"""

from __future__ import annotations

import io
import os
import random
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import polars as pl

from bmac_trio.store.layout import CANDLE_SCHEMA

_READY_RE = re.compile(r"^(?P<symbol>.+)_(?P<label>\d{8}_\d{6})\.ready$")


def _read(path: Path, save_type: str, by_path: bool) -> pl.DataFrame:
    if by_path:
        return pl.read_parquet(path) if save_type == "parquet" else pl.read_ipc(path)
    with open(path, "rb") as f:
        data = io.BytesIO(f.read())
    return pl.read_parquet(data) if save_type == "parquet" else pl.read_ipc(data)


def _problem(frame: pl.DataFrame, num_candles: int) -> str | None:
    if frame.schema != CANDLE_SCHEMA:
        return f"schema {dict(frame.schema)}"
    if frame.height == 0 or frame.height > num_candles:
        return f"{frame.height} rows"
    opens = frame["candle_begin_time"].dt.epoch("ms")
    if frame.height > 1 and not bool((opens.diff().drop_nulls() > 0).all()):
        return "not sorted/unique"
    return None


def _label_ms(label: str, tz: ZoneInfo) -> int:
    return int(datetime.strptime(label, "%Y%m%d_%H%M%S").replace(tzinfo=tz).timestamp() * 1000)


def main(argv: list[str]) -> int:
    directory, save_type = Path(argv[0]), argv[1]
    num_candles, stop_file = int(argv[2]), Path(argv[3])
    tz = ZoneInfo(argv[4] if len(argv) > 4 else "Asia/Hong_Kong")
    pause_s = float(argv[5]) if len(argv) > 5 else 0.01
    ext = ".pqt" if save_type == "parquet" else ".fea"
    rng = random.Random(os.getpid())
    counts = dict.fromkeys(
        ("reads", "reads_by_path", "vanished", "torn", "torn_by_path", "schema"), 0
    ) | {"ready_checks": 0, "ready_violations": 0}
    examples: list[str] = []
    files: list[str] = []
    readies: list[str] = []
    n = 0
    while not stop_file.exists():
        if n % 50 == 0:
            names = os.listdir(directory) if directory.exists() else []
            files = [x for x in names if x.endswith(ext) and not x.startswith(".")]
            readies = [x for x in names if x.endswith(".ready")]
        n += 1
        time.sleep(pause_s)
        if not files:
            continue
        by_path = n % 2 == 0
        if readies and n % 5 == 0:
            name = rng.choice(readies)
            m = _READY_RE.match(name)
            if m is None or not (directory / name).exists():
                continue
            run_time = _label_ms(m["label"], tz)
            path = directory / f"{m['symbol']}{ext}"
        else:
            run_time = None
            path = directory / rng.choice(files)
        try:
            frame = _read(path, save_type, by_path)
        except FileNotFoundError:
            counts["vanished"] += 1
            continue
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # any failure to parse is a torn or unreadable file
            # polars may *panic* on a file replaced between its two opens of the path:
            # pyo3_runtime.PanicException derives from BaseException, not Exception
            counts["torn_by_path" if by_path else "torn"] += 1
            if len(examples) < 10:
                examples.append(f"{path.name}: {type(exc).__name__}: {exc}"[:300])
            continue
        counts["reads_by_path" if by_path else "reads"] += 1
        problem = _problem(frame, num_candles)
        if problem is not None:
            counts["schema"] += 1
            if len(examples) < 10:
                examples.append(f"{path.name}: {problem}")
            continue
        if run_time is not None:
            counts["ready_checks"] += 1
            ends = frame["candle_end_time"].dt.epoch("ms")
            held = bool((ends == run_time).any())
            if not held and int(ends.min()) <= run_time:  # type: ignore[arg-type]
                counts["ready_violations"] += 1
                if len(examples) < 10:
                    examples.append(f"{path.name}: ready for {run_time}, last end {ends.max()}")
    sys.stdout.write(orjson.dumps(counts | {"examples": examples}).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
