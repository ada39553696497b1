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


def _spread(ws: mnb.Workspace, X: pd.DataFrame, y: pd.Series, n: int, span_s: float) -> None:
    """``n`` predictions of v1 spread evenly over the ``span_s`` seconds before now."""
    rows = np.arange(n) % len(X)
    now = pd.Timestamp.now(tz="UTC")
    stamps = now - pd.to_timedelta(np.linspace(30, span_s - 30, n), unit="s")
    ws.monitor("iris").log(X.iloc[rows], y.iloc[rows].to_numpy(), version=1,
                           latency_ms=np.full(n, 3.0), timestamps=stamps)  # fmt: skip


def test_a_bucket_too_fine_for_a_chart_is_coarsened(registry: mnb.Workspace, iris_xy: Any) -> None:
    X, y = iris_xy
    _spread(registry, X, y, 3000, 24 * 3600)
    v = registry.monitor("iris").view(bucket="1h", window="last 24h")
    v.bucket_select.value = "1m"  # 1,440 buckets x 3 percentiles: more than a chart takes
    html = v.static_html()
    assert html.count("<svg") == 3, v.message.value  # requests, latency, errors (no labels)
    assert "showing 5m buckets" in html and "1m" in v._html["note"]
    assert v.bucket_select.value == "1m"  # the choice stays; the note says what is drawn
    assert v.frame["bucket"].diff().dropna().min() >= pd.Timedelta("5min")
    v.bucket_select.value = "1h"
    assert v._html["note"] == "" and v.message.value == ""


def test_a_refresh_error_is_shown_not_raised(registry: mnb.Workspace, iris_xy: Any) -> None:
    X, y = iris_xy
    # Sixty years of weekly traffic: no bucket offered draws it within a chart's rows.
    _spread(registry, X, y, 3200, 60 * 365 * 86400)
    v = registry.monitor("iris").view(bucket="1h", window="last 24h")
    v.window_select.value = "all"
    assert "mnb-error" in v.message.value and "shorter window" in v.message.value
    v.window_select.value = "last 24h"
    assert v.message.value == ""
