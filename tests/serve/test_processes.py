"""``pool="processes"``: predictions in worker processes, for models that hold the GIL."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

import mlops_nb as mnb
from mlops_nb.deploy.options import check_server
from mlops_nb.errors import InvalidArgument
from mlops_nb.serve.spec import ServeSpec

from .conftest import Server
from .test_errors import assert_error
from .test_payload import wait_for
from .test_slow import body, in_background, sleepy, stats

DEADLINE = 60.0


class Rendezvous:
    """Pure Python that holds the GIL: each predict leaves its pid in ``folder``, then
    spins until ``n`` different processes have done so, and answers its pid. Threads of
    one process leave one pid between them, so they could never meet."""

    def __init__(self, folder: str, n: int) -> None:
        self.folder = folder
        self.n = n

    def predict(self, X: pd.DataFrame) -> np.ndarray[Any, Any]:
        if not os.path.isdir(self.folder):  # registration infers the output from a predict
            return np.full(len(X), float(os.getpid()))
        Path(self.folder, str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(os.listdir(self.folder)) < self.n and time.monotonic() < deadline:
            sum(range(1000))
        return np.full(len(X), float(os.getpid()))


class Mortal:
    """Answers its pid; a negative ``x`` kills the process that predicts it."""

    def predict(self, X: pd.DataFrame) -> np.ndarray[Any, Any]:
        if (X["x"].to_numpy() < 0).any():
            os._exit(3)
        return np.full(len(X), float(os.getpid()))


class ServerOnly:
    """Loads in the server process, refuses to load in a worker process."""

    def __init__(self) -> None:
        self.loaded_by = "registry"

    def __setstate__(self, state: dict[str, Any]) -> None:
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            raise RuntimeError("this model refuses to load in a worker process")
        self.__dict__.update(state)

    def predict(self, X: pd.DataFrame) -> np.ndarray[Any, Any]:
        return np.zeros(len(X))


class BlockedWhile:
    """Refuses to load in a worker process while the file ``marker`` exists."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        import multiprocessing

        if multiprocessing.parent_process() is not None and os.path.exists(state["marker"]):
            raise RuntimeError("blocked by the marker file")
        self.__dict__.update(state)

    def predict(self, X: pd.DataFrame) -> np.ndarray[Any, Any]:
        return np.full(len(X), float(os.getpid()))


def register(ws: mnb.Workspace, name: str, model: Any) -> mnb.ModelVersion:
    # Pickled by value, as a class defined in a notebook is: the server cannot import tests.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        return ws.model(name).register(
            model, flavor="python", input_example=pd.DataFrame({"x": [1.0]})
        )
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def pool_pids(server: Server) -> set[int]:
    """The server's worker processes (its children that run multiprocessing's spawn)."""
    return {
        c.pid for c in psutil.Process(server.proc.pid).children()
        if "resource_tracker" not in " ".join(c.cmdline())
    }  # fmt: skip


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for a parent that does not reap counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def infer_x(server: Server, x: float, model: str) -> httpx.Response:
    return server.client.post(f"/v2/models/{model}/infer", json=body(x), timeout=DEADLINE)


def test_pure_python_predictions_run_in_parallel_processes(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    meet = tmp_path / "meet"
    v = register(ws, "meet", Rendezvous(str(meet), 2))
    meet.mkdir()
    server = start(ServeSpec.of(v, pool="processes", workers=2, batching=False))
    assert stats(server)["pool"] == "processes" and stats(server)["workers"] == 2
    workers = pool_pids(server)
    assert len(workers) == 2 and server.proc.pid not in workers
    assert set(stats(server)["worker_pids"]) == workers
    # The replica's memory counts its worker processes' too.
    own = psutil.Process(server.proc.pid).memory_info().rss
    assert (
        stats(server)["process"]["rss_bytes"]
        > own + sum(psutil.Process(p).memory_info().rss for p in workers) * 0.8
    )

    out: list[httpx.Response] = []

    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=DEADLINE) as c:
            out.append(c.post("/v2/models/meet/infer", json=body(1.0)))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE + 10)
    assert [r.status_code for r in out] == [200, 200], [r.text for r in out]
    answered = {int(r.json()["outputs"][0]["data"][0]) for r in out}
    # Two processes predicted at the same time, each holding its own GIL.
    assert answered == workers == {int(p.name) for p in meet.iterdir()}


