"""Slow and hung models: predictions run on workers, so health answers and the rest flows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pyarrow.parquet as pq
import pytest

import mlops_nb as mnb
from mlops_nb.serve.spec import ServeSpec

from .conftest import Server, Sleepy, register_doubler, register_python, sample
from .test_errors import assert_error
from .test_payload import wait_for


def body(x: float) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [x]}]}


def sleepy(ws: mnb.Workspace) -> mnb.ModelVersion:
    import pandas as pd

    return register_python(ws, "sleepy", Sleepy(), input_example=pd.DataFrame({"x": [0.0]}))


def in_background(server: Server, x: float, out: list[httpx.Response]) -> threading.Thread:
    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            out.append(c.post("/v2/models/sleepy/infer", json=body(x)))

    t = threading.Thread(target=call, daemon=True)
    t.start()
    return t


def stats(server: Server) -> dict[str, Any]:
    return dict(server.client.get("/v2/health/stats").json())


def live_within_a_second(server: Server) -> httpx.Response:
    # httpx's timeout bounds each phase; the whole round trip is checked too.
    live = server.client.get("/v2/health/live", timeout=1.0)
    assert live.elapsed.total_seconds() < 1.0, live.elapsed
    return live


@pytest.mark.parametrize("batching", [False, True], ids=["batching off", "batching on"])
def test_a_hung_prediction_leaves_health_and_other_requests_alone(
    ws: mnb.Workspace, start: Any, batching: bool
) -> None:
    server = start(
        ServeSpec.of(sleepy(ws), workers=2, timeout_s=3.0, stuck_after_s=1.0, batching=batching)
    )
    slow: list[httpx.Response] = []
    thread = in_background(server, 8.0, slow)
    wait_for(lambda: stats(server)["longest_predict_s"] > 0)

    # The loop is free: live answers well within a second, as do other requests.
    for _ in range(5):
        live = live_within_a_second(server)
        assert (live.status_code, live.json()) == (200, {"live": True})
    fast = server.infer(body(0.0))
    assert fast.status_code == 200, fast.text
    assert fast.json()["outputs"][0]["data"] == [0.0]

    # Past stuck_after_s the replica says it is not ready, so a router stops sending.
    wait_for(lambda: server.client.get("/v2/health/ready").status_code == 503)
    ready = server.client.get("/v2/health/ready").json()
    assert ready["ready"] is False and "stuck_after_s=1" in ready["error"]
    assert stats(server)["stuck"] is True
    assert live_within_a_second(server).status_code == 200  # live_stuck_after_s is not set

    # The hung request itself gets a V2 error once timeout_s has passed.
    thread.join(timeout=30)
    (r,) = slow
    assert_error(r, 504, "timeout_s=3")
    # When the model finally returns, the worker is free and the replica ready again.
    wait_for(lambda: server.client.get("/v2/health/ready").status_code == 200, timeout=30)
    assert stats(server)["stuck"] is False


def test_live_fails_once_a_prediction_outruns_live_stuck_after_s(
    ws: mnb.Workspace, start: Any
) -> None:
    """What a kubelet's liveness probe sees: a pod stuck that long is restarted."""
    spec = ServeSpec.of(sleepy(ws), workers=2, timeout_s=2.0, stuck_after_s=1.0,
                        live_stuck_after_s=3.0)  # fmt: skip
    server = start(spec)
    assert live_within_a_second(server).status_code == 200
    slow: list[httpx.Response] = []
    thread = in_background(server, 9.0, slow)
    wait_for(lambda: stats(server)["longest_predict_s"] > 0)
    # Unready first (stuck_after_s), then not live (live_stuck_after_s).
    wait_for(lambda: server.client.get("/v2/health/ready").status_code == 503)
    wait_for(lambda: live_within_a_second(server).status_code == 503, timeout=30)
    live = live_within_a_second(server).json()
    assert live["live"] is False and "live_stuck_after_s=3" in live["error"]
    # Other requests are still answered meanwhile (the second worker is free).
    assert server.infer(body(0.0)).status_code == 200
    thread.join(timeout=30)
    assert_error(slow[0], 504, "timeout_s=2")
    # Once the model returns, the replica is live (and ready) again.
    wait_for(lambda: live_within_a_second(server).status_code == 200, timeout=30)


