"""Nothing lost: a simulated day of faults against a recorder killed and restarted like cron.

The simulator runs in this process on an accelerated shared clock; the recorder runs as
``bmac-trio run DIR --clock SPEC`` (SIGKILLed at random moments, restarted by a cron-like
tick); a reader process reads random files all along. At the end every candle on disk is
compared with the simulator's ground truth, and every ready file and period manifest with the
data it announces. See ``tests/soak/_harness.py``. Exit status 0 only when nothing is missing,
wrong or torn::

    python scripts/soak.py --hours 24 --symbols 200 --interval 1m --speed 120 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "soak"))

from _harness import SoakConfig, run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--interval", default="1m")
    parser.add_argument("--speed", type=float, default=120.0, help="exchange seconds per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--num-candles", type=int, default=1500)
    parser.add_argument("--save-type", choices=("parquet", "feather"), default="parquet")
    parser.add_argument("--fault-every-min", type=float, default=5.0)
    parser.add_argument("--kills", type=int, default=8, help="SIGKILLs over the run")
    parser.add_argument("--close-timeout", type=float, default=15.0)
    parser.add_argument("--catch-up", type=float, default=180.0, help="real seconds at the end")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bmac-soak-"))
    cfg = SoakConfig(
        workdir=workdir,
        hours=args.hours,
        symbols=args.symbols,
        interval=args.interval,
        speed=args.speed,
        seed=args.seed,
        num_candles=args.num_candles,
        save_type=args.save_type,
        fault_every_min=args.fault_every_min,
        kills=args.kills,
        close_timeout_s=args.close_timeout,
        catch_up_s=args.catch_up,
    )
    print(f"soak in {workdir} (recorder log: {workdir / 'recorder.log'})", flush=True)
    result = trio.run(run_soak, cfg)
    for line in result.lines():
        print(line)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
