"""The pass/fail gate of a monitoring run, over metrics computed from a real log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mlops_nb as mnb
from mlops_nb.monitor.gate import judge


def _logged(ws: mnb.Workspace, *, latency: bool) -> pd.DataFrame:
    _ = ws.model("m").register({"w": 1})
    mon = ws.monitor("m")
    now = pd.Timestamp.now(tz="UTC")
    ids = mon.log(
        np.ones((40, 2)), [1] * 40, version=1, timestamps=[now - pd.Timedelta(minutes=i) for i in range(40)],
        latency_ms=[5.0] * 40 if latency else None,
        errors=["boom" if i < 4 else None for i in range(40)],
    )  # fmt: skip
    mon.log_labels(ids[:20], [1] * 10 + [0] * 10)
    return mon.metrics("10m", window="last 1h")


def test_window_numbers_are_weighted_over_the_buckets(ws: mnb.Workspace) -> None:
    metrics = _logged(ws, latency=True)
    assert len(metrics) > 1  # several buckets, one verdict
    gate = judge(None, metrics, max_error_rate=0.05, max_p95_ms=4, min_accuracy=0.6)
    assert gate.breaches == (
        "error rate 0.1 > max_error_rate 0.05",
        "p95 latency 5 ms > max_p95_ms 4",
        "accuracy 0.5 < min_accuracy 0.6 (20 labelled)",
    )
    assert judge(None, metrics, max_error_rate=0.1, max_p95_ms=5, min_accuracy=0.5).ok
    with pytest.raises(mnb.ThresholdBreached, match=r"^m: error rate 0\.1 > max_error_rate"):
        judge(None, metrics, max_error_rate=0.05).check("m")


def test_what_cannot_be_judged_is_named_and_passes(ws: mnb.Workspace) -> None:
    gate = judge(None, _logged(ws, latency=False), max_p95_ms=100)
    assert gate.ok and gate.notes == ("max_p95_ms: no latencies logged in the window; not judged",)


def test_bad_thresholds_name_the_parameter(ws: mnb.Workspace) -> None:
    metrics = _logged(ws, latency=True)
    with pytest.raises(mnb.InvalidArgument, match=r"min_accuracy must be a number in \[0, 1\]"):
        judge(None, metrics, min_accuracy=1.5)
    with pytest.raises(mnb.InvalidArgument, match="max_p95_ms must be a number of milliseconds"):
        judge(None, metrics, max_p95_ms=True)