def test_a_hung_prediction_in_a_process_is_killed_and_replaced(
    ws: mnb.Workspace, start: Any
) -> None:
    server = start(ServeSpec.of(sleepy(ws), pool="processes", workers=2, timeout_s=8.0,
                                stuck_after_s=1.0, batching=False))  # fmt: skip
    before = set(stats(server)["worker_pids"])
    slow: list[httpx.Response] = []
    thread = in_background(server, 120.0, slow)
    wait_for(lambda: stats(server)["longest_predict_s"] > 0)
    for _ in range(5):
        assert server.client.get("/v2/health/live", timeout=1.0).status_code == 200
    fast = server.infer(body(0.0))
    assert fast.status_code == 200 and fast.json()["outputs"][0]["data"] == [0.0], fast.text
    # Past stuck_after_s: not ready, as with threads.
    seen: list[httpx.Response] = []
    wait_for(lambda: seen.append(server.client.get("/v2/health/ready")) or
             seen[-1].status_code == 503)  # fmt: skip
    assert "stuck_after_s=1" in seen[-1].json()["error"]
    thread.join(timeout=60)
    assert_error(slow[0], 504, "timeout_s=8")
    # Past timeout_s nobody waits for that prediction: its process is killed and replaced,
    # long before the model would have returned.
    wait_for(lambda: stats(server)["worker_restarts"] == 1, timeout=DEADLINE)
    after = set(stats(server)["worker_pids"])
    assert len(after) == 2 and len(after & before) == 1
    (hung,) = before - after
    wait_for(lambda: gone(hung))
    wait_for(lambda: server.client.get("/v2/health/ready").status_code == 200)
    assert stats(server)["stuck"] is False
    assert server.infer(body(0.0)).status_code == 200


def test_a_worker_process_that_dies_is_replaced(ws: mnb.Workspace, start: Any) -> None:
    server = start(ServeSpec.of(register(ws, "mortal", Mortal()), pool="processes", workers=2,
                                batching=False))  # fmt: skip
    before = set(stats(server)["worker_pids"])
    assert before == pool_pids(server) and len(before) == 2
    assert infer_x(server, 1.0, "mortal").status_code == 200

    dead = infer_x(server, -1.0, "mortal")
    assert_error(dead, 500, "worker process died while predicting", "exit code 3")
    # Only that request fails: the other process goes on serving meanwhile.
    alive = infer_x(server, 2.0, "mortal")
    assert alive.status_code == 200, alive.text
    survivor = int(alive.json()["outputs"][0]["data"][0])
    assert survivor in before
    assert server.client.get("/v2/health/ready").status_code == 200
    wait_for(lambda: stats(server)["worker_restarts"] == 1, timeout=DEADLINE)
    after = set(stats(server)["worker_pids"])
    assert after == pool_pids(server) and len(after) == 2 and after & before == {survivor}
    assert all(gone(p) for p in before - after)


def test_with_no_process_left_the_replica_is_not_ready(ws: mnb.Workspace, start: Any) -> None:
    server = start(ServeSpec.of(register(ws, "mortal", Mortal()), pool="processes", workers=1,
                                batching=False))  # fmt: skip
    (first,) = stats(server)["worker_pids"]
    assert_error(infer_x(server, -1.0, "mortal"), 500, "worker process died")
    # The replacement takes far longer to load than this request takes.
    ready = server.client.get("/v2/health/ready")
    assert ready.status_code == 503, ready.text
    assert "replacements are loading" in ready.json()["error"]
    # A request meanwhile waits for it (within timeout_s) rather than failing.
    r = infer_x(server, 1.0, "mortal")
    assert r.status_code == 200, r.text
    (second,) = stats(server)["worker_pids"]
    assert second != first and int(r.json()["outputs"][0]["data"][0]) == second
    assert server.client.get("/v2/health/ready").status_code == 200


def test_a_model_error_in_a_process_is_a_500_naming_it(ws: mnb.Workspace, start: Any) -> None:
    from .conftest import register_doubler

    server = start(ServeSpec.of(register_doubler(ws), pool="processes", workers=2))
    r = server.client.post("/v2/models/doubler/infer", json={
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [-1.0]}]})  # fmt: skip
    assert_error(r, 500, "model raised ValueError: x must not be negative")
    assert stats(server)["worker_restarts"] == 0


def test_a_model_that_cannot_load_in_a_worker_process_names_why(
    ws: mnb.Workspace, start: Any
) -> None:
    v = register(ws, "server-only", ServerOnly())
    # The same version loads and serves on threads.
    threads = start(ServeSpec.of(v, batching=False))
    assert infer_x(threads, 1.0, "server-only").status_code == 200

    server = start(ServeSpec.of(v, pool="processes", workers=2), ready=False)
    r = server.wait_load_failed()
    assert r.status_code == 503
    error = r.json()["error"]
    assert "worker process could not load the model" in error
    assert "refuses to load in a worker process" in error
    wait_for(lambda: not pool_pids(server), timeout=DEADLINE)
    assert_error(infer_x(server, 1.0, "server-only"), 503, "refuses to load")


