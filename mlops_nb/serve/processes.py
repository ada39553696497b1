"""Predictions in worker processes, for models that hold the GIL.

``deploy(..., server={"pool": "processes", "workers": 4})``. The default thread pool
(:mod:`.workers`) hands a batch over in microseconds, and scikit-learn and numpy let go
of the GIL in their compiled parts; a model whose predict is mostly Python (a custom
class, a loop over rows) holds the GIL instead, so its threads take turns. Worker
processes each load the model themselves (fetched and verified like the server's own
copy) and predict in parallel, at the cost of a pickle round trip per batch and one
model in memory per process.

Each process has its own pipe. The event loop writes a pickled batch to an idle
process and reads the answer when the pipe is readable: no thread in between, and the
pool knows which process runs which job. So:

- a process that dies (killed, out of memory, a crash in native code) fails only the
  job it held (500) and is replaced (a replacement that cannot load is retried with
  backoff) while the others go on serving; with none left, requests wait for the
  replacement (up to their ``timeout_s``) and the server reports not ready;
- a job still running ``kill_after`` seconds after it started (the server passes
  ``timeout_s``: every request waiting on it has been answered 504 by then) has its
  process killed and replaced, where a hung thread can only be left running;
- a job running longer than ``stuck_after_s`` makes the server report not ready, as with
  threads.

The server becomes ready once every process has loaded. Worker processes ignore SIGINT
(Ctrl-C reaches the whole process group; the server drains its requests, then stops
them), finish the job in hand on SIGTERM, and exit by themselves if the server process
is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from .predictor import Outcome, Predictor
from .spec import ServeSpec
from .v2 import Batch

log = logging.getLogger("mlops_nb.serve")

# Loading may fetch the artifact from S3: a process gets this long to be ready.
LOAD_TIMEOUT = 600.0
RETRY_MAX = 30.0  # seconds between attempts to replace a process that cannot load


class PoolUnavailable(Exception):
    """No worker process runs and none is loading (HTTP 503, Retry-After)."""


class WorkerDied(Exception):
    """A worker process died while it held this request (HTTP 500)."""


class ModelRaised(Exception):
    """The model raised in a worker process: ``kind`` is the exception's type name; the
    worker's traceback is a note, so ``log.exception`` shows where."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# -- in a worker process ---------------------------------------------------------------

_state = {"busy": False, "stop": False}


def _on_sigterm(signum: int, frame: Any) -> None:
    if not _state["busy"]:
        os._exit(0)
    _state["stop"] = True  # after the answer in hand


