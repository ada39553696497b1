"""Files in flight: staging folders and half-written blobs, named after their process.

A registration stages files in a private folder and copies each blob through a temporary
file before renaming it into place. Both are named ``<host>-<pid>-...``, so a process that
was killed mid-way leaves files that a later one can tell apart from those of a live
process: :func:`sweep` removes them when their process is gone (same host), or after a
day (another host sharing the folder, whose processes cannot be checked).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Leftovers of another host are removed only when this old (its process may be alive).
_FOREIGN_LEFTOVER_AGE = 86_400.0
_STAGE_PREFIX = "mlops-nb-stage-"


def owner_tag() -> str:
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}-"


def _is_stale(name: str, path: Path) -> bool:
    """Whether a ``<host>-<pid>-...`` leftover belongs to a process that is gone."""
    host, _, rest = name.partition("-")
    pid_text = rest.partition("-")[0]
    try:
        age = time.time() - path.lstat().st_mtime
    except OSError:
        return False
    if host != socket.gethostname().replace("-", "_") or not pid_text.isdigit():
        return age > _FOREIGN_LEFTOVER_AGE
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, owned by another user
    return False


def sweep(folder: Path, prefix: str = "") -> list[Path]:
    """Remove the leftovers of dead processes in ``folder``; returns what went."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if not entry.name.startswith(prefix) or not _is_stale(entry.name[len(prefix) :], entry):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def staging() -> Iterator[Path]:
    """A private folder for files on their way into a store, removed afterwards; one left
    by a killed process is swept by :func:`sweep_staging`."""
    path = Path(tempfile.mkdtemp(prefix=_STAGE_PREFIX + owner_tag()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_staging() -> list[Path]:
    """Remove staging folders of processes on this machine that are gone."""
    return sweep(Path(tempfile.gettempdir()), _STAGE_PREFIX)
