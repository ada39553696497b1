"""Faults: a replica killed mid-traffic, a corrupt artifact, a restarted notebook process."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

import mlops_nb as mnb
from tests.deploy.conftest import Traffic, wait_for


def _body(iris: Any) -> Any:
    return iris[0].head(1).to_dict("records")


def test_killed_replica_is_replaced_and_traffic_continues(dws, versions, iris) -> None:
    dep = versions["good"].deploy(replicas=2)
    victim = dep.status()["revisions"][0]
    pids = [r["pid"] for r in victim["replicas"]]
    assert victim["ready"] == 2 and len(pids) == 2
    with Traffic(dep.endpoint, _body(iris), pause=0.0) as traffic:
        time.sleep(0.5)
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(1.0)
        wait_for(lambda: dep.status()["replicas"]["ready"] == 2, 60, "the replacement replica")
        time.sleep(0.3)
    # Only requests in flight on the killed replica may fail; the router retries the rest.
    assert len(traffic.failures()) <= 1, traffic.failures()
    assert len(traffic.results) > 100
    rev = dep.status()["revisions"][0]
    assert rev["restarts"] == 1
    new_pids = [r["pid"] for r in dep.status()["revisions"][0]["replicas"]]
    assert pids[0] not in new_pids and pids[1] in new_pids


def test_corrupt_artifact_never_becomes_ready(dws, versions) -> None:
    v = versions["other"]
    entry = next(f for f in v.info()["manifest"]["files"] if f["role"] == "model")
    blob = Path(dws.artifacts.uri) / "blobs" / "sha256" / entry["sha256"][:2] / entry["sha256"]
    os.chmod(blob, stat.S_IRUSR | stat.S_IWUSR)
    blob.write_bytes(blob.read_bytes()[:-10])
    with pytest.raises(mnb.DeploymentError, match=r"IntegrityError.*corrupt"):
        v.deploy(timeout=20)
    assert dws.deployments()["state"].tolist() == ["deleted"]
    dep = versions["good"].deploy()  # the name is free again; a good version deploys
    with pytest.raises(mnb.DeploymentError, match="IntegrityError"):
        v.deploy(strategy=mnb.BlueGreen(), timeout=20)
    assert dep.status()["traffic"] == {1: 100.0}  # still serving the good version
    assert dep.revisions()["status"].tolist() == ["failed", "active", "failed"]


_REATTACH = textwrap.dedent(
    """
    import sys, httpx
    import mlops_nb as mnb
    ws = mnb.open(sys.argv[1])
    dep = ws.deployment("iris")
    s = dep.status()
    r = httpx.post(dep.endpoint + "/v2/models/iris/infer", json=[dict(zip(
        ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
        [5.1, 3.5, 1.4, 0.2]))])
    print(s["state"], s["version"], r.status_code)
    """
)


def test_a_new_process_reattaches_and_sees_stale_ones(dws, versions, tmp_path) -> None:
    dep = versions["good"].deploy()
    path = str(dws._store.path)
    out = subprocess.run([sys.executable, "-c", _REATTACH, path], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.stdout.split() == ["healthy", "1", "200"], out.stderr
    router = psutil.Process(dep._record().admin["pid"])
    children = router.children(recursive=True)
    router.kill()
    # Replicas notice their router is gone and stop by themselves.
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []
    status = dep.status()
    assert status["state"] == "stale" and "deploy again" in status["message"]
    assert dws.deployments()["state"].tolist() == ["stale"]
    with pytest.raises(mnb.DeploymentError, match="stale"):
        versions["other"].deploy()


def test_payloads_reach_the_monitor(dws, versions, iris) -> None:
    dep = versions["good"].deploy()
    X = iris[0]
    with httpx.Client(timeout=10) as client:
        ids = []
        for i in range(20):
            r = client.post(
                dep.endpoint + "/v2/models/iris/infer", json=X.iloc[[i]].to_dict("records")
            )
            ids += r.json()["parameters"]["prediction_ids"]
    wait_for(lambda: not dep.flush_logs().empty and len(dws.monitor("iris").predictions()) == 20,
             30, "the spooled payloads")  # fmt: skip
    logged = dws.monitor("iris").predictions()
    assert sorted(logged["id"]) == sorted(ids)
    assert set(logged["version"]) == {1}
    assert logged["feature.petal width (cm)"].tolist() == X["petal width (cm)"].head(20).tolist()
    assert logged["latency_ms"].gt(0).all() and logged["confidence"].between(0, 1).all()


def test_bad_arguments(dws, versions) -> None:
    v = versions["good"]
    with pytest.raises(mnb.InvalidArgument, match="unknown target"):
        v.deploy(target="k8s")
    with pytest.raises(mnb.InvalidArgument, match="replicas"):
        v.deploy(replicas=0)
    with pytest.raises(mnb.InvalidArgument, match="strategy"):
        v.deploy(strategy="canary")  # type: ignore[arg-type]
    with pytest.raises(mnb.InvalidArgument, match="running deployment"):
        v.deploy(strategy=mnb.ABTest(split={1: 50, 2: 50}))
    with pytest.raises(mnb.InvalidArgument, match="rise strictly"):
        mnb.Canary(steps=[50, 10])
    with pytest.raises(mnb.InvalidArgument, match="duration"):
        mnb.Guard(interval="soon")
    with pytest.raises(mnb.DeploymentNotFound, match="no deployment named 'nope'"):
        dws.deployment("nope").status()
    with pytest.raises(mnb.VersionNotFound):
        dws.model("iris").version(99).deploy()
    assert dws.deployments().empty
