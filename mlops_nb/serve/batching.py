"""Adaptive micro-batching: never wait for company, but share a predict when it is busy.

A request that finds the model idle and no other request in flight goes straight to a
predict of its own (:meth:`Batcher.solo`, through ``solo_execute``: the server's runs it
on the event loop's thread, paused; see ``ModelServer._predict``),
and counts as a running batch. Otherwise requests go through the batcher: those that
arrive while predicts are running queue up, and the next free worker takes all of them
(up to ``max_rows``) as one vectorized call. Under no load
nothing waits; under load the batch grows with the queue. A batch that fails is retried
request by request, so one bad request cannot fail the others. A request that gave up
waiting (its timeout passed) is left out of the next batch.

One batch runs at a time while batches are quick: two would split the queue into smaller
batches and fight over the GIL. A second batch (up to ``concurrency``) starts only when
the running one has taken longer than ``spill_after`` seconds, so a slow or hung batch
does not hold up the requests queued behind it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

Execute = Callable[[Callable[[list[Any]], list[Any]], list[Any]], Awaitable[list[Any]]]


class Batcher(Generic[In, Out]):
    """Runs ``run(list_of_inputs) -> list_of_outputs`` through ``execute`` (a worker pool),
    at most ``concurrency`` batches at a time."""

    def __init__(
        self,
        run: Callable[[list[In]], list[Out]],
        size: Callable[[In], int],
        execute: Execute,
        *,
        max_rows: int = 64,
        concurrency: int = 1,
        spill_after: float = 0.05,
        on_batch: Callable[[int], None] | None = None,
        solo_execute: Execute | None = None,
    ) -> None:
        self._run = run
        self._size = size
        self._execute = execute
        self._solo_execute = solo_execute or execute  # for solo(): nothing else in flight
        self.max_rows = max_rows
        self.concurrency = concurrency
        self.spill_after = spill_after
        self._on_batch = on_batch
        self._since: dict[int, float] = {}  # drainer -> when its running batch started
        self._queue: deque[tuple[In, asyncio.Future[Out]]] = deque()
        self._running = 0
        # The loop keeps only a weak reference to a task: hold the draining ones.
        self._drainers: set[asyncio.Task[None]] = set()

    @property
    def busy(self) -> bool:
        """A predict is running or requests are queued for one."""
        return self._running > 0 or bool(self._queue)

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def __call__(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._queue.append((item, future))
        self._start(loop)
        try:
            return await future
        except asyncio.CancelledError:
            # Timed out while queued: out of the queue now, so max_queue counts only the
            # requests still waiting.
            for i, (_, queued) in enumerate(self._queue):
                if queued is future:
                    del self._queue[i]
                    break
            raise

    async def solo(self, item: In) -> Out:
        """Run one item now, as a batch of its own: the path of a request that found the
        model idle. It counts as a running batch, so requests that arrive meanwhile queue
        and share the next predict instead of starting one each."""
        me = id(asyncio.current_task())  # keyed like a drainer's running batch
        self._running += 1
        self._since[me] = time.monotonic()
        if self._on_batch is not None:
            self._on_batch(self._size(item))
        try:
            out: Out = (await self._solo_execute(self._run, [item]))[0]
            return out
        finally:
            self._since.pop(me, None)
            self._running -= 1
            if self._queue:
                self._start(asyncio.get_running_loop())

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a drainer if none runs, or another if the running ones are slow."""
        if self._running < self.concurrency and (
            self._running == 0 or self._oldest() > self.spill_after
        ):
            self._running += 1
            task = loop.create_task(self._drain())
            self._drainers.add(task)
            task.add_done_callback(self._drainers.discard)

    def _oldest(self) -> float:
        """Seconds the longest-running batch has run (0 before any has started)."""
        now = time.monotonic()
        return now - min(self._since.values(), default=now)

    def _take(self) -> list[tuple[In, asyncio.Future[Out]]]:
        taken: list[tuple[In, asyncio.Future[Out]]] = []
        rows = 0
        while self._queue:
            item = self._queue[0]
            if item[1].done():  # timed out while queued
                self._queue.popleft()
                continue
            n = self._size(item[0])
            if taken and rows + n > self.max_rows:
                break
            taken.append(self._queue.popleft())
            rows += n
        return taken

    async def _unless_abandoned(
        self, taken: list[tuple[In, asyncio.Future[Out]]], inputs: list[In]
    ) -> list[Out] | None:
        """The batch's outputs; None once every request in it has timed out: the batch is
        withdrawn (a worker that has not started it skips it)."""
        job = asyncio.ensure_future(self._execute(self._run, inputs))

        def withdraw(_: object) -> None:
            if not job.done() and all(f.done() for _, f in taken):
                job.cancel()

        for _, fut in taken:
            fut.add_done_callback(withdraw)
        try:
            return await job
        except asyncio.CancelledError:
            task = asyncio.current_task()
            withdrawn = job.cancelled() and all(f.done() for _, f in taken)
            if withdrawn and task is not None and not task.cancelling():
                return None
            raise

    async def _drain(self) -> None:
        me = id(asyncio.current_task())
        try:
            while self._queue:
                taken = self._take()
                if not taken:
                    break
                inputs = [t[0] for t in taken]
                if self._on_batch is not None:
                    self._on_batch(sum(self._size(i) for i in inputs))
                self._since[me] = time.monotonic()
                try:
                    outputs = await self._unless_abandoned(taken, inputs)
                    if outputs is None:
                        continue
                    for (_, fut), out in zip(taken, outputs, strict=True):
                        if not fut.done():
                            fut.set_result(out)
                except Exception as batch_error:
                    if len(taken) == 1:
                        _, fut = taken[0]
                        if not fut.done():
                            fut.set_exception(batch_error)
                        continue
                    for item, fut in taken:
                        if fut.done():  # its request timed out: nobody waits for it
                            continue
                        try:
                            out = (await self._execute(self._run, [item]))[0]
                            if not fut.done():
                                fut.set_result(out)
                        except Exception as e:
                            if not fut.done():
                                fut.set_exception(e)
        finally:
            self._since.pop(me, None)
            self._running -= 1
