"""Adaptive micro-batching: never wait for company, but share a predict when it is busy.

A request that finds the model idle and no other request in flight is predicted at once,
on the event loop (the server decides, see ``ModelServer.infer``): no thread hand-off for a
lone request. Otherwise requests go through the batcher: those that arrive while a
predict is running queue up, and the next predict takes all of them (up to ``max_rows``)
as one vectorized call. Under no load nothing waits; under load the batch grows with the
queue. A batch that fails is retried request by request, so one bad request cannot fail
the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """Runs ``run(list_of_inputs) -> list_of_outputs`` on one worker thread."""

    def __init__(
        self,
        run: Callable[[list[In]], list[Out]],
        size: Callable[[In], int],
        *,
        max_rows: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self._size = size
        self.max_rows = max_rows
        self._on_batch = on_batch
        self._queue: deque[tuple[In, asyncio.Future[Out]]] = deque()
        self._busy = False
        # The loop keeps only a weak reference to a task: hold the draining one.
        self._drainer: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-nb-predict")

    @property
    def busy(self) -> bool:
        """A predict is running or requests are queued for one."""
        return self._busy or bool(self._queue)

    async def __call__(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._queue.append((item, future))
        if not self._busy:
            self._busy = True
            self._drainer = loop.create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[In, asyncio.Future[Out]]]:
        taken: list[tuple[In, asyncio.Future[Out]]] = []
        rows = 0
        while self._queue:
            item = self._queue[0]
            n = self._size(item[0])
            if taken and rows + n > self.max_rows:
                break
            taken.append(self._queue.popleft())
            rows += n
        return taken

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                taken = self._take()
                inputs = [t[0] for t in taken]
                if self._on_batch is not None:
                    self._on_batch(sum(self._size(i) for i in inputs))
                try:
                    outputs = await loop.run_in_executor(self._pool, self._run, inputs)
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
                        try:
                            out = (await loop.run_in_executor(self._pool, self._run, [item]))[0]
                            if not fut.done():
                                fut.set_result(out)
                        except Exception as e:
                            if not fut.done():
                                fut.set_exception(e)
        finally:
            self._busy = False

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def run_inline(run: Callable[[list[Any]], list[Any]], item: Any) -> Any:
    """Without batching: one request, one predict, on the caller's thread."""
    return run([item])[0]
