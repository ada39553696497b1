"""The monitoring view over a logged day of two versions, with late labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import mlops_nb as mnb
from mlops_nb.widgets.monitoring import totals


def _log(ws: mnb.Workspace, X: pd.DataFrame, y: pd.Series, version: int, n: int,
         seed: int, labels: int) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(X), n)
    now = pd.Timestamp.now(tz="UTC")
    stamps = now - pd.to_timedelta(rng.uniform(60, 5 * 3600, n), unit="s")
    mon = ws.monitor("iris")
    ids = mon.log(X.iloc[rows], y.iloc[rows].to_numpy(), version=version,
                  latency_ms=rng.gamma(3.0, 2.0, n), timestamps=stamps,
                  confidence=np.full(n, 0.9))  # fmt: skip
    if labels:
        mon.log_labels(ids[:labels], y.iloc[rows].to_numpy()[:labels])


def test_volume_latency_errors_quality_per_version(registry: mnb.Workspace, iris_xy: Any) -> None:
    X, y = iris_xy
    _log(registry, X, y, 1, 120, seed=1, labels=40)
    _log(registry, X, y, 2, 80, seed=2, labels=0)
    v = registry.monitor("iris").view(bucket="1h", window="last 24h")
    summary = totals(v.frame).set_index("version")
    assert summary.loc["v1", "requests"] == 120 and summary.loc["v2", "requests"] == 80
    assert summary.loc["v1", "labelled"] == 40 and summary.loc["v2", "labelled"] == 0
    assert summary.loc["v1", "accuracy"] == 1.0  # predictions were the true labels
    html = v.static_html()
    assert html.count("<svg") == 5
    for title in ("requests per bucket", "latency percentiles", "error rate",
                  "accuracy (labelled predictions)", "labelled predictions per bucket"):  # fmt: skip
        assert title in html, title

    _log(registry, X, y, 2, 30, seed=3, labels=0)
    v.refresh_button.click()
    assert totals(v.frame).set_index("version").loc["v2", "requests"] == 110
    v.bucket_select.value = "5m"
    assert len(v.frame) > len(totals(v.frame))


def test_empty_log(registry: mnb.Workspace) -> None:
    v = registry.monitor("iris").view()
    assert "no predictions in last 24h" in v.static_html()
