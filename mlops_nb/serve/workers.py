"""Predictions off the event loop: a fixed pool of worker threads with a fast hand-off.

The event loop only parses and answers HTTP; every predict runs on a worker thread, so a
slow or hung model never stops health checks or other requests. Threads, not processes:
scikit-learn and numpy release the GIL in their compiled parts, and a thread hand-off
costs tens of microseconds where a process would copy every batch. A model that holds the
GIL in pure Python still leaves the loop its share (the interpreter switches threads
every few milliseconds).

The hand-off is a ``SimpleQueue`` to threads started up front, and one
``call_soon_threadsafe`` back: no executor bookkeeping on the lone-request path (a
median round trip of 42 µs where ``loop.run_in_executor`` took 61 µs, in
``benchmarks/serve.py``).
A job running longer than ``stuck_after`` seconds makes :meth:`WorkerPool.stuck` true, so
the server reports not ready and a router stops sending it work.

>>> import asyncio
>>> pool = WorkerPool(1)
>>> asyncio.run(pool.run(sum, [1, 2]))
3
>>> pool.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[Callable[[Any], Any], Any, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    # The request may have timed out (future cancelled) while the model kept running.
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class WorkerPool:
    """``workers`` threads running ``fn(arg)`` jobs handed over from the event loop."""

    def __init__(self, workers: int, name: str = "mlops-nb-predict") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # One slot per thread, written by that thread only: no lock on the hot path.
        self._since: list[float | None] = [None] * workers
        self._started = [0] * workers
        self.submitted = 0  # written on the event loop only
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    async def run(self, fn: Callable[[Any], T], arg: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self.submitted += 1
        self._jobs.put((fn, arg, loop, future))
        return await future

    def _work(self, index: int) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, arg, loop, future = job
            self._started[index] += 1
            self._since[index] = time.monotonic()
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(arg)
            except Exception as e:
                error = e
            finally:
                self._since[index] = None
            # A closed loop means the server is shutting down: nobody waits for this.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)

    @property
    def backlog(self) -> int:
        """Jobs handed over that no thread has started yet."""
        return max(0, self.submitted - sum(self._started))

    @property
    def running(self) -> int:
        return sum(s is not None for s in self._since)

    def longest(self) -> float:
        """Seconds the oldest running job has been running (0 when idle)."""
        now = time.monotonic()
        return max((now - s for s in self._since if s is not None), default=0.0)

    def stuck(self, after: float) -> bool:
        """A job has been running for longer than ``after`` seconds. A hung thread cannot
        be taken back, so the replica is better replaced than kept half able."""
        return self.longest() > after

    def close(self, timeout: float = 30.0) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            # A hung model cannot be interrupted: give up on it after the deadline.
            t.join(max(0.0, deadline - time.monotonic()))
