"""Run the commands of the README and of docs/, as written, in a fresh virtual environment.

    python scripts/readme_fresh_venv.py            # everything, pytest, soaks and benchmarks
                                                   # included (hours)
    python scripts/readme_fresh_venv.py --quick    # `pytest -q -m "not slow and not soak"`,
                                                   # soak and benchmark runs skipped
    python scripts/readme_fresh_venv.py --quick --files docs/operations.md   # some pages only

A clean copy of the committed tree (``git archive HEAD``) goes to a temp dir with its own HOME;
there ``python3 -m venv .venv && . .venv/bin/activate`` (the README's first instruction) makes a
fresh environment, installing from PyPI. Then every line of every ```bash block runs, README.md
first, then each page of docs/ in name order, in that environment, from the checkout:

* servers (``bmac-trio sim``, ``bmac-trio run``) start in the background; the script waits for
  them to be ready (the sim's first line; the run's metrics port or status file), runs the rest
  of the block, then sends SIGTERM and expects exit 0;
* ``~/usdt_perp_5m`` is a data directory in the temp HOME; before any ``bmac-trio run`` its
  config.json (whether the page or this script wrote it) is pointed at the pages' own USDⓈ-M
  simulator, or, if no page has started one yet, at one this script starts (``(setup)``):
  nothing contacts Binance;
* an example naming the user's own exchangeInfo file (``--exchange-info snapshot.json``) gets
  the captured snapshot of that market from ``../shared/fixtures/binance``;
* ``bmac-trio status`` may exit 0, 1, 2 or 3 (its documented codes) but must print a health line;
  ``bmac-trio check`` may exit 1 (``run`` would start; some files stale after a short run);
* ``sudo ...`` and ``journalctl`` need a system service manager and are reported as skipped;
* absolute paths in examples (``/data/h1``, ``/home/trader/...``) are rooted in the temp HOME,
  and long-running examples (``--live``) run until the end of their block, then get SIGTERM;
* skipping: ``--quick`` skips soak runs and ``scripts/bench_*`` lines; a page marks a block
  that cannot run on a build machine with ``<!-- fresh-venv: skip REASON -->`` on the line
  before its fence, and one too long for ``--quick`` with ``<!-- fresh-venv: quick-skip
  REASON -->``. Skipped lines are reported as SKIP with the reason.

Prints one line per command (OK / FAIL / SKIP, seconds) and a summary line; exits non-zero if
any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "binance"
BLOCK = re.compile(
    r"(?:^<!-- fresh-venv: (?P<mark>skip|quick-skip)\b(?P<reason>.*?)-->\n+)?"
    r"^```bash\n(?P<body>.*?)^```",
    re.M | re.S,
)
SERVERS = ("bmac-trio sim", "bmac-trio run")
#: Lines --quick leaves out: soak runs and benchmarks take minutes to hours.
LONG = re.compile(r"soak|scripts/bench_")


@dataclass(frozen=True)
class Block:
    """One ```bash block of a page, with the skip mark (if any) on the line before it."""

    page: str
    lines: tuple[str, ...]
    mark: str = ""  # "", "skip" or "quick-skip"
    reason: str = ""


def bash_lines(text: str) -> list[str]:
    """Every command line of every ```bash block, in order (comments and blanks dropped)."""
    return [line for block in bash_blocks(text) for line in block.lines]


def bash_blocks(text: str, page: str = "README.md") -> list[Block]:
    """The ```bash blocks of a page, each with its command lines (comments and blanks dropped)."""
    blocks = []
    for match in BLOCK.finditer(text):
        lines = tuple(
            line.strip()
            for line in match["body"].splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        )
        reason = (match["reason"] or "").strip()
        blocks.append(Block(page, lines, match["mark"] or "", reason))
    return blocks


def pages(src: Path, only: list[str] | None = None) -> list[Path]:
    """README.md, then docs/*.md in name order (or only the pages given, in that order)."""
    if only:
        return [src / name for name in only]
    return [src / "README.md", *sorted((src / "docs").glob("*.md"))]


class Session:
    """Runs lines in the fresh venv, from the checkout, with a private HOME."""

    def __init__(self, src: Path, home: Path, quick: bool) -> None:
        self.src, self.home, self.quick = src, home, quick
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if "venv" not in p]
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
            "HOME": str(home),
            "PATH": os.pathsep.join(path),
            "COLUMNS": "120",
        }
        self.servers: list[subprocess.Popen[str]] = []
        self.sims: dict[str, tuple[str, str]] = {}  # market -> (rest_url, ws_url)
        self.failures = 0
        self.skipped = 0

    def _cmd(self, line: str) -> list[str]:
        return ["bash", "-c", f". .venv/bin/activate && {line}"]

    def report(self, verdict: str, line: str, started: float, note: str = "") -> None:
        if verdict == "FAIL":
            self.failures += 1
        elif verdict == "SKIP":
            self.skipped += 1
        extra = f"  ({note})" if note else ""
        print(f"{verdict:4} {time.monotonic() - started:7.1f}s  {line}{extra}", flush=True)

    def run_block(self, block: Block) -> None:
        """Every line of one block, unless the page marked it to be skipped."""
        for line in block.lines:
            if block.mark == "skip" or (block.mark == "quick-skip" and self.quick):
                self.report("SKIP", line, time.monotonic(), block.reason or block.mark)
            else:
                self.run(line)

    def run(self, line: str) -> None:
        started = time.monotonic()
        if line.startswith(("sudo ", "journalctl")):
            self.report("SKIP", line, started, "needs systemd")
            return
        if "readme_fresh_venv" in line:
            self.report("SKIP", line, started, "this script")
            return
        if self.quick and LONG.search(line):
            self.report("SKIP", line, started, "a soak or benchmark; run without --quick")
            return
        if self.quick and re.search(r"(^|&& )pytest$", line):
            line = line[: -len("pytest")] + 'pytest -q -m "not slow and not soak"'
        line = sandboxed(line)
        provided = self.provide_files(line)
        if (any(s in line for s in SERVERS) or " --live" in line) and "--help" not in line:
            self.start_server(line, started, provided)
            return
        out = subprocess.run(
            self._cmd(line),
            cwd=self.src,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if "bmac-trio status" in line:
            ok = out.returncode in (0, 1, 2, 3) and (
                "health" in out.stdout or "exit_code" in out.stdout
            )
        elif "bmac-trio check" in line:  # 1: run would start, but a page's short run left
            ok = out.returncode in (0, 1)  # files behind the others (stale), as documented
        else:
            ok = out.returncode == 0
        text = (out.stdout + out.stderr).strip().splitlines()
        failed = [t for t in text if t.startswith(("FAILED ", "ERROR "))][:30]  # pytest's list
        tail = failed + [t for t in text[-3:] if t not in failed]
        self.report("OK" if ok else "FAIL", line, started, f"exit {out.returncode}")
        if not ok:
            print("      " + "\n      ".join(tail), flush=True)

    def start_server(self, line: str, started: float, note: str = "") -> None:
        if "bmac-trio run" in line:
            self.prepare_data_dir()
        proc = subprocess.Popen(
            self._cmd(f"exec {line}"),
            cwd=self.src,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.servers.append(proc)
        assert proc.stdout is not None
        if "bmac-trio sim" in line:
            first = proc.stdout.readline()
            threading.Thread(target=_drain, args=(proc.stdout, []), daemon=True).start()
            match = re.search(r"REST (\S+) WS (\S+)", first)
            if match is None:
                self.report("FAIL", line, started, f"first line {first!r}")
                return
            market = re.search(r"--market (\w+)", line)
            self.sims.setdefault(market.group(1) if market else "um", (match[1], match[2]))
            self.report("OK", line, started, f"serving: {first.strip()} {note}".strip())
            return
        output: list[str] = []
        threading.Thread(target=_drain, args=(proc.stdout, output), daemon=True).start()
        port = re.search(r"--metrics-port (\d+)", line)
        is_run = "bmac-trio run" in line
        deadline = time.monotonic() + (120 if is_run else 5)  # other servers: alive after 5 s
        while time.monotonic() < deadline and proc.poll() is None:
            ready = is_run and any("listening on" in text for text in output)
            if ready and (not port or _answers(f"http://127.0.0.1:{port[1]}/metrics")):
                break
            time.sleep(0.2)
        alive = proc.poll() is None
        self.report("OK" if alive else "FAIL", line, started, "recording" if alive else "exited")
        if not alive:
            print("      " + "      ".join(output[-3:]), flush=True)

    def prepare_data_dir(self) -> None:
        """``~/usdt_perp_5m`` with a config, if the README has not written one yet."""
        base = self.home / "usdt_perp_5m"
        if not (base / "config.json").exists():
            base.mkdir(exist_ok=True)
            config = {"interval": "5m", "trade_type": "usdt_perp", "num_candles": 100}
            (base / "config.json").write_bytes(orjson.dumps(config))
        self.point_at_simulator(base)

    def point_at_simulator(self, base: Path) -> None:
        """Never the real Binance: the config's URLs are the README's own USDⓈ-M simulator."""
        config = orjson.loads((base / "config.json").read_bytes())
        if "um" not in self.sims:
            self.start_server(
                "bmac-trio sim --market um --port 0 --symbols 20 --seed 1",
                time.monotonic(),
                "(setup: no page started one)",
            )
        urls = self.sims.get("um")
        if urls is None:
            raise RuntimeError("no simulator running for ~/usdt_perp_5m; refusing to run")
        config |= {"rest_url": urls[0], "ws_url": urls[1], "num_candles": 100}
        (base / "config.json").write_bytes(orjson.dumps(config))

    def provide_files(self, line: str) -> str:
        """A README example that names the user's own exchangeInfo file gets a captured one."""
        match = re.search(r"--exchange-info (\S+)", line)
        market = re.search(r"--market (\w+)", line)
        if match and not (self.src / match[1]).exists() and FIXTURES.is_dir():
            name = market[1] if market else "um"
            fixture = next(FIXTURES.glob(f"{name}_exchange_info_*.json"), None)
            if fixture is not None:
                shutil.copy(fixture, self.src / match[1])
                return f"{fixture.name} copied as {match[1]}"
        return ""

    def stop_servers(self, keep_sim: bool) -> None:
        for proc in list(self.servers):
            command = " ".join(proc.args)
            is_sim = "bmac-trio sim" in command
            if keep_sim and is_sim:
                continue
            started = time.monotonic()
            name = re.search(r"bmac-trio \w+", command)[0]  # type: ignore[index]
            # sim and run document SIGTERM -> exit 0; anything else is stopped as a person
            # would, with Ctrl-C (SIGINT), and may exit 0 or 130
            documented = name in ("bmac-trio sim", "bmac-trio run")
            sig = signal.SIGTERM if documented else signal.SIGINT
            with contextlib.suppress(ProcessLookupError):  # it may have exited already
                os.killpg(proc.pid, sig)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            self.servers.remove(proc)
            ok = code == 0 if documented else code in (0, 130)
            self.report("OK" if ok else "FAIL", f"({sig.name}) {name}", started, f"exit {code}")


def sandboxed(line: str) -> str:
    """Absolute paths of the README (``/data/h1``, ``/home/trader/...``) go under the temp HOME,
    so running the examples writes nothing outside the sandbox."""
    return re.sub(r"(?<=\s)/(?!tmp/|dev/)(?=[\w.-])", "$HOME/", line)


def _drain(stream: Any, into: list[str]) -> None:
    for text in stream:
        into.append(text)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pytest without slow/soak tests")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument(
        "--files", nargs="+", metavar="PAGE", help="only these pages (e.g. README.md docs/kit.md)"
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bmac-readme-"))
    src, home = tmp / "bmac-trio", tmp / "home"
    src.mkdir()
    home.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    shared = REPO.parent / "shared"
    if shared.is_dir():  # the captured fixtures the tests read, beside the checkout as in CI
        os.symlink(shared, tmp / "shared")
    session = Session(src, home, args.quick)
    print(f"fresh checkout of HEAD in {src}, HOME={home}", flush=True)
    started = time.monotonic()
    venv = subprocess.run(
        ["bash", "-c", "python3 -m venv .venv"], cwd=src, env=session.env, check=False
    )
    session.report("OK" if venv.returncode == 0 else "FAIL", "python3 -m venv .venv", started)
    selected = pages(src, args.files)
    if src / "README.md" not in selected:  # the README's set-up commands install the package
        started = time.monotonic()
        out = subprocess.run(session._cmd("pip install -q -e '.[test]'"), cwd=src, env=session.env)
        verdict = "OK" if out.returncode == 0 else "FAIL"
        session.report(verdict, "pip install -q -e '.[test]'", started, "setup: README not run")
    blocks = [
        block
        for page in selected
        for block in bash_blocks(page.read_text(), str(page.relative_to(src)))
    ]
    current = ""
    try:
        for block in blocks:
            if block.page != current:
                current = block.page
                print(f"--- {current}", flush=True)
            session.run_block(block)
            session.stop_servers(keep_sim=True)
    finally:
        session.stop_servers(keep_sim=False)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    per_page: dict[str, int] = {}
    for block in blocks:
        per_page[block.page] = per_page.get(block.page, 0) + len(block.lines)
    counts = ", ".join(f"{page} {n}" for page, n in per_page.items())
    total = sum(per_page.values())
    print(
        f"{total} command lines ({counts}): {session.failures} failed, {session.skipped} skipped",
        flush=True,
    )
    return 1 if session.failures else 0


if __name__ == "__main__":
    sys.exit(main())
