"""Run one command as its own process group: bounded log capture, a real timeout.

The child starts a new session (``start_new_session``), so its process group holds it and
every grandchild that did not start a session of its own. Output (stdout and stderr,
interleaved) is drained by a thread as it comes, so a child that floods its output never
blocks on a full pipe: the first ``max_log_bytes`` go to the log file, the last
``tail_bytes`` are kept in memory for the store. On timeout or cancel the descendants are
collected from the process tree (which also finds those that started their own session,
such as Jupyter kernels), the group gets SIGTERM, then SIGKILL after ``grace`` seconds.
When the child exits on its own, whatever it left running is killed too: its group, and
the descendants that left the group (:class:`~mlops_nb.pipelines.reaper.Descendants`).
On Linux the child also dies with the thread that started it (see
:mod:`~mlops_nb.pipelines.reaper`), and ``on_start`` receives its pid (its group's id) so
that the caller can record it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from .reaper import Descendants, detached, die_with_parent

_CHUNK = 65536


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None
    timed_out: bool
    cancelled: bool
    duration: float
    tail: str
    log_bytes: int
    truncated: bool
    leftovers: int


class _Drain(threading.Thread):
    """Copy a pipe to a file up to a limit, keeping the last bytes, until EOF or stop."""

    def __init__(self, fd: int, log: Path, limit: int, tail: int) -> None:
        super().__init__(daemon=True, name="mlops-nb-log")
        self.fd, self.log, self.limit, self.tail_size = fd, log, limit, tail
        self.tail = bytearray()
        self.total = 0
        self.stop = threading.Event()

    def run(self) -> None:
        written = 0
        with open(self.log, "ab", buffering=0) as out:
            while not self.stop.is_set():
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if not ready:
                    continue
                chunk = os.read(self.fd, _CHUNK)
                if not chunk:
                    break
                self.total += len(chunk)
                if written < self.limit:
                    keep = chunk[: self.limit - written]
                    out.write(keep)
                    written += len(keep)
                    if written >= self.limit:
                        out.write(f"\n[mlops-nb: log truncated at {self.limit} bytes]\n".encode())
                self.tail += chunk
                if len(self.tail) > self.tail_size:
                    del self.tail[: len(self.tail) - self.tail_size]
        os.close(self.fd)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_alive(pgid: int) -> bool:
    return _signal_group(pgid, 0)


def kill_tree(proc: subprocess.Popen[bytes], grace: float) -> int:
    """Stop ``proc``, its process group and every descendant; returns how many were hit."""
    try:
        # A deployment the stage started (its router and replicas) stays up.
        extra = [p for p in psutil.Process(proc.pid).children(recursive=True) if not detached(p)]
    except psutil.Error:
        extra = []
    _signal_group(proc.pid, signal.SIGTERM)
    for p in extra:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (proc.poll() is None or _group_alive(proc.pid)):
        time.sleep(0.05)
    _signal_group(proc.pid, signal.SIGKILL)
    for p in extra:
        with contextlib.suppress(psutil.Error):
            p.kill()
    proc.wait()
    psutil.wait_procs(extra, timeout=grace)
    return 1 + len(extra)


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    timeout: float | None,
    cancel: threading.Event,
    max_log_bytes: int = 64 * 1024 * 1024,
    tail_bytes: int = 16 * 1024,
    grace: float = 3.0,
    on_start: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Run ``argv`` to completion, timeout or cancel; never leaves a process behind."""
    started = time.monotonic()
    below = Descendants()
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env={**env, **below.env()}, stdin=subprocess.DEVNULL, stdout=write_fd,
            stderr=write_fd, start_new_session=True, preexec_fn=die_with_parent(),
        )  # fmt: skip
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    below.watch(proc.pid)
    drain = _Drain(read_fd, log, max_log_bytes, tail_bytes)
    drain.start()
    if on_start is not None:
        try:
            on_start(proc.pid)
        except BaseException:
            # Not recorded means not findable later: do not leave it running.
            kill_tree(proc, grace)
            drain.stop.set()
            drain.join()
            raise
    timed_out = cancelled = False
    leftovers = 0
    deadline = None if timeout is None else started + timeout
    while proc.poll() is None:
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
        elif cancel.is_set():
            cancelled = True
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.1)
            below.refresh()
            continue
        below.refresh()
        kill_tree(proc, grace)
        break
    else:
        # Exited on its own: children it left in its group do not outlive the stage.
        if _group_alive(proc.pid):
            leftovers = 1
            _signal_group(proc.pid, signal.SIGKILL)
    # Nor do those that left the group (setsid) or whose parent has already exited.
    leftovers += below.kill_survivors(grace)
    duration = time.monotonic() - started
    drain.join(timeout=5)
    # A descendant that escaped the group may still hold the pipe: stop reading anyway.
    drain.stop.set()
    drain.join()
    return ProcessResult(
        exit_code=proc.returncode, timed_out=timed_out, cancelled=cancelled, duration=duration,
        tail=drain.tail.decode(errors="replace"), log_bytes=drain.total,
        truncated=drain.total > max_log_bytes, leftovers=leftovers,
    )  # fmt: skip
