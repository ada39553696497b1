"""The loop driver: lone predictions on the loop's own thread, the loop paused and watched.

Real threads and real event loops (asyncio's and uvloop's, which the server uses); the
slow model is a job blocked on an Event the test releases.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

import mlops_nb as mnb
from mlops_nb.serve.driver import LoopDriver
from mlops_nb.serve.spec import ServeSpec
from mlops_nb.serve.workers import WorkerPool

from .conftest import register_doubler

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def new_loop(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    return LOOPS[request.param]


async def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


def driver_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("mlops-nb-loop")]


def test_a_lone_job_runs_where_the_loop_ran_with_the_loop_stopped(new_loop: Any) -> None:
    loop = new_loop()
    driver = LoopDriver(loop)
    seen: dict[str, Any] = {}

    def job(x: int) -> int:
        seen["thread"] = threading.get_ident()
        seen["running"] = loop.is_running()
        return x * 2

    async def main() -> tuple[int, int, int]:
        before = threading.get_ident()
        out = await driver.run(job, 21)
        return out, before, threading.get_ident()

    out, before, after = driver.serve(main())
    assert out == 42
    # No thread was woken: the one that ran the loop predicted, then ran it again.
    assert seen["thread"] == before == after != threading.get_ident()
    assert seen["running"] is False
    assert (driver.paused, driver.rescued) == (1, 0)
    assert loop.is_closed()


def test_a_hung_job_is_rescued_and_the_loop_keeps_running(new_loop: Any) -> None:
    loop = new_loop()
    driver = LoopDriver(loop, rescue_after=0.005)
    release = threading.Event()
    threads: dict[str, int] = {}

    def hang(_: None) -> str:
        threads["predicted"] = threading.get_ident()
        release.wait(60)
        return "late"

    async def main() -> None:
        await until(driver.available)  # the standby watches
        threads["before"] = threading.get_ident()
        t0 = time.monotonic()
        answer = driver.run(hang, None)
        # A timer fires only once the loop runs again: the standby has taken it over.
        await asyncio.sleep(0.001)
        resumed = time.monotonic() - t0
        threads["after"] = threading.get_ident()
        # Generous for a loaded machine; the standby polls every 5 ms.
        assert resumed < 1.0, resumed
        ticks = 0
        while ticks < 10:  # the loop turns while the job hangs
            await asyncio.sleep(0.01)
            ticks += 1
        assert not answer.done()
        assert driver.rescued == 1 and driver.running == 1 and driver.longest() > 0.05
        # Its thread is still in the job: no standby, so no lone job until it returns.
        assert not driver.available()
        release.set()
        assert await asyncio.wait_for(answer, 30) == "late"
        await until(driver.available)  # the old runner watches now
        release.clear()
        second = driver.run(hang, None)
        await until(lambda: driver.rescued == 2)
        assert threads["predicted"] == threads["after"]  # the rescuer predicted this one
        release.set()
        assert await asyncio.wait_for(second, 30) == "late"

    driver.serve(main())
    assert threads["after"] != threads["before"]


def test_errors_reach_the_awaiting_coroutine(new_loop: Any) -> None:
    driver = LoopDriver(new_loop())

    def boom(_: None) -> None:
        raise ValueError("bad row")

    def leave(_: None) -> None:
        raise SystemExit(3)

    async def main() -> None:
        with pytest.raises(ValueError, match="bad row"):
            await driver.run(boom, None)
        # On the loop's thread a SystemExit would stop the server: it is an error instead.
        with pytest.raises(RuntimeError, match="SystemExit raised while predicting: 3"):
            await driver.run(leave, None)
        assert await driver.run(len, "ok") == 2
        with pytest.raises(RuntimeError, match="already handed over"):
            driver.run(len, "a")
            driver.run(len, "b")

    driver.serve(main())


def test_a_request_that_gives_up_leaves_the_late_answer_unused(new_loop: Any) -> None:
    driver = LoopDriver(new_loop(), rescue_after=0.005)
    release = threading.Event()

    async def main() -> None:
        await until(driver.available)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(driver.run(lambda _: release.wait(60), None), 0.2)
        release.set()
        await until(driver.available)
        assert driver.running == 0 and driver.longest() == 0.0
        assert await driver.run(sum, [1, 2]) == 3

    driver.serve(main())


def voluntary_switches(thread: threading.Thread) -> int:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def test_the_standby_sleeps_when_idle_and_still_rescues(new_loop: Any) -> None:
    driver = LoopDriver(new_loop(), rescue_after=0.005, idle_after=0.1)
    release = threading.Event()

    async def main() -> None:
        await until(driver.available)
        assert await driver.run(len, "x") == 1  # polling starts: a lone job came
        (standby,) = [t for t in driver_threads() if t.ident != threading.get_ident()]
        await asyncio.sleep(0.3)  # idle for longer than idle_after
        before = voluntary_switches(standby)
        await asyncio.sleep(0.5)
        # Polling every 5 ms would be ~100 wake-ups; asleep, none.
        assert voluntary_switches(standby) - before <= 3
        answer = driver.run(lambda _: release.wait(60), None)
        await until(lambda: driver.rescued == 1, timeout=1.0)  # woken by the job

        release.set()
        assert await asyncio.wait_for(answer, 30) is True

    driver.serve(main())


def test_serve_returns_or_raises_what_main_does_and_its_threads_end(new_loop: Any) -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise KeyError("no such model")

    loop = new_loop()
    with pytest.raises(KeyError, match="no such model"):
        LoopDriver(loop).serve(fails())
    assert loop.is_closed()
    deadline = time.monotonic() + 30
    while driver_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert driver_threads() == []


def test_the_pool_counts_a_lone_predict_against_its_workers(new_loop: Any) -> None:
    """workers=1 means one predict at a time, the one on the loop's thread included: a
    model that is not safe to call concurrently stays safe."""
    driver = LoopDriver(new_loop(), rescue_after=0.005)
    pool = WorkerPool(1)
    pool.lone = driver
    release = threading.Event()
    running = 0
    most = 0
    lock = threading.Lock()

    def model(x: float) -> float:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            if x < 0:
                release.wait(60)
            return x
        finally:
            with lock:
                running -= 1

    async def main() -> None:
        await until(driver.available)
        slow = asyncio.ensure_future(pool.run(model, -1.0, lone=True))
        await until(lambda: driver.rescued == 1)
        assert pool.running == 1 and pool.longest() > 0
        other = asyncio.ensure_future(pool.run(model, 2.0))  # not lone: the one worker
        await asyncio.sleep(0.3)
        assert not other.done()  # it waits for room, counted in the backlog
        assert pool.backlog == 1
        # A lone request now finds the pool busy: it queues too, not on the loop's thread.
        third = asyncio.ensure_future(pool.run(model, 3.0, lone=True))
        await asyncio.sleep(0.05)
        assert driver.paused == 1 and not third.done()
        release.set()
        assert await asyncio.wait_for(asyncio.gather(slow, other, third), 30) == [-1.0, 2.0, 3.0]

    try:
        driver.serve(main())
    finally:
        pool.close()
    assert most == 1


def test_a_system_exit_from_the_server_ends_serve_as_it_is(new_loop: Any) -> None:
    async def startup_fails() -> None:
        await asyncio.sleep(0)
        raise SystemExit(3)  # what uvicorn does when it cannot bind its port

    with pytest.raises(SystemExit) as exit_info:
        LoopDriver(new_loop()).serve(startup_fails())
    assert exit_info.value.code == 3


def test_a_server_whose_port_is_taken_exits_as_uvicorn_does(
    ws: mnb.Workspace, tmp_path: Path
) -> None:
    spec = ServeSpec.of(register_doubler(ws)).write(tmp_path / "spec.json")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "mlops_nb.serve", "--spec", str(spec), "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "address already in use" in done.stderr and "Traceback" not in done.stderr
