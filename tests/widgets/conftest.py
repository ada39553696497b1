"""Workspaces with real models for the views: iris classifiers on a DuckDB file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import mlops_nb as mnb
from tests.deploy.conftest import dws, iris, versions  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def iris_xy() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture
def registry(tmp_path: Path, iris_xy: Any) -> Iterator[mnb.Workspace]:
    """v1 a weak stump (accuracy 0.67), v2 a good classifier (0.97); policy: >= 0.9."""
    X, y = iris_xy
    ws = mnb.open(tmp_path / "mlops.duckdb")
    m = ws.model("iris")
    stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, y)
    good = LogisticRegression(max_iter=500).fit(X, y)
    m.register(stump, metrics={"accuracy": 0.667}, label="1.0.0", data_version="iris-v1")
    m.register(good, metrics={"accuracy": 0.973}, label="1.1.0", data_version="iris-v1",
               parent_version=1)  # fmt: skip
    ws.set_policy(mnb.Policy(min_metrics={"accuracy": 0.9}))
    yield ws
    ws.close()