def test_requests_that_timed_out_while_queued_leave_the_queue(
    ws: mnb.Workspace, start: Any
) -> None:
    server = start(ServeSpec.of(sleepy(ws), workers=1, max_queue=2, timeout_s=1.0))
    slow: list[httpx.Response] = []
    hold = in_background(server, 6.0, slow)  # the one worker is busy for 6 s
    wait_for(lambda: stats(server)["longest_predict_s"] > 0)
    queued: list[httpx.Response] = []
    waiting = [in_background(server, 0.0, queued) for _ in range(2)]
    for t in waiting:
        t.join(timeout=30)
    assert [r.status_code for r in queued] == [504, 504]
    # Both gave up while queued: the queue is empty again, though the worker is still busy.
    assert stats(server)["queue"] == 0 and stats(server)["longest_predict_s"] > 0
    # So the next request waits its turn (and times out) instead of finding the queue full.
    assert_error(server.infer(body(0.0)), 504, "timeout_s=1")
    hold.join(timeout=30)
    assert_error(slow[0], 504, "timeout_s=1")


def test_predictions_of_timed_out_requests_do_not_pile_up(ws: mnb.Workspace, start: Any) -> None:
    """Behind a hung worker, each timed-out request leaves a job a free thread will skip;
    past 4 x max_queue of those, requests are refused until the worker frees up."""
    server = start(ServeSpec.of(sleepy(ws), workers=1, max_queue=1, timeout_s=1.0, batching=False))
    # A lone request predicts on the loop's thread; one that comes meanwhile goes to the
    # worker, which starts it once the first is done (one predict at a time): it hangs.
    first: list[httpx.Response] = []
    lone = in_background(server, 0.8, first)
    wait_for(lambda: stats(server)["longest_predict_s"] > 0)
    slow: list[httpx.Response] = []
    hold = in_background(server, 8.0, slow)
    lone.join(timeout=30)
    assert first[0].status_code == 200 and stats(server)["lone"] == {"paused": 1, "rescued": 1}
    wait_for(lambda: stats(server)["longest_predict_s"] > 0)
    for _ in range(4):
        assert_error(server.infer(body(0.0)), 504, "timeout_s=1")
    assert stats(server)["queue"] == 0  # none of them is waiting any more
    assert_error(server.infer(body(0.0)), 503, "timed-out requests wait for busy workers")
    hold.join(timeout=30)
    assert_error(slow[0], 504, "timeout_s=1")
    # The freed thread skips the four (see test_workers), and requests are served again.
    wait_for(lambda: server.infer(body(0.0)).status_code == 200, timeout=30)


