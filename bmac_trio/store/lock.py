"""One recorder per data directory: an exclusive ``flock`` on ``<base>/.bmac.lock``.

cron starts a copy every minute; the second one must fail at once with a clear message. A
``flock`` belongs to the open file description, so the kernel drops it when the process dies,
even by SIGKILL: there is no stale lock to clean up, and the pid written in the file is only
there to name the holder in the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from bmac_trio.errors import LockHeld, StorageError
from bmac_trio.store.layout import LOCK_FILE

__all__ = ["Lock", "acquire_lock"]


class Lock:
    """A held lock; release it with :meth:`close` or by leaving the ``with`` block."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """Whether this process still holds the lock."""
        return self._fd is not None

    def close(self) -> None:
        """Release the lock (idempotent). The file stays: removing it would race a new holder."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> Lock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def acquire_lock(base_dir: Path) -> Lock:
    """Take the lock of ``base_dir`` without waiting.

    Raises:
        LockHeld: another process holds it (the message names its pid).
        StorageError: the lock file cannot be opened (the message names it and the cause).
    """
    path = Path(base_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f"pid {holder}" if holder else "another process"
        msg = f"{base_dir} is already being recorded by {who} (lock {path}); exiting"
        raise LockHeld(msg) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return Lock(path, fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
