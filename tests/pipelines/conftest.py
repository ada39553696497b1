"""Pipeline test helpers: scripts in a project folder, and a check that no process leaks."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder for pipeline files and scripts (separate from the workspace)."""
    root = tmp_path / "project"
    root.mkdir()
    return root


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if name.endswith(".sh"):
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def gone(pid: int, timeout: float = 30.0) -> bool:
    """True once ``pid`` no longer runs (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def wait_for(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """Every stage process a test started is gone when it ends."""
    me = psutil.Process(os.getpid())
    before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 30
    while True:
        extra = [p for p in me.children(recursive=True) if p.pid not in before]
        alive = [p for p in extra if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive, f"processes left behind: {[p.cmdline() for p in alive]}"
