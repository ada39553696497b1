"""The same flows against a real cluster: ``pytest -m cluster`` with KUBECONFIG set.

Needs ``MLOPS_NB_K8S_IMAGE`` (an image with this package installed, e.g. built from
``k8s.dockerfile(v)``) and ``MLOPS_NB_K8S_ARTIFACTS`` (an ``s3://`` store the pods can
read, with credentials in the Secret ``MLOPS_NB_K8S_S3_SECRET``). Namespace:
``MLOPS_NB_K8S_NAMESPACE`` (default ``mlops-nb-test``, must exist).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import mlops_nb as mnb
from mlops_nb.kube import Kubernetes

from .test_backend import state

NEEDED = ("KUBECONFIG", "MLOPS_NB_K8S_IMAGE", "MLOPS_NB_K8S_ARTIFACTS")
missing = [n for n in NEEDED if not os.environ.get(n)]
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        bool(missing), reason=f"no real cluster configured: set {', '.join(missing)}"
    ),
]


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(2)
    raise TimeoutError(f"{what} not reached within {timeout:g}s")


def test_deploy_canary_undo_scale_and_delete_on_a_real_cluster(
    tmp_path: Path, iris_data: Any
) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_data
    ws = mnb.open(tmp_path / "ws.duckdb", artifacts=os.environ["MLOPS_NB_K8S_ARTIFACTS"])
    for c in (1.0, 0.5):
        ws.model("iris").register(
            LogisticRegression(C=c, max_iter=300).fit(X, y), input_example=X.head(5)
        )
    k8s = Kubernetes(namespace=os.environ.get("MLOPS_NB_K8S_NAMESPACE", "mlops-nb-test"),
                     image=os.environ["MLOPS_NB_K8S_IMAGE"], s3_secret=os.environ.get("MLOPS_NB_K8S_S3_SECRET"))  # fmt: skip
    b = k8s.provision(ws, f"iris-{os.getpid()}")
    try:
        b.apply(state(ws, (1, 1, 1, 100)), dry_run=True)
        b.apply(state(ws, (1, 1, 1, 100)))
        wait(lambda: (o := b.observe()).ready(1) == 1 and not o.message, 300, "v1 ready")
        b.apply(state(ws, (1, 1, 1, 50), (2, 2, 1, 50)))
        wait(lambda: b.observe().ready(2) == 1, 300, "canary ready")
        b.apply(state(ws, (2, 2, 1, 100)))
        wait(lambda: b.rollout_status().endswith("successfully rolled out"), 300, "promoted")
        assert b.undo().version == 1
        wait(lambda: b.rollout_status().endswith("successfully rolled out"), 300, "undone")
        b.scale(2)
        wait(lambda: b.observe().ready(1) == 2, 300, "scaled")
    finally:
        b.stop()
        ws.close()
    assert not b.alive()
