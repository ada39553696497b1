"""Fixtures: the API emulator on 127.0.0.1, a kubeconfig for it, S3 workspaces with models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import mlops_nb as mnb
from mlops_nb.kube import Kubernetes
from mlops_nb.kube.emulator import Emulator

SCHEMAS = Path(__file__).resolve().parents[2].parent / "shared" / "schemas"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(namespaces=("default", "ml")) as emu:
        yield emu


@pytest.fixture
def kubeconfig(emulator: Emulator, tmp_path: Path) -> Path:
    return emulator.kubeconfig(tmp_path / "kubeconfig", namespace="ml")


@pytest.fixture
def k8s(kubeconfig: Path) -> Kubernetes:
    return Kubernetes(namespace="ml", image="mlops-nb:test", kubeconfig=str(kubeconfig))


@pytest.fixture(scope="session")
def iris_data() -> Any:
    return load_iris(return_X_y=True, as_frame=True)


@pytest.fixture
def s3ws(tmp_path: Path, s3_endpoint: str, s3_env: None) -> Iterator[mnb.Workspace]:
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    ws = mnb.open(tmp_path / "ws.duckdb", artifacts=f"s3://{bucket}/models",
                  s3_options={"endpoint_url": s3_endpoint})  # fmt: skip
    yield ws
    ws.close()


@pytest.fixture
def models(s3ws: mnb.Workspace, iris_data: Any) -> dict[str, mnb.ModelVersion]:
    X, y = iris_data

    class Broken:  # defined here so it is pickled by value and loads in the pod
        """A model that fails every request (the server answers 500)."""

        def predict(self, frame: Any) -> Any:
            raise RuntimeError("this version is broken")

    m = s3ws.model("iris")
    example = X.head(5)
    return {
        "v1": m.register(LogisticRegression(max_iter=500).fit(X, y), input_example=example),
        "v2": m.register(LogisticRegression(max_iter=200, C=0.5).fit(X, y), input_example=example),
        "broken": m.register(Broken(), flavor="python", input_example=example),
    }


@pytest.fixture
def local_ws(tmp_path: Path, iris_data: Any) -> Iterator[mnb.Workspace]:
    ws = mnb.open(tmp_path / "local.duckdb")
    X, y = iris_data
    ws.model("iris").register(LogisticRegression(max_iter=300).fit(X, y), input_example=X.head(5))
    yield ws
    ws.close()


def body(X: Any, rows: int = 1) -> dict[str, Any]:
    sample = X.head(rows)
    return {"inputs": [{"name": c, "shape": [rows], "datatype": "FP64", "data": sample[c].tolist()}
                       for c in sample.columns]}  # fmt: skip
