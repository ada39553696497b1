"""End to end through the deployment core: ``v.deploy(target=k8s, ...)`` on the emulator.

The rollout controller runs in its own process and reaches the emulated cluster through
the kubeconfig recorded with the deployment; pods are real model servers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

import mlops_nb as mnb
from mlops_nb.kube import Kubernetes
from mlops_nb.kube.emulator import Emulator

from .conftest import body


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not reached within {timeout:g}s")


class Clients:
    """Requests in a loop on a thread through the Service proxy, bounded in time."""

    def __init__(self, url: str, payload: Any) -> None:
        self.url, self.payload, self.codes = url, payload, []  # type: ignore[var-annotated]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as c:
            deadline = time.monotonic() + 240
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    self.codes.append(c.post(self.url, json=self.payload).status_code)
                except httpx.HTTPError:
                    self.codes.append(0)
                time.sleep(0.02)

    def __enter__(self) -> Clients:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_deploy_then_a_broken_canary_is_rolled_back_by_the_guard(
    emulator: Emulator, k8s: Kubernetes, models: dict[str, mnb.ModelVersion], iris_data: Any
) -> None:
    X, _ = iris_data
    dep = models["v1"].deploy(target=k8s, replicas=1, timeout=180)
    assert dep.status()["traffic"] == {1: 100.0}
    url = dep.endpoint + "/v2/models/iris/infer"
    assert httpx.post(url, json=body(X), timeout=30).status_code == 200
    guard = mnb.Guard(
        max_error_rate=0.05, interval="1s", window="20s", failure_limit=2, min_samples=5
    )
    with Clients(url, body(X)) as clients:
        models["broken"].deploy(target=k8s, strategy=mnb.Canary(steps=[50, 100], pause="60s", guard=guard),
                                timeout=180)  # fmt: skip
        wait_for(
            lambda: (dep.status()["rollout"] or {}).get("phase") == "aborted", 180, "the rollback"
        )
        assert 500 in clients.codes  # the canary served real requests, and failed them
        wait_for(lambda: [d["metadata"]["name"] for d in emulator.store.list(
            emulator.kind("apps/v1", "Deployment"), "ml")] == ["iris"], 60, "the canary removed")  # fmt: skip
        after = len(clients.codes)
        wait_for(lambda: len(clients.codes) > after + 10, 60, "more requests")
    assert set(clients.codes[after:]) == {200}
    assert dep.status()["traffic"] == {1: 100.0}
    revs = dep.revisions().set_index("revision")
    assert revs.loc[2, "status"] == "rolled_back"
    dep.delete()
    wait_for(lambda: not emulator.kubelet.runs, 60, "pods stopped")
