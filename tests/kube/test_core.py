"""End to end through the deployment core: ``v.deploy(target=k8s, ...)`` on the emulator.

The rollout controller runs in its own process and reaches the emulated cluster through
the kubeconfig recorded with the deployment; pods are real model servers.
"""

from __future__ import annotations

from typing import Any

import httpx

import mlops_nb as mnb
from mlops_nb.kube import Kubernetes
from mlops_nb.kube.emulator import Emulator

from ..deploy.conftest import Traffic, wait_for
from .conftest import body


def test_deploy_then_a_broken_canary_is_rolled_back_by_the_guard(
    emulator: Emulator, k8s: Kubernetes, models: dict[str, mnb.ModelVersion], iris_data: Any
) -> None:
    X, _ = iris_data
    dep = models["v1"].deploy(target=k8s, replicas=1, timeout=180)
    assert dep.status()["traffic"] == {1: 100.0}
    url = dep.endpoint + "/v2/models/iris/infer"
    assert httpx.post(url, json=body(X), timeout=30).status_code == 200
    # Each pod's own figures, read through the API server's pod proxy.
    (pod,) = dep.status()["resources"]
    assert pod["revision"] == 1 and pod["replica"].startswith("iris-") and pod["ready"]
    assert pod["cpu_seconds"] > 0 and pod["rss_mb"] > 10
    assert pod["stuck"] is False and pod["queue"] == 0 and pod["dropped"] == {}
    assert isinstance(pod["open_connections"], int)
    guard = mnb.Guard(
        max_error_rate=0.05, interval="1s", window="20s", failure_limit=2, min_samples=5
    )
    with Traffic(dep.endpoint, body(X), pause=0.02, limit_s=240) as clients:
        models["broken"].deploy(target=k8s, strategy=mnb.Canary(steps=[50, 100], pause="60s", guard=guard),
                                timeout=180)  # fmt: skip
        wait_for(
            lambda: (dep.status()["rollout"] or {}).get("phase") == "aborted", 180, "the rollback"
        )
        assert 500 in [
            code for code, _ in clients.results
        ]  # the canary served real requests, and failed them
        wait_for(lambda: [d["metadata"]["name"] for d in emulator.store.list(
            emulator.kind("apps/v1", "Deployment"), "ml")] == ["iris"], 60, "the canary removed")  # fmt: skip
        after = len(clients.results)
        wait_for(lambda: len(clients.results) > after + 10, 60, "more requests")
    assert {code for code, _ in clients.results[after:]} == {200}
    assert dep.status()["traffic"] == {1: 100.0}
    revs = dep.revisions().set_index("revision")
    assert revs.loc[2, "status"] == "rolled_back"
    dep.delete()
    wait_for(lambda: not emulator.kubelet.runs, 60, "pods stopped")
