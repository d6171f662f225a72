"""The data-directory lock: a second recorder is refused, a killed one leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bmac_trio.errors import LockHeld
from bmac_trio.store.lock import acquire_lock

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bmac_trio.store.lock import acquire_lock
    lock = acquire_lock(Path(sys.argv[1]))
    print("locked", flush=True)
    sys.stdin.read()
    """
)


def test_second_acquire_in_process_is_refused_then_released(tmp_path: Path) -> None:
    with acquire_lock(tmp_path) as lock:
        assert lock.held
        assert (tmp_path / ".bmac.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
            acquire_lock(tmp_path)
    assert not lock.held
    again = acquire_lock(tmp_path)
    again.close()
    again.close()


def test_lock_held_by_another_process_then_freed_by_sigkill(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld) as info:
            acquire_lock(tmp_path)
        assert f"pid {proc.pid}" in str(info.value)
        assert str(tmp_path) in str(info.value)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with acquire_lock(tmp_path) as lock:
        assert lock.held
