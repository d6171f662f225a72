"""`pip install .` brings no numpy (pandas and numpy are extras): the recorder must still write
candle files with pandas' index metadata. Found when the README's first command hung: every
write raised inside pyarrow's ``to_pandas_dtype`` and the demo never completed a period."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
sys.modules["numpy"] = None  # as in a plain `pip install .`: importing numpy fails
from datetime import datetime, timezone
from pathlib import Path
import polars as pl
from bmac_trio.store.atomic import write_frame_atomic

t = datetime(2026, 1, 1, tzinfo=timezone.utc)
df = pl.DataFrame(
    {"candle_begin_time": [t], "candle_end_time": [t], "close": [1.5], "trade_num": [3]},
    schema_overrides={"candle_begin_time": pl.Datetime("ms", "UTC"),
                      "candle_end_time": pl.Datetime("ms", "UTC")},
)
out = Path(sys.argv[1])
write_frame_atomic(df, out / "X.pqt", "parquet", pandas_index="candle_end_time")
write_frame_atomic(df, out / "X.fea", "feather", pandas_index="candle_end_time")
print(pl.read_parquet((out / "X.pqt").read_bytes())["close"][0])
"""


def test_candle_files_are_written_without_numpy(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "1.5"
    assert (tmp_path / "X.fea").stat().st_size > 0