def _serve(conn: Connection, spec_json: str, parent: int) -> None:
    """A worker process: load the model, say so, then predict what arrives until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="mlops-nb-parent", daemon=True).start()
    try:
        predictor = Predictor(ServeSpec(**json.loads(spec_json)))
        predictor.load()
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        _state["busy"] = True
        try:
            answer = pickle.dumps(("ok", predictor.predict(pickle.loads(message))),
                                  protocol=pickle.HIGHEST_PROTOCOL)  # fmt: skip
        except Exception as e:  # the model raised, or its answer cannot be pickled
            answer = pickle.dumps(("raised", (type(e).__name__, str(e), traceback.format_exc())))
        conn.send_bytes(answer)
        _state["busy"] = False
        if _state["stop"]:
            os._exit(0)


# -- in the server -----------------------------------------------------------------------

_Job = tuple[bytes, "asyncio.Future[list[Outcome]]"]


class _Worker:
    """One process, its pipe, and the job it runs (``since``: when it started)."""

    def __init__(self, proc: Any, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.pid: int = proc.pid
        self.job: asyncio.Future[list[Outcome]] | None = None
        self.since: float | None = None
        self.doomed = False  # killed for an overdue job: gets no other


class ProcessPool:
    """``workers`` processes predicting batches; the same figures as a
    :class:`~mlops_nb.serve.workers.WorkerPool` (backlog, running, longest, stuck)."""

    def __init__(self, spec: ServeSpec, workers: int, kill_after: float | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.kill_after = kill_after
        self.restarts = 0
        self.failure: str | None = None  # why the last replacement attempt failed
        self._spec_json = spec.to_json()
        self._ctx = multiprocessing.get_context("spawn")
        # Every process started and not yet stopped, for close() (any thread).
        self._spawned: set[Any] = set()
        self._lock = threading.Lock()
        self._closed = False
        # Touched on the event loop only (start() runs before the loop uses the pool).
        self._live: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._queue: deque[_Job] = deque()
        self._starting = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- processes -------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start every process and wait until each has loaded the model; raises with the
        reason when one cannot (stopping the others). With ``loop``, the pool watches its
        processes on it from now on, before any request."""
        started: list[_Worker] = []
        try:
            for _ in range(self.workers):
                started.append(self._spawn())
            for worker in started:
                self._await_ready(worker)
        except BaseException:
            for worker in started:
                self._kill(worker)
            raise
        self._live = list(started)
        self._idle = list(started)
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed: the server is stopping
                loop.call_soon_threadsafe(self._attach, loop)

    def _spawn(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the process pool is closed")
            ours, theirs = self._ctx.Pipe(duplex=True)
            proc = self._ctx.Process(target=_serve, args=(theirs, self._spec_json, os.getpid()),
                                     name="mlops-nb-predict", daemon=True)  # fmt: skip
            proc.start()
            self._spawned.add(proc)
        theirs.close()
        return _Worker(proc, ours)

    @staticmethod
    def _await_ready(worker: _Worker) -> None:
        if not worker.conn.poll(LOAD_TIMEOUT):
            raise RuntimeError(f"a worker process did not load the model in {LOAD_TIMEOUT:g} s")
        try:
            kind, detail = worker.conn.recv()
        except EOFError:
            worker.proc.join(5)
            raise RuntimeError(
                f"a worker process exited while loading the model (exit code "
                f"{worker.proc.exitcode})"
            ) from None
        if kind != "ready":
            raise RuntimeError(f"a worker process could not load the model: {detail}")

    def _kill(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError, ValueError):
            worker.proc.kill()
        worker.proc.join(10)
        worker.conn.close()
        with self._lock:
            self._spawned.discard(worker.proc)

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop or self._closed:
            return
        self._loop = loop
        for worker in self._live:
            loop.add_reader(worker.conn.fileno(), self._answer, worker)
        if self.kill_after is not None:
            loop.call_later(self._check_every(), self._check_overdue)

    def _check_every(self) -> float:
        assert self.kill_after is not None
        return min(0.25, self.kill_after / 4)

    def _check_overdue(self) -> None:
        """On the loop, every fraction of ``kill_after``: kill a process whose job has
        outlived every request that waited on it. Its pipe then closes, and _died
        replaces it."""
        if self._closed or self._loop is None:
            return
        now = time.monotonic()
        assert self.kill_after is not None
        for worker in self._live:
            if (
                worker.since is not None
                and not worker.doomed
                and now - worker.since > self.kill_after
            ):
                worker.doomed = True
                log.warning("killing worker process %d: its prediction has run %.0f s, over "
                            "timeout_s", worker.pid, now - worker.since)  # fmt: skip
                with contextlib.suppress(OSError, ValueError):
                    worker.proc.kill()
        self._loop.call_later(self._check_every(), self._check_overdue)

    def _died(self, worker: _Worker) -> None:
        """On the loop: fail the dead process's job, start a replacement in a thread."""
        loop = self._loop
        assert loop is not None
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(worker.conn.fileno())
        worker.conn.close()
        worker.proc.join(0.5)  # its pipe closed: it has exited, or is about to
        with self._lock:
            self._spawned.discard(worker.proc)
        if worker in self._live:
            self._live.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        job, worker.job, worker.since = worker.job, None, None
        code = worker.proc.exitcode
        log.error("worker process %d died (exit code %s)", worker.pid, code)
        if job is not None and not job.done():
            job.set_exception(WorkerDied(
                f"a worker process died while predicting (exit code {code}: killed, out of "
                "memory or a crash in native code); it is replaced"
            ))  # fmt: skip
        if self._closed:
            return
        self._starting += 1
        threading.Thread(target=self._replace, args=(loop,), daemon=True,
                         name="mlops-nb-pool-restart").start()  # fmt: skip

    def _replace(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a thread: start and load one process, retrying with backoff, then hand it
        to the loop."""
        delay = 1.0
        while True:
            try:
                worker = self._spawn()
                try:
                    self._await_ready(worker)
                except BaseException:
                    self._kill(worker)
                    raise
                break
            except Exception as e:
                if self._closed:
                    return
                self.failure = f"a worker process could not be replaced (retrying): {e}"
                log.error("%s", self.failure)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
        try:
            loop.call_soon_threadsafe(self._replaced, worker)
        except RuntimeError:  # the loop is closed: the server is stopping
            self._kill(worker)

    def _replaced(self, worker: _Worker) -> None:
        self._starting -= 1
        if self._closed:
            self._kill(worker)
            return
        self.restarts += 1
        self.failure = None
        self._live.append(worker)
        assert self._loop is not None
        self._loop.add_reader(worker.conn.fileno(), self._answer, worker)
        self._next(worker)

    def problem(self) -> str | None:
        """Why the pool cannot take a job now (no process is running), or None."""
        if self._live:
            return None
        if self.failure:  # a replacement failed (and is retried while _starting)
            return f"no worker process is running: {self.failure}"
        if self._starting:
            return "no worker process is running: replacements are loading"
        return "no worker process is running"

    def close(self, timeout: float = 30.0) -> None:
        """Stop every process: end of input lets an idle one exit; a busy one gets until
        ``timeout`` to finish, then is killed (as is one still loading)."""
        with self._lock:
            self._closed = True
        live = list(self._live)
        self._detach(live)
        self._live, self._idle = [], []
        for worker in live:
            worker.conn.close()
        deadline = time.monotonic() + timeout
        for worker in live:
            worker.proc.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._spawned)
            self._spawned.clear()
        for proc in left:
            if proc.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    proc.kill()
            proc.join(10)

    def _detach(self, workers: list[_Worker]) -> None:
        """Take the pipes off the loop, on the loop's own thread, before they close."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def detach() -> None:
            for worker in workers:
                with contextlib.suppress(ValueError, OSError):
                    loop.remove_reader(worker.conn.fileno())

        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            detach()
            return
        done = threading.Event()

        def detach_and_tell() -> None:
            try:
                detach()
            finally:
                done.set()

        with contextlib.suppress(RuntimeError):  # the loop has stopped: nothing to detach
            loop.call_soon_threadsafe(detach_and_tell)
            done.wait(5.0)

    # -- jobs --------------------------------------------------------------------------------

    async def run(self, batches: list[Batch]) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._attach(loop)
        if not self._live and not self._starting:
            raise PoolUnavailable(self.problem() or "no worker process is running")
        future: asyncio.Future[list[Outcome]] = loop.create_future()
        self._queue.append((pickle.dumps(batches, protocol=pickle.HIGHEST_PROTOCOL), future))
        if self._idle:
            self._next(self._idle.pop())
        return await future

    def _next(self, worker: _Worker) -> None:
        """Give ``worker`` the oldest job still wanted, or mark it idle."""
        if worker.doomed:
            return
        while self._queue:
            payload, future = self._queue.popleft()
            if future.done():  # its request timed out while queued
                continue
            try:
                worker.conn.send_bytes(payload)
            except OSError:
                # The process is gone: the job goes back for another, this one is replaced.
                self._queue.appendleft((payload, future))
                self._died(worker)
                return
            worker.job, worker.since = future, time.monotonic()
            return
        self._idle.append(worker)

    def _answer(self, worker: _Worker) -> None:
        """On the loop, when a process's pipe is readable: its answer, or its end."""
        try:
            message = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._died(worker)
            return
        job, worker.job, worker.since = worker.job, None, None
        try:
            kind, value = pickle.loads(message)
        except Exception as e:
            kind, value = "raised", (type(e).__name__, f"the answer could not be read: {e}", "")
        if job is not None and not job.done():
            if kind == "ok":
                job.set_result(value)
            else:
                error = ModelRaised(value[0], value[1])
                if value[2]:
                    error.add_note(f"in worker process {worker.pid}:\n{value[2]}")
                job.set_exception(error)
        self._next(worker)

    @property
    def pids(self) -> list[int]:
        """The running processes' pids (from any thread: a copy of the list is read)."""
        return [w.pid for w in list(self._live)]

    @property
    def backlog(self) -> int:
        """Jobs handed over that no process has started yet."""
        return sum(not f.done() for _, f in self._queue)

    @property
    def unstarted(self) -> int:
        """Jobs not yet sent to a process, timed-out ones (skipped when their turn comes)
        included."""
        return len(self._queue)

    @property
    def running(self) -> int:
        return sum(w.since is not None for w in self._live)

    def longest(self) -> float:
        """Seconds the oldest running job has been running (0 when idle)."""
        now = time.monotonic()
        return max((now - w.since for w in self._live if w.since is not None), default=0.0)

    def stuck(self, after: float) -> bool:
        return self.longest() > after
