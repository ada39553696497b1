"""Predictions off the event loop: a fixed pool of worker threads with a fast hand-off.

The event loop only parses and answers HTTP; no predict runs on it (a worker thread, or
for a lone request the loop's thread with the loop paused, see below), so a slow or
hung model never stops health checks or other requests. Threads, not processes:
scikit-learn and numpy release the GIL in their compiled parts, and a thread hand-off
costs microseconds where a process would copy every batch. A model that holds the GIL in
pure Python still leaves the loop its share (the interpreter switches threads every few
milliseconds).

The hand-off wakes each side with one byte through a pipe, written with ``os.write``,
which lets go of the GIL for the system call. The woken thread finds the GIL free and
runs at once; waking it while holding the GIL (``queue.SimpleQueue`` forward,
``call_soon_threadsafe`` back, as this pool did before) makes it wait for the GIL and
costs extra context switches each way. ``benchmarks/serve.py`` (``handoff``, one core):
a median round trip of 12 µs, against 30 µs through ``loop.run_in_executor``.

A lone request need not wake a thread at all: with a :class:`~.driver.LoopDriver` as
``lone`` (the server's, see ``python -m mlops_nb.serve``), ``run(..., lone=True)`` predicts
on the event loop's thread with the loop paused and watched, and falls back to a worker
when that is not possible. It runs only when the pool is idle, and while it runs (a slow
one, whose loop the driver's standby took over) workers start jobs only as long as at
most ``workers`` predicts run at once, wherever they run: a model that is not safe to
call concurrently is served with ``workers=1``. It counts in :attr:`running` and
:meth:`longest`.

A job running longer than ``stuck_after`` seconds makes :meth:`WorkerPool.stuck` true,
so the server reports not ready and a router stops sending it work. A pool answers one
event loop at a time (the server's).

>>> import asyncio
>>> pool = WorkerPool(1)
>>> asyncio.run(pool.run(sum, [1, 2]))
3
>>> pool.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .driver import LoopDriver

T = TypeVar("T")
_Job = tuple[Callable[[Any], Any], Any, "asyncio.Future[Any]"]
_Done = tuple["asyncio.Future[Any]", Any, BaseException | None]


def settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    # The request may have timed out (future cancelled) while the model kept running.
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def call(fn: Callable[[Any], Any], arg: Any) -> tuple[Any, BaseException | None]:
    """``fn(arg)``'s result and error, for whoever settles its future. A SystemExit (or
    other BaseException) from a model is an error of its request: left to propagate, it
    would end the thread that ran it (a worker, or the loop's)."""
    try:
        return fn(arg), None
    except Exception as e:
        return None, e
    except BaseException as e:
        return None, RuntimeError(f"{type(e).__name__} raised while predicting: {e}")


class WorkerPool:
    """``workers`` threads running ``fn(arg)`` jobs handed over from the event loop."""

    def __init__(self, workers: int, name: str = "mlops-nb-predict") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        # deque.append and popleft are atomic: the pipes only count and wake.
        self._jobs: deque[_Job | None] = deque()
        self._done: deque[_Done] = deque()
        # Forward: one byte per job, read (blocking, GIL released) by an idle worker. Jobs
        # not yet picked up, timed-out ones included, are bounded by the server (a multiple
        # of max_queue: see unstarted), far below a pipe's capacity.
        self._job_r, self._job_w = os.pipe()
        # Back: one byte per finished job, read by the loop; non-blocking on both ends.
        self._done_r, self._done_w = os.pipe()
        os.set_blocking(self._done_r, False)
        os.set_blocking(self._done_w, False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # One slot per thread, written by that thread only: no lock on the hot path.
        self._since: list[float | None] = [None] * workers
        self._claimed = [False] * workers  # the thread has taken (or is taking) a job
        self._waiting: list[asyncio.Future[Any] | None] = [None] * workers  # for room
        self._started = [0] * workers
        self.submitted = 0  # written on the event loop only
        self.lone: LoopDriver | None = None  # predicts lone jobs on the loop's thread
        self._room = threading.Lock()  # workers starting jobs beside a lone predict
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    async def run(self, fn: Callable[[Any], T], arg: Any, lone: bool = False) -> T:
        """``fn(arg)`` on a worker thread; ``lone=True`` (nothing else is in flight) lets
        the loop's own thread run it instead, when ``self.lone`` can."""
        if lone and self.lone is not None and self._idle() and self.lone.available():
            return await self.lone.run(fn, arg)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._attach(loop)
        future: asyncio.Future[T] = loop.create_future()
        self.submitted += 1
        self._jobs.append((fn, arg, future))
        os.write(self._job_w, b"j")
        return await future

    def _idle(self) -> bool:
        """No job queued, taken or running (on the loop's thread: nothing can be handed
        over meanwhile). A thread marks a job taken before it takes it from the queue."""
        return not self._jobs and not any(self._claimed)

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer ``loop`` from now on (the first call, or a new loop after the old one)."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        old = self._loop
        if old is not None and not old.is_closed():
            with contextlib.suppress(RuntimeError, ValueError):
                old.remove_reader(self._done_r)
        loop.add_reader(self._done_r, self._drain)
        self._loop = loop

    def _drain(self) -> None:
        """On the loop: settle every finished job (one wake may stand for several)."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._done_r, 65536)
        done, loop = self._done, self._loop
        while done:
            future, result, error = done.popleft()
            if future.get_loop() is loop:
                settle(future, result, error)
            else:  # a job handed over by a loop the pool no longer answers
                with contextlib.suppress(RuntimeError):
                    future.get_loop().call_soon_threadsafe(settle, future, result, error)

    def _work(self, index: int) -> None:
        while True:
            os.read(self._job_r, 1)
            self._claimed[index] = True
            job = self._jobs.popleft()
            if job is None:
                return
            fn, arg, future = job
            lone = self.lone
            if lone is not None and lone.running and not future.cancelled():
                self._make_room(index, lone, future)
            if future.cancelled():  # its request timed out while it waited: nobody wants it
                self._started[index] += 1
                self._since[index] = None
                self._claimed[index] = False
                continue
            self._started[index] += 1
            if self._since[index] is None:
                self._since[index] = time.monotonic()
            result, error = call(fn, arg)
            self._since[index] = None
            self._claimed[index] = False
            self._done.append((future, result, error))
            # A full pipe already holds a wake-up the loop has not read; a closed one
            # means the server is shutting down and nobody waits for this.
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._done_w, b"d")

    def _make_room(self, index: int, lone: LoopDriver, future: asyncio.Future[Any]) -> None:
        """Beside a (slow) lone predict: start only while fewer than ``workers`` predicts
        run, the lone one included; poll until then (a rare wait: the loop's thread is
        stuck in a predict and every other worker busy). On return ``_since`` is set, or
        the job is no longer wanted."""
        self._waiting[index] = future
        try:
            while not future.cancelled():
                with self._room:  # two threads must not both take the last room
                    others = sum(s is not None for i, s in enumerate(self._since) if i != index)
                    if others + lone.running < self.workers:
                        self._since[index] = time.monotonic()
                        return
                time.sleep(0.005)
        finally:
            self._waiting[index] = None

    @property
    def unstarted(self) -> int:
        """Jobs handed over that no thread has picked up yet, wanted or not: a timed-out
        one stays until a free thread skips it."""
        return max(0, self.submitted - sum(self._started))

    @property
    def backlog(self) -> int:
        """Jobs handed over that no thread has started yet and someone still waits for."""
        if not self.unstarted:
            return 0
        # A copy (one C call, so no thread's popleft runs inside it) to count from.
        queued = sum(job is not None and not job[2].done() for job in list(self._jobs))
        return queued + sum(f is not None and not f.done() for f in list(self._waiting))

    @property
    def running(self) -> int:
        lone = self.lone.running if self.lone is not None else 0
        return lone + sum(s is not None for s in self._since)

    def longest(self) -> float:
        """Seconds the oldest running job has been running (0 when idle)."""
        now = time.monotonic()
        lone = self.lone.longest() if self.lone is not None else 0.0
        return max(lone, max((now - s for s in self._since if s is not None), default=0.0))

    def stuck(self, after: float) -> bool:
        """A job has been running for longer than ``after`` seconds. A hung thread cannot
        be taken back, so the replica is better replaced than kept half able."""
        return self.longest() > after

    def close(self, timeout: float = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.append(None)
            os.write(self._job_w, b"q")
        deadline = time.monotonic() + timeout
        for t in self._threads:
            # A hung model cannot be interrupted: give up on it after the deadline.
            t.join(max(0.0, deadline - time.monotonic()))
        loop = self._loop
        if loop is None or loop.is_closed():
            self._release()
        else:
            # The loop's own thread must take the reader off (close may run in another).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_reader(self._done_r)
        self._loop = None
        # A thread still in a hung model would write to whatever file reused the number.
        if all(not t.is_alive() for t in self._threads):
            for fd in (self._job_r, self._job_w, self._done_r, self._done_w):
                os.close(fd)
