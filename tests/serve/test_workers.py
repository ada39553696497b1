"""The worker pool and the batcher on their own: hand-off, stuck detection, spill-over."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from mlops_nb.serve.batching import Batcher
from mlops_nb.serve.workers import WorkerPool

DEADLINE = 30.0


async def until(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {DEADLINE}s")
        await asyncio.sleep(0.005)


def held_at_zero(batches: list[list[int]], release: threading.Event) -> Any:
    """A batch function that records each batch and holds the one of item 0 until
    ``release``."""

    def run(items: list[int]) -> list[int]:
        batches.append(items)
        if items == [0]:
            release.wait(DEADLINE)
        return [i * 10 for i in items]

    return run


def test_pool_runs_off_the_loop_and_reports_a_stuck_job() -> None:
    pool = WorkerPool(2)
    release = threading.Event()
    loop_thread = threading.get_ident()

    def hang(_: object) -> int:
        release.wait(DEADLINE)
        return threading.get_ident()

    async def main() -> None:
        job = asyncio.ensure_future(pool.run(hang, None))
        await until(lambda: pool.running == 1, "running")
        # The loop is free meanwhile: another job runs on the other thread.
        assert await pool.run(lambda x: x * 2, 21) == 42
        await until(lambda: pool.stuck(0.01), "stuck")
        assert not pool.stuck(DEADLINE * 10)
        release.set()
        assert await job != loop_thread
        assert not pool.stuck(0.01) and pool.backlog == 0

    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.close()


def test_pool_passes_errors_and_refuses_no_workers() -> None:
    pool = WorkerPool(1)

    def boom(_: object) -> None:
        raise KeyError("x")

    def leave(_: object) -> None:
        raise SystemExit(3)

    try:
        with pytest.raises(KeyError):
            asyncio.run(pool.run(boom, None))
        # A model's SystemExit fails its request; the one worker lives on for the next.
        with pytest.raises(RuntimeError, match="SystemExit raised while predicting: 3"):
            asyncio.run(pool.run(leave, None))
        assert asyncio.run(pool.run(len, "ok")) == 2
    finally:
        pool.close()
    with pytest.raises(ValueError, match="at least 1"):
        WorkerPool(0)


@pytest.mark.parametrize("spill_after", [0.0, 1e9])
def test_a_second_batch_starts_only_when_the_first_is_slow(spill_after: float) -> None:
    pool = WorkerPool(2)
    release = threading.Event()
    batches: list[list[int]] = []

    run = held_at_zero(batches, release)

    batcher: Batcher[int, int] = Batcher(
        run, lambda _: 1, pool.run, concurrency=2, spill_after=spill_after
    )

    async def main() -> None:
        first = asyncio.ensure_future(batcher(0))
        await until(lambda: pool.running == 1, "running")
        second = asyncio.ensure_future(batcher(1))
        await asyncio.sleep(0)  # let it enqueue
        if spill_after == 0.0:
            # The first batch is "slow" at once: a second drainer serves the queue.
            assert await second == 10
            assert not first.done()
        else:
            assert batcher._running == 1 and batcher.queued == 1
        release.set()
        assert await first == 0 and await second == 10

    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.close()
    assert batches == [[0], [1]]


def test_a_solo_request_holds_the_batcher_and_later_ones_share_the_next_predict() -> None:
    pool = WorkerPool(2)
    release = threading.Event()
    batches: list[list[int]] = []
    sizes: list[int] = []

    run = held_at_zero(batches, release)

    batcher: Batcher[int, int] = Batcher(
        run, lambda _: 1, pool.run, concurrency=2, spill_after=1e9, on_batch=sizes.append
    )

    async def main() -> None:
        solo = asyncio.ensure_future(batcher.solo(0))
        await until(lambda: pool.running == 1, "running")
        assert batcher.busy
        later = [asyncio.ensure_future(batcher(i)) for i in (1, 2)]
        await asyncio.sleep(0)  # let them enqueue
        # They wait behind the solo predict instead of starting one each.
        assert batcher.queued == 2 and pool.running == 1
        release.set()
        assert await solo == 0
        assert [await f for f in later] == [10, 20]
        assert not batcher.busy

    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.close()
    assert batches == [[0], [1, 2]] and sizes == [1, 2]


def test_a_pool_answers_a_new_event_loop_after_the_first_one_closed() -> None:
    pool = WorkerPool(1)
    try:
        assert asyncio.run(pool.run(lambda x: x + 1, 1)) == 2
        assert asyncio.run(pool.run(lambda x: x + 2, 1)) == 3
    finally:
        pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(pool.run(lambda x: x, 1))


def test_requests_that_time_out_while_waiting_are_never_run() -> None:
    """Through the batcher and alone: a batch whose requests all gave up is withdrawn,
    and the thread that frees up skips it; the backlog counts only what is still wanted."""
    pool = WorkerPool(1)
    batches: list[list[int]] = []
    release = threading.Event()
    run = held_at_zero(batches, release)
    # Two batches may run at once, but there is one thread: the second waits in the pool.
    batcher = Batcher(run, size=lambda _: 1, execute=pool.run, concurrency=2, spill_after=0.0)

    async def main() -> None:
        hold = asyncio.create_task(batcher.solo(0))  # the one thread is busy until release
        await until(lambda: batches == [[0]], "item 0 started")
        for item in (1, 2):  # handed to the pool by a second drainer, to wait for the thread
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await batcher(item)
        with pytest.raises(TimeoutError):  # straight to the pool, as a lone request goes
            async with asyncio.timeout(0.3):
                await pool.run(run, [3])
        assert (batcher.queued, pool.backlog) == (0, 0)
        release.set()
        assert await hold == 0
        assert await batcher(4) == 40  # the freed thread skipped both withdrawn jobs
        assert pool.backlog == 0

    asyncio.run(main())
    pool.close()
    assert batches == [[0], [4]]
