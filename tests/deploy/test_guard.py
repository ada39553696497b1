"""The guard watching a serving deployment, in a notebook thread and headless."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

import mlops_nb as mnb
from tests.deploy.conftest import Traffic, wait_for

CLI = str(Path(sys.executable).with_name("mlops-nb"))


def _body(iris: Any) -> Any:
    return iris[0].head(1).to_dict("records")


def test_watch_rolls_back_on_errors(dws, versions, iris, receiver) -> None:
    dep = versions["good"].deploy()
    versions["failing"].deploy(strategy=mnb.BlueGreen())
    # The controller, not this process, rolls back: it delivers the signed webhook, and
    # sends the event to the notifier subscribed here (stored in the workspace).
    dws.add_webhook(receiver.url, secret=receiver.secret, events=["rolled_back"])
    dws.notify(mnb.Webhook(url=receiver.url, secret=receiver.secret), events=["rolled_back"])
    guard = mnb.Guard(max_error_rate=0.01, interval="0.3s", window="2s", failure_limit=2,
                      min_samples=5)  # fmt: skip
    with Traffic(dep.endpoint, _body(iris), pause=0.01):
        dep.watch(guard)
        wait_for(lambda: len(receiver.received) >= 2, 90, "the guard's rollback, twice")
        dep.unwatch()
    # One delivery is the registry webhook's (it names its event in a header), the other
    # the notifier's; both carry the same event.
    assert sorted("X-Mlops-Event" in r["headers"] for r in receiver.received) == [False, True]
    assert {r["body"]["event"] for r in receiver.received} == {"rolled_back"}
    sent = dws._store.query_df("SELECT event, ok FROM pipeline_notifications")
    assert sent.to_dict("records") == [{"event": "rolled_back", "ok": True}]
    events = [r["body"] for r in receiver.received]
    assert dep.status()["traffic"] == {1: 100.0}
    revs = dep.revisions()
    assert revs[["revision", "version"]].values.tolist()[-1] == [3, 1]
    checks = dep.checks()
    assert (
        checks["decision"].tolist()[-1] == "rollback" or "rollback" in checks["decision"].tolist()
    )
    failed = checks[checks["verdict"] == "fail"]
    assert "error_rate" in failed["evidence"].iloc[-1]
    assert events[-1]["version"] == 1 and events[-1]["data"]["from_version"] == 3
    assert events[-1]["data"]["to_version"] == 1
    assert "guard: error rate" in dws.audit()["reason"].dropna().iloc[-1]


def test_accuracy_guard_uses_labels(dws, versions, iris) -> None:
    dep = versions["good"].deploy()
    versions["other"].deploy()
    X = iris[0]
    ids = []
    with httpx.Client(timeout=10) as client:
        for i in range(30):
            r = client.post(
                dep.endpoint + "/v2/models/iris/infer", json=X.iloc[[i]].to_dict("records")
            )
            ids += r.json()["parameters"]["prediction_ids"]
    mon = dws.monitor("iris")
    wait_for(lambda: dep.flush_logs() is not None and len(mon.predictions(version=2)) == 30,
             30, "the spooled payloads")  # fmt: skip
    mon.log_labels(ids, [9] * len(ids))  # every prediction was wrong
    guard = mnb.Guard(min_accuracy=0.8, interval="0.2s", window="5m", failure_limit=1,
                      min_samples=10)  # fmt: skip
    dep.watch(guard)
    wait_for(lambda: dep.status()["traffic"] == {1: 100.0}, 60, "the accuracy rollback")
    dep.unwatch()
    evidence = dep.checks()["evidence"].iloc[-1]
    assert '"accuracy": 0.0' in evidence and '"labelled": 30' in evidence


def test_headless_guard_and_serve_commands(dws, versions, iris, tmp_path) -> None:
    from mlops_nb.deploy.router import free_port

    dep = versions["good"].deploy()
    versions["failing"].deploy(strategy=mnb.BlueGreen())
    path = str(dws._store.path)
    env = {**os.environ, "MLOPS_NB_USER": "scheduler"}
    with Traffic(dep.endpoint, _body(iris), pause=0.01):
        time.sleep(1.0)
        out = subprocess.run(
            [CLI, "-w", path, "guard", "iris", "--max-error-rate", "0.01", "--interval", "0.3s",
             "--window", "2s", "--failure-limit", "1", "--min-samples", "5", "--checks", "2"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "rollback" in out.stdout
    assert dep.status()["traffic"] == {1: 100.0}
    assert dws.audit()["actor"].iloc[-1] == "scheduler"

    port = free_port()
    server = subprocess.Popen([CLI, "-w", path, "serve", "--model", "iris", "--version", "1",
                               "--port", str(port), "--no-spool"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "mlops-nb serve")
        r = httpx.post(url + "/v2/models/iris/versions/1/infer", json=_body(iris))
        assert r.status_code == 200 and r.json()["model_version"] == "1"
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why.
    assert server.returncode in (0, -signal.SIGTERM)
