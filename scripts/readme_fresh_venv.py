"""Run the README's commands, as written, in a fresh virtual environment (issue 5).

    python scripts/readme_fresh_venv.py            # everything, pytest included (minutes)
    python scripts/readme_fresh_venv.py --quick    # `pytest` runs as `pytest -q -m "not slow"`

A clean copy of the committed tree (``git archive HEAD``) goes to a temp dir with its own HOME;
there ``python3 -m venv .venv && . .venv/bin/activate`` (the README's first instruction) makes a
fresh environment, installing from PyPI. Then every line of every ```bash block runs in README
order, in that environment, from the checkout:

* servers (``bmac-trio sim``, ``bmac-trio run``) start in the background; the script waits for
  them to be ready (the sim's first line; the run's metrics port or status file), runs the rest
  of the block, then sends SIGTERM and expects exit 0;
* ``~/usdt_perp_5m`` is a data directory in the temp HOME whose config points at the README's
  simulator (nothing touches the real Binance);
* ``bmac-trio status`` may exit 0, 1 or 2 (its documented codes) but must print a health line;
* ``sudo ...`` and ``journalctl`` need a system service manager and are reported as skipped.

Prints one line per command (OK / FAIL / SKIP, seconds) and exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
SERVERS = ("bmac-trio sim", "bmac-trio run")


def bash_lines(readme: str) -> list[str]:
    """Every command line of every ```bash block, in order (comments and blanks dropped)."""
    lines = []
    for block in BLOCK.findall(readme):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


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
        self.sim_urls: tuple[str, str] | None = None
        self.failures = 0

    def _cmd(self, line: str) -> list[str]:
        return ["bash", "-c", f". .venv/bin/activate && {line}"]

    def report(self, verdict: str, line: str, started: float, note: str = "") -> None:
        if verdict == "FAIL":
            self.failures += 1
        extra = f"  ({note})" if note else ""
        print(f"{verdict:4} {time.monotonic() - started:7.1f}s  {line}{extra}", flush=True)

    def run(self, line: str) -> None:
        started = time.monotonic()
        if line.startswith(("sudo ", "journalctl")):
            self.report("SKIP", line, started, "needs systemd")
            return
        if self.quick and re.search(r"(^|&& )pytest$", line):
            line = line[: -len("pytest")] + 'pytest -q -m "not slow"'
        if any(s in line for s in SERVERS) and "--help" not in line:
            self.start_server(line, started)
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
            ok = out.returncode in (0, 1, 2) and (
                "health" in out.stdout or "exit_code" in out.stdout
            )
        else:
            ok = out.returncode == 0
        tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
        self.report("OK" if ok else "FAIL", line, started, f"exit {out.returncode}")
        if not ok:
            print("      " + "\n      ".join(tail), flush=True)

    def start_server(self, line: str, started: float) -> None:
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
        if "bmac-trio sim" in line:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            match = re.search(r"REST (\S+) WS (\S+)", first)
            if match is None:
                self.report("FAIL", line, started, f"first line {first!r}")
                return
            self.sim_urls = (match.group(1), match.group(2))
            self.report("OK", line, started, f"serving: {first.strip()}")
            return
        port = re.search(r"--metrics-port (\d+)", line)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if port and _answers(f"http://127.0.0.1:{port.group(1)}/metrics"):
                break
            if not port and (self.home / "usdt_perp_5m" / "bmac_status.json").exists():
                break
            time.sleep(0.5)
        alive = proc.poll() is None
        self.report("OK" if alive else "FAIL", line, started, "running" if alive else "exited")

    def prepare_data_dir(self) -> None:
        base = self.home / "usdt_perp_5m"
        if (base / "config.json").exists():
            return
        base.mkdir(exist_ok=True)
        config = {"interval": "5m", "trade_type": "usdt_perp", "num_candles": 100}
        if self.sim_urls:
            config |= {"rest_url": self.sim_urls[0], "ws_url": self.sim_urls[1]}
        (base / "config.json").write_bytes(orjson.dumps(config))

    def stop_servers(self, keep_sim: bool) -> None:
        for proc in list(self.servers):
            is_sim = "sim" in " ".join(proc.args)
            if keep_sim and is_sim:
                continue
            started = time.monotonic()
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            self.servers.remove(proc)
            name = "bmac-trio sim" if is_sim else "bmac-trio run"
            self.report("OK" if code == 0 else "FAIL", f"(SIGTERM) {name}", started, f"exit {code}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help='pytest -m "not slow" only')
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
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
    readme = (src / "README.md").read_text()
    blocks = BLOCK.findall(readme)
    try:
        for block in blocks:
            for line in bash_lines(f"```bash\n{block}```\n"):
                session.run(line)
            session.stop_servers(keep_sim=True)
    finally:
        session.stop_servers(keep_sim=False)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    total = sum(len(bash_lines(f"```bash\n{b}```\n")) for b in blocks)
    print(f"{total} README command lines, {session.failures} failed", flush=True)
    return 1 if session.failures else 0


if __name__ == "__main__":
    sys.exit(main())