def big_body(n: int, last: Any = None) -> bytes:
    data: list[Any] = [i + 0.123456789 for i in range(n)]
    if last is not None:
        data[-1] = last
    tensor = {"name": "x", "shape": [n], "datatype": "FP64", "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def test_health_answers_while_a_huge_body_is_parsed(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    """Tens of megabytes of JSON hold the parser (and the GIL) for seconds: the helper
    process parses them, and encodes the answer, so the event loop stays free."""
    server = start(ServeSpec.of(register_doubler(ws, delay=0.0), max_body_bytes=2**27))
    n = 3_000_000
    (tmp_path / "body.json").write_bytes(big_body(n))
    # The big request comes from another process: this one's GIL must not slow the polls.
    script = (
        "import httpx, json, sys\n"
        "r = httpx.post(sys.argv[1], content=open(sys.argv[2], 'rb').read(), timeout=300)\n"
        "out = r.json()['outputs'][0] if r.status_code == 200 else r.text[:300]\n"
        "print(json.dumps([r.status_code, out['shape'], out['data'][-2]] if r.status_code"
        " == 200 else [r.status_code, out]))\n"
    )
    client = subprocess.Popen(
        [sys.executable, "-c", script, f"{server.url}/v2/models/doubler/infer",
         str(tmp_path / "body.json")], stdout=subprocess.PIPE,
    )  # fmt: skip
    slowest, polls = 0.0, 0
    try:
        while client.poll() is None and polls < 100_000:
            live = server.client.get("/v2/health/live", timeout=5.0)
            assert live.status_code == 200
            slowest = max(slowest, live.elapsed.total_seconds())
            polls += 1
        out, _ = client.communicate(timeout=300)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=30)
    assert json.loads(out) == [200, [n, 2], 2 * (n - 1 + 0.123456789)]
    # Parsed on the loop, one poll would have waited the whole parse (seconds).
    assert polls >= 10 and slowest < 1.0, (polls, slowest)
    helper = psutil.Process(server.proc.pid).children(recursive=True)
    assert helper, "the helper process runs"
    # What the helper costs is the replica's: in /metrics apart, in the stats' totals.
    helper_cpu = sum(sum(p.cpu_times()[:2]) for p in helper)
    families = server.metrics()
    counted = sample(families, "mlops_helper_processes_cpu_seconds",
                     "mlops_helper_processes_cpu_seconds")  # fmt: skip
    assert counted >= 0.9 * helper_cpu and counted > 0.5  # it parsed tens of megabytes
    assert sample(families, "mlops_helper_processes_resident_memory_bytes",
                  "mlops_helper_processes_resident_memory_bytes") > 10_000_000  # fmt: skip
    own = psutil.Process(server.proc.pid).cpu_times()
    process = stats(server)["process"]
    assert process["processes"] == 1 + len(helper)
    assert process["cpu_seconds"] >= own.user + own.system + 0.9 * helper_cpu
    server.stop()
    wait_for(lambda: not any(p.is_running() for p in helper))


def test_a_bad_large_body_is_the_same_400_as_a_small_one(ws: mnb.Workspace, start: Any) -> None:
    server = start(ServeSpec.of(register_doubler(ws, delay=0.0), spool=None))
    small = server.infer(json.loads(big_body(3, last="x")))
    large = server.client.post("/v2/models/doubler/infer", content=big_body(30_000, last="x"))
    for r in (small, large):
        assert_error(r, 400, "input 'x'", "FP64", "expected numeric values")
    assert server.infer(body(1.0)).status_code == 200


def test_a_timed_out_request_is_logged_as_a_timeout(
    ws: mnb.Workspace, start: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    server = start(ServeSpec.of(sleepy(ws), timeout_s=0.5, spool=str(spool), flush_seconds=600))
    assert_error(server.infer(body(3.0)), 504, "timeout_s=0.5")
    assert server.infer(body(0.0)).status_code == 200
    server.stop()
    table = pq.read_table(next(spool.rglob("*.parquet")))
    assert table.column("error").to_pylist() == [
        "timeout: prediction took longer than timeout_s=0.5 s",
        None,
    ]
    assert table.column("feature.x").to_pylist() == [3.0, 0.0]
    assert table.column("prediction").to_pylist() == [None, 0.0]


def test_a_full_queue_answers_503_with_retry_after(ws: mnb.Workspace, start: Any) -> None:
    server = start(ServeSpec.of(sleepy(ws), workers=1, max_queue=2, timeout_s=60, batching=False))
    slow: list[httpx.Response] = []
    thread = in_background(server, 4.0, slow)
    wait_for(lambda: stats(server)["longest_predict_s"] > 0)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            calls = []
            for _ in range(4):
                calls.append(asyncio.create_task(client.post("/v2/models/sleepy/infer",
                                                             json=body(0.0))))  # fmt: skip
                # One at a time, so the queue fills in a known order.
                deadline = time.monotonic() + 10
                while not calls[-1].done() and time.monotonic() < deadline:
                    if (await client.get("/v2/health/stats")).json()["inflight"] >= len(calls) + 1:
                        break
                    await asyncio.sleep(0.01)
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(burst())
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 503, 503], [r.text for r in responses]
    for r in responses:
        if r.status_code == 503:
            assert_error(r, 503, "max_queue")
            assert r.headers["retry-after"] == "1"
    thread.join(timeout=30)
    assert slow[0].status_code == 200