def test_worker_processes_stop_with_the_server(ws: mnb.Workspace, tmp_path: Path) -> None:
    v = sleepy(ws)
    graceful = Server(ServeSpec.of(v, pool="processes", workers=2), tmp_path / "graceful")
    killed = Server(ServeSpec.of(v, pool="processes", workers=2), tmp_path / "killed")
    try:
        graceful.wait_ready()
        killed.wait_ready()
        g, k = pool_pids(graceful), pool_pids(killed)
        assert len(g) == len(k) == 2
        # Every process the server started (multiprocessing's resource tracker too).
        g |= {c.pid for c in psutil.Process(graceful.proc.pid).children(recursive=True)}
        k |= {c.pid for c in psutil.Process(killed.proc.pid).children(recursive=True)}
        # SIGTERM to the processes (a process group stopped at once): each finishes the
        # prediction in hand, then exits, and the pool replaces it.
        held: list[httpx.Response] = []
        thread = in_background(graceful, 1.5, held)
        wait_for(lambda: stats(graceful)["longest_predict_s"] > 0)
        for pid in stats(graceful)["worker_pids"]:
            os.kill(pid, signal.SIGTERM)
        thread.join(DEADLINE)
        assert held[0].status_code == 200 and held[0].json()["outputs"][0]["data"] == [3.0]
        wait_for(lambda: stats(graceful)["worker_restarts"] == 2, timeout=DEADLINE)
        g |= set(stats(graceful)["worker_pids"])
        assert infer_x(graceful, 0.0, "sleepy").status_code == 200
        # SIGTERM to the server: it drains, then stops its processes.
        graceful.stop()
        # The resource tracker ends once the server has: it reads the end of its pipe.
        wait_for(lambda: all(gone(p) for p in g), timeout=DEADLINE)
        # SIGKILL: nobody stops them; they notice the server is gone and exit.
        killed.proc.kill()
        killed.proc.wait(10)
        wait_for(lambda: all(gone(p) for p in k), timeout=DEADLINE)
    finally:
        for s in (graceful, killed):
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait(10)


def test_the_pool_option_is_checked() -> None:
    assert check_server({"pool": "processes", "workers": 3}) == {
        "pool": "processes", "workers": 3,
    }  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"'threads', 'processes'.*got 'fork'"):
        check_server({"pool": "fork"})


def test_batched_requests_around_a_fatal_one_are_answered(ws: mnb.Workspace, start: Any) -> None:
    """A batch that kills its process is retried request by request: only the fatal one
    fails, the others are answered, by the other process or by a replacement."""
    import asyncio

    server = start(ServeSpec.of(register(ws, "mortal", Mortal()), pool="processes", workers=2,
                                batching=True))  # fmt: skip

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=DEADLINE) as client:
            calls = [client.post("/v2/models/mortal/infer", json=body(x))
                     for x in (1.0, 2.0, -1.0, 3.0, 4.0, 5.0)]  # fmt: skip
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert codes == [200, 200, 500, 200, 200, 200], [r.text for r in responses]
    assert_error(responses[2], 500, "worker process died while predicting")
    wait_for(lambda: len(stats(server)["worker_pids"]) == 2, timeout=DEADLINE)
    assert stats(server)["worker_restarts"] >= 1


def test_an_idle_worker_process_that_dies_is_replaced(ws: mnb.Workspace, start: Any) -> None:
    server = start(ServeSpec.of(register(ws, "mortal", Mortal()), pool="processes", workers=2))
    first, second = stats(server)["worker_pids"]
    os.kill(first, signal.SIGKILL)  # before any request: the pool watches from the start
    wait_for(lambda: stats(server)["worker_restarts"] == 1, timeout=DEADLINE)
    pids = set(stats(server)["worker_pids"])
    assert second in pids and first not in pids and len(pids) == 2
    for _ in range(4):
        r = infer_x(server, 1.0, "mortal")
        assert r.status_code == 200 and int(r.json()["outputs"][0]["data"][0]) in pids


def test_a_replacement_that_cannot_load_is_retried(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "blocked"
    v = register(ws, "blocked", BlockedWhile(str(marker)))
    server = start(ServeSpec.of(v, pool="processes", workers=1, batching=False))
    (first,) = stats(server)["worker_pids"]
    marker.touch()
    os.kill(first, signal.SIGKILL)
    # Each attempt fails while the marker is there: not ready, the reason named.
    wait_for(lambda: stats(server)["worker_failure"] is not None, timeout=DEADLINE)
    assert "blocked by the marker file" in stats(server)["worker_failure"]
    assert "retrying" in stats(server)["worker_failure"]
    ready = server.client.get("/v2/health/ready")
    assert ready.status_code == 503 and "could not be replaced" in ready.json()["error"]
    marker.unlink()
    # A later attempt (the backoff is seconds) loads; the replica serves again.
    wait_for(lambda: stats(server)["worker_restarts"] == 1, timeout=DEADLINE)
    assert stats(server)["worker_failure"] is None
    r = infer_x(server, 1.0, "blocked")
    assert r.status_code == 200 and int(r.json()["outputs"][0]["data"][0]) != first
