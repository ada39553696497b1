"""Metrics per window and version; quality uses exactly the labelled predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

import mlops_nb as mnb

T0 = pd.Timestamp("2026-11-20T10:00:00Z")


def test_labels_in_batches_out_of_order_some_never(ws: mnb.Workspace) -> None:
    ws.model("clf").register({"v": 1})
    mon = ws.monitor("clf")
    rng = np.random.default_rng(4)
    n = 2_000
    stamps = T0 + pd.to_timedelta(np.sort(rng.integers(0, 7_200, n)), unit="s")
    pred = rng.integers(0, 2, n)
    conf = rng.uniform(0.5, 1.0, n)
    ids = mon.log(rng.normal(size=(n, 3)), pred, version=1, confidence=conf,
                  latency_ms=rng.gamma(2.0, 5.0, n), timestamps=stamps)  # fmt: skip
    truth = np.where(rng.random(n) < 0.8, pred, 1 - pred)
    labelled = rng.choice(n, size=1_300, replace=False)  # 700 never get a label
    for batch in np.array_split(rng.permutation(labelled), 4):  # out of order, 4 batches
        mon.log_labels(ids[batch], truth[batch])
    out = mon.metrics("1h")
    assert out["bucket"].tolist() == [T0, T0 + pd.Timedelta(hours=1)]
    assert out["count"].sum() == n and out["labelled"].sum() == 1_300
    for i, row in out.iterrows():
        in_bucket = (stamps >= T0 + pd.Timedelta(hours=i)) & (
            stamps < T0 + pd.Timedelta(hours=i + 1)
        )
        mask = np.zeros(n, bool)
        mask[labelled] = True
        sel = mask & np.asarray(in_bucket)
        assert row["labelled"] == sel.sum()
        y, p = truth[sel], pred[sel]
        assert row["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
        assert row["precision"] == pytest.approx(precision_score(y, p), abs=1e-12)
        assert row["recall"] == pytest.approx(recall_score(y, p), abs=1e-12)
        assert row["f1"] == pytest.approx(f1_score(y, p), abs=1e-12)
        score = np.where(p == 1, conf[sel], 1 - conf[sel])
        assert row["roc_auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
        assert row["count"] == np.asarray(in_bucket).sum()
        assert row["rate_per_s"] == pytest.approx(row["count"] / 3600)


def test_latency_errors_and_regression(ws: mnb.Workspace) -> None:
    ws.model("reg").register({"v": 1})
    ws.model("reg").register({"v": 2})
    mon = ws.monitor("reg")
    lat = np.arange(1, 101, dtype=float)
    ids = mon.log(np.zeros((100, 1)), np.linspace(0.5, 10.5, 100), version=1, latency_ms=lat,
                  timestamps=[T0] * 100, errors=[None] * 90 + ["timeout"] * 10)  # fmt: skip
    mon.log(np.zeros((10, 1)), np.ones(10) * 0.5, version=2, timestamps=[T0] * 10)
    truth = np.linspace(0.5, 10.5, 100)[:50] + 1.0
    mon.log_labels(ids[:50], truth)
    out = mon.metrics("1d").set_index("version")
    v1 = out.loc[1]
    assert v1["latency_p50_ms"] == pytest.approx(np.percentile(lat, 50))
    assert v1["latency_p95_ms"] == pytest.approx(np.percentile(lat, 95))
    assert v1["latency_p99_ms"] == pytest.approx(np.percentile(lat, 99))
    assert v1["error_rate"] == pytest.approx(0.1)
    assert (v1["mae"], v1["rmse"], v1["labelled"]) == (pytest.approx(1.0), pytest.approx(1.0), 50)
    assert out.loc[2, "labelled"] == 0 and np.isnan(out.loc[2, "mae"])
    assert list(mon.metrics("1d", by=None)["count"]) == [110]


def test_metrics_arguments(ws: mnb.Workspace) -> None:
    ws.model("m").register({"v": 1})
    mon = ws.monitor("m")
    assert mon.metrics("1h").empty
    with pytest.raises(mnb.InvalidArgument, match="duration"):
        mon.metrics("hourly")
    with pytest.raises(mnb.InvalidArgument, match="by must be"):
        mon.metrics("1h", by="day")
