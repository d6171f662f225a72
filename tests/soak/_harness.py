"""The soak: a simulated day of faults against a recorder that is killed and restarted like cron.

One trio program (:func:`run_soak`) owns everything on one :class:`ScaledWallClock`:

* the simulator, in this process (its faults and ground truth are at hand);
* the recorder, a subprocess ``bmac-trio run DIR --clock SPEC`` sharing the clock, SIGKILLed at
  random moments (half of them just after a period boundary, while the closing writes run);
  a cron tick starts it again at the next minute (plus a random outage), and now and then starts
  a second copy that must exit 0 at once because the lock is held;
* a reader subprocess (``_reader.py``) reading random files the whole time;
* a fault injector: every few simulated minutes one fault, so that each kind happens.

At the end the faults and kills stop, the recorder is given time to catch up, stopped with
SIGTERM, and :func:`._check.check_directory` compares the disk with the exchange's truth.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import trio

from bmac_trio.binance.intervals import parse_interval
from bmac_trio.clock import ScaledWallClock
from bmac_trio.sim import SimConfig, open_simulator
from bmac_trio.store.layout import DEFAULT_TIMEZONE, LOCK_FILE, candle_dir, manifest_path

try:
    from ._check import CheckResult, check_directory, is_recorded_um_usdt_perp
except ImportError:  # loaded as a top-level module by scripts/soak.py
    from _check import CheckResult, check_directory, is_recorded_um_usdt_perp  # type: ignore[no-redef]

__all__ = ["FAULT_KINDS", "SoakConfig", "SoakResult", "run_soak"]

#: 2026-01-01 00:00:30 UTC: the first boundary is 30 exchange seconds after the start.
START_MS = 1_767_225_600_000 + 30_000
FAULT_KINDS = (
    "drop",
    "silence",
    "malformed",
    "duplicate",
    "out_of_order",
    "rest_5xx",
    "slow_rest",
    "rate_limit_429",
    "ban_418",
    "listing",
    "delisting",
    "maintenance",
)
_RARE_PER_HOUR = {"ban_418": 1 / 8, "maintenance": 1 / 12, "listing": 1 / 3, "delisting": 1 / 3}
_READER = Path(__file__).with_name("_reader.py")
_RECORDER_CMD = [sys.executable, "-c", "from bmac_trio.cli import main; main()", "run"]
_IP = "127.0.0.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class SoakConfig:
    """One soak run (times in exchange minutes unless named ``_s``: real seconds)."""

    workdir: Path
    hours: float = 24.0
    symbols: int = 200
    interval: str = "1m"
    speed: float = 120.0
    seed: int = 1
    num_candles: int = 1500
    save_type: str = "parquet"
    fault_every_min: float = 5.0
    kills: int = 8
    cron_duplicates: int = 2
    #: Final minutes without faults or kills, before the catch-up.
    quiet_min: float = 10.0
    catch_up_s: float = 120.0
    close_timeout_s: float = 15.0
    reader_pause_s: float = 0.01
    min_real_update_s: float = 0.5
    progress: bool = True


@dataclass(slots=True)
class SoakResult:
    """What happened and what the final check found."""

    config: SoakConfig
    symbols_recorded: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)
    faults_applied: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    restarts: int = 0
    unexpected_exits: list[int] = field(default_factory=list)
    cron_duplicate_exits: list[int] = field(default_factory=list)
    final_exit: int | None = None
    caught_up: bool = False
    catch_up_s: float = 0.0
    wall_s: float = 0.0
    rest_weight: int = 0
    rest_requests: int = 0
    rest_by_status: dict[int, int] = field(default_factory=dict)
    self_inflicted_bans: int = 0
    deadline_fallbacks: int = 0
    reader: dict[str, Any] = field(default_factory=dict)
    check: CheckResult = field(default_factory=CheckResult)

    @property
    def torn(self) -> int:
        """Reads that failed or broke the schema, reading as the contract says (one handle).

        Reads by path are counted apart (``torn_by_path``): polars given a path opens the
        file more than once, so it can mix two versions however atomically they were written
        (see ``bmac_trio.store.candles``); that is the reader's rule to follow, not the writer's.
        """
        r = self.reader
        return r.get("torn", 0) + r.get("schema", 0)

    @property
    def ok(self) -> bool:
        """The bar: nothing missing, wrong or torn; every announcement true."""
        c = self.check
        return (
            c.missing == 0
            and c.wrong == 0
            and c.extra == 0
            and self.torn == 0
            and c.ready_violations == 0
            and c.manifest_violations == 0
            and self.reader.get("ready_violations", 0) == 0
            and bool(self.reader)
        )

    def lines(self) -> list[str]:
        """The printed report."""
        c, cfg, r = self.check, self.config, self.reader
        lags = sorted(c.lags_ms)

        def pct(q: float) -> str:
            return f"{lags[min(len(lags) - 1, int(q * len(lags)))]:.1f}" if lags else "n/a"

        faults = ", ".join(f"{k}={self.faults_injected[k]}" for k in FAULT_KINDS)
        return [
            f"simulated hours:   {cfg.hours:g} at {cfg.speed:g}x ({self.wall_s:.0f} s wall)",
            f"symbols:           {self.symbols_recorded} recorded, {c.symbols_checked} checked",
            f"faults injected:   {sum(self.faults_injected.values())} ({faults})",
            f"faults applied:    {self.faults_applied} (simulator's count)",
            f"restarts:          {self.restarts} after {self.kills} SIGKILLs; "
            f"unexpected exits {self.unexpected_exits}; cron duplicates exited "
            f"{self.cron_duplicate_exits}; final SIGTERM exit {self.final_exit}",
            f"catch-up:          {'done' if self.caught_up else 'NOT DONE'} "
            f"in {self.catch_up_s:.1f} s",
            f"candles checked:   {c.candles_checked}",
            f"missing:           {c.missing} (of delisted symbols {c.missing_delisted}; "
            f"files missing {c.files_missing})",
            f"wrong:             {c.wrong} (extra {c.extra})",
            f"torn reads:        {self.torn} of {r.get('reads', 0)} reads from one handle "
            f"(schema violations {r.get('schema', 0)}, vanished {r.get('vanished', 0)}); "
            f"by path: {r.get('torn_by_path', 0)} torn of {r.get('reads_by_path', 0)}",
            f"ready files:       {c.ready_checked} checked at the end, {c.ready_violations} "
            f"false; {r.get('ready_checks', 0)} checked live, "
            f"{r.get('ready_violations', 0)} false",
            f"manifests:         {c.manifests_checked} ({c.manifest_entries_checked} entries), "
            f"{c.manifest_violations} false; {c.periods_complete} complete, "
            f"lag p50 {pct(0.5)} ms p99 {pct(0.99)} ms",
            f"delisted kept:     {c.not_moved_aside} not moved aside",
            f"REST weight spent: {self.rest_weight} in {self.rest_requests} requests "
            f"(statuses {dict(sorted(self.rest_by_status.items()))}, self-inflicted bans "
            f"{self.self_inflicted_bans}, deadline fallbacks {self.deadline_fallbacks})",
            *(f"  ! {e}" for e in c.examples + list(r.get("examples", []))),
            f"RESULT: {'PASS' if self.ok else 'FAIL'}",
        ]


def sim_symbol_count(target: int, seed: int) -> int:
    """How many symbols the simulator must generate so that ``target`` are USDT perpetuals."""
    from bmac_trio.sim._exchange import Exchange

    count = target
    while True:
        ex = Exchange(SimConfig(market="um", symbols=count, seed=seed), START_MS)
        have = sum(1 for s in ex.specs.values() if is_recorded_um_usdt_perp(s))
        if have >= target:
            return count
        count += target - have


def _plan_faults(cfg: SoakConfig, rng: random.Random, first: int, last: int) -> list[tuple]:
    """``(exchange_ms, kind)`` spread over ``[first, last]``; every kind at least once."""
    n = max(len(FAULT_KINDS), int((last - first) / (cfg.fault_every_min * 60_000)))
    kinds = [
        k for k, per_h in _RARE_PER_HOUR.items() for _ in range(max(1, round(per_h * cfg.hours)))
    ]
    frequent = [k for k in FAULT_KINDS if k not in _RARE_PER_HOUR]
    i = 0
    while len(kinds) < n:
        kinds.append(frequent[i % len(frequent)])
        i += 1
    rng.shuffle(kinds)
    step = (last - first) / len(kinds)
    return [(int(first + step * (j + rng.uniform(0.1, 0.9))), k) for j, k in enumerate(kinds)]


class _Soak:
    def __init__(self, cfg: SoakConfig, clock: ScaledWallClock, sim: Any) -> None:
        self.cfg, self.clock, self.sim = cfg, clock, sim
        self.iv = parse_interval(cfg.interval)
        self.rng = random.Random(cfg.seed)
        self.base = cfg.workdir / "data"
        self.cdir = candle_dir(self.base, "usdt_perp", cfg.interval)
        self.log = open(cfg.workdir / "recorder.log", "ab")  # noqa: SIM115 - closed in run_soak
        self.result = SoakResult(config=cfg)
        #: Recorder processes started and not yet reaped, by pid.
        self.procs: dict[int, trio.Process] = {}
        self.signalled: set[int] = set()
        #: Copies started while the recorder held the lock: they must exit 0 at once.
        self.duplicates: set[int] = set()
        self.down_until = 0
        self.listed = 0
        self.delisted: set[str] = set()
        self.bans = 0

    # --- the recorder process ----------------------------------------------------------------

    async def start_recorder(self, why: str) -> trio.Process:
        cmd = [*_RECORDER_CMD, str(self.base), "--clock", self.clock.spec()]
        proc = await trio.lowlevel.open_process(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.procs[proc.pid] = proc
        self.trace(f"cron starts pid {proc.pid} ({why})")
        return proc

    def trace(self, text: str) -> None:
        now = self.clock.now_ms()
        line = f"{time.time():.3f} +{(now - START_MS) / 60_000:.2f}min {text}\n"
        self.log.write(f"[soak] {line}".encode())
        self.log.flush()

    def holder(self) -> trio.Process | None:
        """Our live process that holds the lock (the recorder), if any."""
        try:
            pid = int((self.base / LOCK_FILE).read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        proc = self.procs.get(pid)
        return proc if proc is not None and proc.poll() is None else None

    def reap(self) -> None:
        """Account for processes that ended: a copy that found the lock held exits 0."""
        holder = self.holder()
        for pid, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            del self.procs[pid]
            if pid in self.signalled:
                continue
            if pid in self.duplicates:
                # started while the lock was held: judged on that, not on who holds the lock
                # now (the recorder may have been SIGKILLed since)
                self.result.cron_duplicate_exits.append(proc.returncode)
            elif proc.returncode == 0 and holder is not None:
                self.result.cron_duplicate_exits.append(0)
            else:
                self.result.unexpected_exits.append(proc.returncode)
                self.trace(f"pid {pid} exited by itself: {proc.returncode}")

    async def cron(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every minute (at :30) start a recorder unless one runs, as cron would; now and then
        start one while it runs (it must exit 0 at once: the lock is held)."""
        await self.start_recorder("first start")
        task_status.started()
        duplicates = 0
        t = self.iv.floor(self.clock.now_ms())
        while True:
            t += 60_000
            await self.clock.sleep_until_ms(t + 30_000)
            self.reap()
            if not self.procs:
                if t >= self.down_until:
                    await self.start_recorder("restart")
                    self.result.restarts += 1
            elif duplicates < self.cfg.cron_duplicates and self.holder() is not None:
                duplicates += 1
                copy = await self.start_recorder("while one runs")
                self.duplicates.add(copy.pid)

    async def killer(self, times: list[int]) -> None:
        for t in times:
            await self.clock.sleep_until_ms(t)
            victim = self.holder()
            if victim is None and self.procs:
                victim = max(self.procs.values(), key=lambda p: p.pid)
            if victim is None:
                continue
            self.signalled.add(victim.pid)
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            self.trace(f"SIGKILL pid {victim.pid}")
            self.result.kills += 1
            self.down_until = self.clock.now_ms() + self.rng.randint(0, 3) * 60_000

    async def stop_all(self) -> int | None:
        """SIGTERM the recorder (graceful stop) and every other copy; the recorder's status."""
        self.reap()
        holder = self.holder()
        status = None
        for proc in list(self.procs.values()):
            self.signalled.add(proc.pid)
            proc.send_signal(signal.SIGTERM)
        for proc in list(self.procs.values()):
            with trio.move_on_after(30):
                code = await proc.wait()
                if proc is holder:
                    status = code
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
        self.procs.clear()
        return status

    # --- faults ------------------------------------------------------------------------------

    async def injector(self, plan: list[tuple[int, str]]) -> None:
        for t, kind in plan:
            await self.clock.sleep_until_ms(t)
            self.inject(kind)

    def inject(self, kind: str) -> None:
        f, rng, now = self.sim.faults, self.rng, self.clock.now_ms()
        boundary = self.iv.floor(now)
        if kind == "drop":
            f.drop_connections(rng.randint(1, 3))
        elif kind == "silence":
            f.silence(rng.uniform(20, 150))
        elif kind == "malformed":
            f.send_malformed(rng.randint(1, 8))
        elif kind == "duplicate":
            f.send_duplicates(rng.randint(1, 8))
        elif kind == "out_of_order":
            f.send_out_of_order(rng.randint(1, 8))
        elif kind == "rest_5xx":
            f.rest_errors(rng.choice((500, 503)), count=rng.randint(1, 4))
        elif kind == "slow_rest":
            f.slow_rest(rng.uniform(0.5, 2.0), count=rng.randint(1, 3))
        elif kind == "rate_limit_429":
            f.rate_limit(rng.randint(1, 3), retry_after_s=rng.randint(1, 10))
        elif kind == "ban_418":
            # a 429, then a request inside its Retry-After but after the simulator's grace for
            # requests already in flight: Binance's way to a 418 ban
            limiter = self.sim.limiter
            grace = getattr(limiter, "grace_ms", 0)
            limiter.force_429(_IP, now, grace // 1000 + 2)
            limiter.check(_IP, 0, now + grace + 1)
            self.bans += 1
        elif kind == "listing":
            self.listed += 1
            symbol = f"SOAK{self.listed:03d}USDT"
            self.sim.market_events.list_symbol(symbol, boundary + rng.randint(1, 3) * 60_000)
        elif kind == "delisting":
            live = [
                s
                for s in self.sim.trading_symbols()
                if s not in self.delisted
                and is_recorded_um_usdt_perp(self.sim.exchange.specs[s])
                and s not in ("BTCUSDT", "ETHUSDT")
            ]
            symbol = rng.choice(live)
            self.delisted.add(symbol)
            self.sim.market_events.delist_symbol(symbol, boundary + rng.randint(1, 3) * 60_000)
        elif kind == "maintenance":
            start = boundary + 2 * 60_000
            self.sim.market_events.maintenance(start, start + rng.randint(5, 20) * 60_000)
        self.result.faults_injected[kind] += 1

    # --- the end -----------------------------------------------------------------------------

    def period_complete(self, run_time: int) -> bool:
        path = manifest_path(self.cdir, run_time, ZoneInfo(DEFAULT_TIMEZONE))
        try:
            manifest = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return False
        return bool(manifest["complete"]) and not manifest["missing"]

    async def progress(self, start_ms: int) -> None:
        t = start_ms
        while True:
            t += 3600_000
            await self.clock.sleep_until_ms(t)
            r = self.result
            print(
                f"[soak] hour {(t - start_ms) / 3600_000:.0f}: faults "
                f"{sum(r.faults_injected.values())}, kills {r.kills}, restarts {r.restarts}, "
                f"REST weight {self.sim.stats.weight_per_ip.get(_IP, 0)}",
                file=sys.stderr,
                flush=True,
            )


def write_config(cfg: SoakConfig, base: Path, sim: Any) -> None:
    base.mkdir(parents=True, exist_ok=True)
    config = {
        "interval": cfg.interval,
        "trade_type": "usdt_perp",
        "num_candles": cfg.num_candles,
        "save_type": cfg.save_type,
        "candle_close_timeout_sec": cfg.close_timeout_s,
        "rest_url": sim.rest_url,
        "ws_url": sim.ws_url,
    }
    (base / "config.json").write_bytes(orjson.dumps(config))


async def run_soak(cfg: SoakConfig) -> SoakResult:
    """Run one soak (see the module docstring) and return its figures."""
    wall0 = time.monotonic()
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    start_ms = START_MS
    clock = ScaledWallClock(start_ms, cfg.speed, time.time())
    end_ms = start_ms + int(cfg.hours * 3600_000)
    sim_cfg = SimConfig(
        market="um",
        symbols=sim_symbol_count(cfg.symbols, cfg.seed),
        seed=cfg.seed,
        interval_hint=cfg.interval,
        history_candles=cfg.num_candles + 500,
        ban_seconds=60,
        min_real_update_s=cfg.min_real_update_s,
    )
    stop_file = cfg.workdir / "reader.stop"
    stop_file.unlink(missing_ok=True)
    async with open_simulator(sim_cfg, clock=clock) as sim:
        soak = _Soak(cfg, clock, sim)
        result = soak.result
        result.symbols_recorded = len(
            [s for s in sim.trading_symbols() if is_recorded_um_usdt_perp(sim.exchange.specs[s])]
        )
        write_config(cfg, soak.base, sim)
        quiet = end_ms - int(cfg.quiet_min * 60_000)
        first = start_ms + 5 * 60_000
        plan = _plan_faults(cfg, soak.rng, first, quiet - 25 * 60_000)
        kills = sorted(int(soak.rng.uniform(first, quiet - 4 * 60_000)) for _ in range(cfg.kills))
        kills = [
            soak.iv.floor(t) + soak.rng.randint(200, 3000) if i % 2 else t
            for i, t in enumerate(kills)
        ]
        reader_out = (cfg.workdir / "reader.json").open("wb")
        try:
            reader_cmd = [
                sys.executable, str(_READER), str(soak.cdir), cfg.save_type,
                str(cfg.num_candles), str(stop_file), DEFAULT_TIMEZONE, str(cfg.reader_pause_s),
            ]  # fmt: skip
            reader = await trio.lowlevel.open_process(reader_cmd, stdout=reader_out)
            async with trio.open_nursery() as nursery:
                await nursery.start(soak.cron)
                nursery.start_soon(soak.killer, kills)
                nursery.start_soon(soak.injector, plan)
                if cfg.progress:
                    nursery.start_soon(soak.progress, start_ms)
                await clock.sleep_until_ms(end_ms)
                nursery.cancel_scope.cancel()
            soak.reap()
            if not soak.procs:
                await soak.start_recorder("for the catch-up")
                result.restarts += 1
            final = soak.iv.floor(clock.now_ms())
            t0 = time.monotonic()
            with trio.move_on_after(cfg.catch_up_s):
                # another process writes the manifest: polling the file is the only way to know
                while not soak.period_complete(final):  # noqa: ASYNC110
                    await trio.sleep(0.2)
                result.caught_up = True
            result.catch_up_s = time.monotonic() - t0
            result.final_exit = await soak.stop_all()
            stop_file.touch()
            await reader.wait()
        finally:
            reader_out.close()
            soak.log.close()
        text = (cfg.workdir / "reader.json").read_bytes().strip()
        result.reader = orjson.loads(text) if text else {}
        stats = sim.stats
        result.faults_applied = dict(stats.faults)
        result.rest_weight = stats.weight_per_ip.get(_IP, 0)
        result.rest_requests = stats.rest_requests
        result.rest_by_status = dict(stats.rest_by_status)
        ip_state = getattr(sim.limiter, "_ips", {}).get(_IP)
        result.self_inflicted_bans = (ip_state.bans if ip_state else 0) - soak.bans
        log_text = (cfg.workdir / "recorder.log").read_text(errors="replace")
        result.deadline_fallbacks = log_text.count("Symbols not ready for runtime")
        now = clock.now_ms()
        # synchronously: the simulator's market model caches are not shared with threads
        result.check = check_directory(
            sim.exchange,
            directory=soak.cdir,
            save_type=cfg.save_type,
            num_candles=cfg.num_candles,
            interval=soak.iv,
            tz=ZoneInfo(DEFAULT_TIMEZONE),
            final_run_time_ms=final,
            now_ms=now,
        )
    result.wall_s = time.monotonic() - wall0
    return result
