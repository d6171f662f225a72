"""Nothing lost, in CI: the soak harness on a short simulated day (and the full day, marked).

The short run: an hour and a half of 1m candles for 60 USDⓈ-M symbols at 90x, every fault
kind injected, two SIGKILLs of the recorder process with cron-style restarts, one cron copy
started while the recorder runs, a reader process reading all along. It takes about 60 s
of wall time on two cores (the suite's longest test: two hours took 80 s).
``python scripts/soak.py`` runs the full day and prints the figures; ``pytest -m soak`` runs it
here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._harness import FAULT_KINDS, SoakConfig, SoakResult, run_soak


def _assert_nothing_lost(result: SoakResult) -> None:
    print("\n".join(result.lines()))
    c, r = result.check, result.reader
    assert result.caught_up
    assert result.final_exit == 0
    assert result.unexpected_exits == []
    assert result.kills == result.config.kills
    assert result.restarts >= 1
    assert all(code == 0 for code in result.cron_duplicate_exits)
    for kind in FAULT_KINDS:
        assert result.faults_injected[kind] >= 1, kind
    assert result.rest_by_status.get(418, 0) >= 1  # the ban was felt...
    assert result.self_inflicted_bans == 0  # ...and never earned
    assert c.symbols_checked >= result.config.symbols
    assert c.candles_checked > 0.9 * result.config.symbols * result.config.num_candles
    assert r["reads"] > 100
    assert r["ready_checks"] > 10
    assert c.manifests_checked > 10
    # the three zeros, delisted symbols included (their files kept aside are complete), and
    # every announcement true
    assert c.missing == 0, c.examples
    assert c.missing_delisted == 0, c.examples
    assert c.wrong == 0, c.examples
    assert c.extra == 0, c.examples
    assert result.torn == 0, r
    assert c.ready_violations == 0
    assert r["ready_violations"] == 0
    assert c.manifest_violations == 0
    assert c.not_moved_aside == 0


async def test_soak_short(tmp_path: Path) -> None:
    cfg = SoakConfig(
        workdir=tmp_path,
        hours=1.5,
        symbols=60,
        speed=90.0,
        seed=3,
        num_candles=300,
        fault_every_min=4.0,
        kills=2,
        cron_duplicates=1,
        catch_up_s=60.0,
        progress=False,
    )
    _assert_nothing_lost(await run_soak(cfg))


@pytest.mark.soak
async def test_soak_full_day(tmp_path: Path) -> None:
    _assert_nothing_lost(await run_soak(SoakConfig(workdir=tmp_path, speed=40.0)))
