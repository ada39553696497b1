"""Stage processes do not outlive their stage, nor the runner that started them.

While a stage runs, :class:`Descendants` notes every process below it (on each poll) and,
when it ends, also finds those that carry the attempt's token in their environment (a
child that escaped with ``setsid`` and whose parent exited between two polls). What is
still running when the stage ends is killed, except services started with
``MLOPS_NB_DETACHED=1`` in their environment (a deployment's router and controller), which
are meant to outlive the stage.

Two more guards, because a runner killed with SIGKILL cannot clean up after itself:

- On Linux each stage process asks the kernel for SIGKILL when the thread that started it
  dies (``prctl(PR_SET_PDEATHSIG)``, set between fork and exec). That reaches the stage's
  own process, not the children it started.
- Each attempt's process id and start time are stored with the attempt. The next run of
  the pipeline marks a run whose runner is gone ``abandoned`` and calls :func:`reap` on
  its attempts that were still running: the members of their process groups die. The start
  time tells the stage's process from a later one that got the same pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import sys
from collections.abc import Callable

import psutil

from ..detached import DETACHED

_PR_SET_PDEATHSIG = 1
TOKEN = "MLOPS_NB_ATTEMPT_TOKEN"
# Start times are compared as the recorder does: psutil reads them in clock ticks.
_SAME_START = 1.0


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _prctl()


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this thread dies (Linux).

    It is built before the fork, so the child only makes one system call; a parent that
    died before the call is noticed by the parent pid having changed.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def start_time(pid: int) -> float | None:
    """The process's start time (seconds since the epoch), None if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _group(pgid: int, started: float) -> list[psutil.Process]:
    members = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(p.pid) == pgid and p.create_time() >= started - _SAME_START:
                members.append(p)
    return members


def reap(pgid: int, started: float, grace: float = 2.0) -> int:
    """Kill what is left of the process group a stage started at ``started``; returns how
    many processes were signalled.

    The group is the stage's own only if its leader is gone or is the process that started
    at ``started``: a live leader with another start time is a new process that reused the
    pid (and its group), which is left alone. While any member of the old group lives, the
    kernel gives its id to no new process, so a group without a leader is still the stage's.
    """
    leader = start_time(pgid)
    if leader is not None and abs(leader - started) >= _SAME_START:
        return 0
    members = _group(pgid, started)
    _stops(members, grace)
    return len(members)


def _running(p: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    return False


def detached(p: psutil.Process) -> bool:
    """Started to outlive its job (``MLOPS_NB_DETACHED=1``): a deployment's router,
    controller or replica."""
    with contextlib.suppress(psutil.Error):
        return p.environ().get(DETACHED) == "1"
    return False


def _stops(processes: list[psutil.Process], grace: float) -> None:
    for p in processes:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace)


class Descendants:
    """The processes below one stage process, remembered as they are seen.

    psutil handles keep each process's start time, so a pid reused after one of them
    ended is never taken for it.
    """

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        self.root: psutil.Process | None = None
        self.seen: set[psutil.Process] = set()

    def env(self) -> dict[str, str]:
        """What the stage's environment gets so that its descendants can be found."""
        return {TOKEN: self.token}

    def watch(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self.root = psutil.Process(pid)

    def refresh(self) -> None:
        if self.root is not None:
            with contextlib.suppress(psutil.Error):
                self.seen.update(self.root.children(recursive=True))

    def _marked(self) -> list[psutil.Process]:
        if self.root is None:
            return []
        since = self.root.create_time() - _SAME_START
        found = []
        for p in psutil.process_iter(["create_time"]):
            if p == self.root or (p.info["create_time"] or 0) < since:
                continue
            with contextlib.suppress(psutil.Error):
                if p.environ().get(TOKEN) == self.token:
                    found.append(p)
        return found

    def kill_survivors(self, grace: float) -> int:
        """Kill what the stage left running (detached services aside); returns how many."""
        found = {p for p in self.seen | set(self._marked()) if p != self.root}
        alive = [p for p in found if _running(p) and not detached(p)]
        _stops(alive, grace)
        return len(alive)
