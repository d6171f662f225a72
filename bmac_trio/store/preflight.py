"""Start-up checks of the paths a command needs, shared by ``run`` and ``check``.

A path that can never work (a data directory under a regular file, a log file in a missing
folder, a lock file that is a directory) is a permanent error: the command says so in one line
and exits 2 instead of crashing with a traceback that a service manager restarts forever.
The checks only look (``stat``, ``access``), so ``check`` may run them on a live directory;
as root, ``access`` grants nearly everything, so these are the conditions that stop root too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bmac_trio.store.layout import LOCK_FILE

__all__ = ["directory_problem", "file_problem", "lock_problem"]


def directory_problem(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be used (or created) as a writable directory, or None."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{what} {path} is a symbolic link to nowhere"
        parent = path.parent
        if parent == path:
            return f"{what} {path} does not exist"
        problem = directory_problem(parent, "the folder")
        return None if problem is None else f"cannot create {what} {path}: {problem}"
    except OSError as exc:
        return f"cannot create {what} {path}: {exc.strerror or exc}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{what} {path} exists and is not a directory"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{what} {path} is not writable (Permission denied)"
    return None


def file_problem(path: Path, what: str) -> str | None:
    """Why ``path`` cannot be opened for appending (its folder is not created), or None."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = path.parent
        if not parent.exists():
            return f"cannot open {what} {path}: No such file or directory (no folder {parent})"
        problem = directory_problem(parent, "the folder")
        return None if problem is None else f"cannot open {what} {path}: {problem}"
    except OSError as exc:
        return f"cannot open {what} {path}: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return f"cannot open {what} {path}: Is a directory"
    if not os.access(path, os.W_OK):
        return f"cannot open {what} {path}: Permission denied"
    return None


def lock_problem(base_dir: Path) -> str | None:
    """Why ``<base>/.bmac.lock`` cannot be opened, or None."""
    return file_problem(Path(base_dir) / LOCK_FILE, "the lock file")
