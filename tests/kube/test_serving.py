"""Real pods: the kubelet runs this package's server; traffic flows through the Service proxy.

The deployment core's controller (``v.deploy(target=k8s, ...)``) is not on this branch
yet, so these tests drive the backend as that controller will: apply a desired state,
observe it, read ``traffic()``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

import mlops_nb as mnb
from mlops_nb.kube import Kubernetes
from mlops_nb.kube.emulator import Emulator

from .conftest import body
from .test_backend import state


def send(url: str, payload: Any, n: int) -> list[int]:
    codes = []
    with httpx.Client(timeout=30.0) as c:
        for _ in range(n):
            codes.append(c.post(url, json=payload).status_code)
    return codes


def test_canary_serves_real_traffic_and_a_broken_one_shows_its_errors(
    emulator: Emulator,
    k8s: Kubernetes,
    models: dict[str, mnb.ModelVersion],
    s3ws: mnb.Workspace,
    iris_data: Any,
) -> None:
    X, _ = iris_data
    b = k8s.provision(s3ws, "iris")
    b.apply(state(s3ws, (1, 1, 1, 100)))
    emulator.wait(
        lambda: (o := b.observe()).ready(1) == 1 and not o.message, timeout=120, what="stable ready"
    )
    url = b.endpoint + "/v2/models/iris/infer"
    assert send(url, body(X), 5) == [200] * 5
    t = b.traffic(300)
    assert t.of(1) is not None and t.of(1).requests >= 5 and t.of(1).errors_5xx == 0
    assert t.of(1).p50_ms is not None
    # A canary of the broken version (3) next to the stable one: 50/50 by replica ratio.
    b.apply(state(s3ws, (1, 1, 1, 50), (2, 3, 1, 50)))
    emulator.wait(
        lambda: (o := b.observe()).ready(2) == 1 and o.ready(1) == 1,
        timeout=120,
        what="canary ready",
    )
    codes = send(url, body(X), 30)
    assert 200 in codes and 500 in codes  # both revisions answered through the one Service
    t = b.traffic(300)
    canary = t.of(2)
    assert canary is not None and canary.requests == canary.errors_5xx == codes.count(500)
    assert canary.error_rate == 1.0 and t.of(1).errors_5xx == 0
    # What the guard then does: all traffic back on the stable revision.
    b.apply(state(s3ws, (1, 1, 1, 100)))
    emulator.wait(
        lambda: [d["metadata"]["name"] for d in b._deployments()] == ["iris"], what="canary removed"
    )
    assert send(url, body(X), 10) == [200] * 10
    b.stop()
    emulator.wait(lambda: not emulator.kubelet.runs, what="pod processes stopped")


def test_a_tampered_artifact_fails_the_init_container_with_the_reason(
    emulator: Emulator, k8s: Kubernetes, models: dict[str, mnb.ModelVersion], s3ws: mnb.Workspace,
    s3_endpoint: str,
) -> None:  # fmt: skip
    import boto3

    info = models["v2"].info()
    entry = info["manifest"]["files"][0]
    bucket, _, prefix = str(info["artifact_uri"]).removeprefix("s3://").partition("/")
    key = f"{prefix}/blobs/sha256/{entry['sha256'][:2]}/{entry['sha256']}"
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=bucket, Key=key, Body=b"evil")
    b = k8s.provision(s3ws, "iris")
    b.apply(state(s3ws, (1, 2, 1, 100)))
    o = emulator.wait(lambda: (x := b.observe()).revision(1) and x.revision(1).restarts >= 1 and x,
                      timeout=120, what="init container failed")  # fmt: skip
    assert o.revision(1).ready == 0
    why = emulator.wait(lambda: b.explain(1), timeout=60, what="explanation")
    assert "IntegrityError" in why and "corrupt" in why
    assert "mlops-nb fetch: IntegrityError" in (b.load_error(1) or "")
    b.stop()
    deadline = time.monotonic() + 30
    while emulator.kubelet.runs and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not emulator.kubelet.runs
