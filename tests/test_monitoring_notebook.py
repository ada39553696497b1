"""notebooks/monitoring.ipynb run headless with papermill, as a scheduler runs it.

Each test executes the notebook in a fresh kernel of this environment (the ``python3``
kernelspec that ipykernel installs in the venv starts ``sys.executable``) against a real
workspace file the test builds itself.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import papermill
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from papermill.exceptions import PapermillExecutionError
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import mlops_nb as mnb

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "monitoring.ipynb"
MODEL = "iris"


def _run(tmp_path: Path, **parameters: Any) -> nbformat.NotebookNode:
    out = tmp_path / "monitoring-out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
        start_timeout=60,
    )
    return nbformat.read(out, as_version=4)


def _stdout(nb: nbformat.NotebookNode, cell_id: str) -> str:
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")


def _workspace(tmp_path: Path) -> tuple[Path, pd.DataFrame, LogisticRegression]:
    """A workspace file with an iris classifier registered with its training reference."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = LogisticRegression(max_iter=500, random_state=0).fit(X, y)
    path = tmp_path / "mlops.duckdb"
    with mnb.open(path) as ws:
        v = ws.model(MODEL).register(clf, input_example=X[:5], reference_data=X)
        v.promote("staging", reason="test")
        v.promote("production", reason="test")
    return path, X, clf


def _traffic(X: pd.DataFrame, n: int, shift_sd: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = X.iloc[rng.integers(0, len(X), n)].reset_index(drop=True)
    noise = rng.normal(0.0, 0.05, rows.shape) * X.std().to_numpy()
    return rows + noise + shift_sd * X.std().to_numpy()


def _recent(n: int, seed: int) -> pd.DatetimeIndex:
    """n timestamps spread over the last 20 hours (inside the notebook's 'last 24h')."""
    rng = np.random.default_rng(seed)
    now = pd.Timestamp.now(tz="UTC")
    return now - pd.to_timedelta(rng.uniform(60.0, 20 * 3600.0, n), unit="s")


def test_strong_drift_fails_the_run_and_is_stored(tmp_path: Path) -> None:
    path, X, clf = _workspace(tmp_path)
    shifted = _traffic(X, 300, shift_sd=3.0, seed=1)
    with mnb.open(path) as ws:
        ws.monitor(MODEL).log(
            shifted, clf.predict(shifted), version=1,
            confidence=clf.predict_proba(shifted).max(axis=1), timestamps=_recent(300, seed=2),
        )  # fmt: skip

    with pytest.raises(PapermillExecutionError) as failed:
        _run(tmp_path, workspace=str(path), model=MODEL, fail_on_drift=True)
    assert failed.value.ename == "ThresholdBreached"
    assert "iris: drifted: 4 of 4 features" in failed.value.evalue

    # The executed notebook is written up to the failing cell.
    out = nbformat.read(tmp_path / "monitoring-out.ipynb", as_version=4)
    assert "4/4 features drifted (100%)" in _stdout(out, "drift")

    with mnb.open(path) as ws:
        history = ws.monitor(MODEL).history()
    assert len(history) == 1
    run = history.iloc[0]
    assert bool(run["drifted"]) is True
    assert run["share_drifted"] == 1.0
    assert (run["reference"], run["current"]) == ("training data of v1", "last 24h")
    assert (run["n_ref"], run["n_cur"]) == (150, 300)


def test_defaults_build_a_demo_and_pass(tmp_path: Path) -> None:
    nb = _run(tmp_path)
    assert "logged 1200 predictions over 24 hours; 900 have labels" in _stdout(nb, "demo-traffic")
    assert "flagged: worst symmetry" in _stdout(nb, "missing")
    assert "the run passes" in _stdout(nb, "gate")
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    # The demo workspace lived in a scratch folder, removed at the end; nothing landed here.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["monitoring-out.ipynb"]


def _spool_file(spool: Path, X: pd.DataFrame, clf: LogisticRegression, n: int) -> list[str]:
    """One file as a model server writes it (layout and columns: mlops_nb.monitor.logstore)."""
    rows = _traffic(X, n, shift_sd=0.0, seed=3)
    # A server writes one file per UTC day: keep every row inside today (and the window).
    now = pd.Timestamp.now(tz="UTC")
    start = max(now - pd.Timedelta(hours=20), now.floor("D"))
    offsets = np.random.default_rng(4).uniform(0.0, 1.0, n) * (now - start).total_seconds()
    stamps = (start + pd.to_timedelta(offsets, unit="s")).sort_values()
    ids = [f"req-{i:04d}" for i in range(n)]
    columns: dict[str, pa.Array] = {
        "id": pa.array(ids, pa.string()),
        "timestamp": pa.array(stamps.to_numpy(dtype="datetime64[us]"), pa.timestamp("us", "UTC")),
        "prediction": pa.array(clf.predict(rows), pa.int64()),
        "confidence": pa.array(clf.predict_proba(rows).max(axis=1), pa.float64()),
        "latency_ms": pa.array(np.full(n, 2.5), pa.float64()),
        "error": pa.nulls(n, pa.string()),
    }
    for name in X.columns:
        columns[f"feature.{name}"] = pa.array(rows[name].to_numpy(), pa.float64())
    day = stamps[0].strftime("%Y-%m-%d")
    folder = spool / f"model={MODEL}" / "version=1" / f"date={day}"
    folder.mkdir(parents=True)
    pq.write_table(pa.table(columns), folder / f"{uuid.uuid4().hex}.parquet")
    return ids


def test_spool_is_ingested_before_the_checks(tmp_path: Path) -> None:
    path, X, clf = _workspace(tmp_path)
    spool = tmp_path / "spool"
    ids = _spool_file(spool, X, clf, 200)

    nb = _run(tmp_path, workspace=str(path), model=MODEL, spool=str(spool), fail_on_drift=True,
              max_error_rate=0.01, max_p95_ms=10, min_accuracy=0.9)  # fmt: skip
    assert "spool: 1 file(s) found, 1 new, 200 predictions added" in _stdout(nb, "ingest")
    assert "reference: training data of v1, 150 rows; current: last 24h, 200 rows" in _stdout(
        nb, "drift"
    )
    gate = _stdout(nb, "gate")
    assert "iris: no drift; the run passes" in gate
    # The spooled predictions have no labels yet: accuracy is not judged, and says so.
    assert "min_accuracy: no labelled predictions in the window; not judged" in gate
    assert "breach" not in gate

    with mnb.open(path) as ws:
        mon = ws.monitor(MODEL)
        logged = mon.predictions()
        assert sorted(logged["id"]) == ids
        assert logged["version"].tolist() == [1] * 200
        assert mon.files()["source"].tolist() == ["spool"]
        assert len(mon.history()) == 1


def test_metric_thresholds_fail_the_run_naming_each_breach(tmp_path: Path) -> None:
    path, X, clf = _workspace(tmp_path)
    rows = _traffic(X, 200, shift_sd=0.0, seed=5)
    predicted = clf.predict(rows)
    with mnb.open(path) as ws:
        mon = ws.monitor(MODEL)
        ids = mon.log(
            rows, predicted, version=1, latency_ms=[300.0] * 200, timestamps=_recent(200, seed=6),
            errors=["timeout" if i % 10 == 0 else None for i in range(200)],
        )  # fmt: skip
        mon.log_labels(ids, (predicted + 1) % 3)  # every label disagrees with its prediction

    with pytest.raises(PapermillExecutionError) as failed:
        _run(tmp_path, workspace=str(path), model=MODEL, max_error_rate=0.05, max_p95_ms=250,
             min_accuracy=0.5)  # fmt: skip
    assert failed.value.ename == "ThresholdBreached"
    assert failed.value.evalue == (
        "iris: error rate 0.1 > max_error_rate 0.05; p95 latency 300 ms > max_p95_ms 250; "
        "accuracy 0 < min_accuracy 0.5 (200 labelled)"
    )
    gate = _stdout(nb := nbformat.read(tmp_path / "monitoring-out.ipynb", as_version=4), "gate")
    assert "breach: error rate 0.1 > max_error_rate 0.05" in gate
    assert "breach: p95 latency 300 ms > max_p95_ms 250" in gate
    assert nb.cells[-1].outputs[-1]["ename"] == "ThresholdBreached"


def test_a_threshold_of_the_wrong_kind_fails_the_run_naming_it(tmp_path: Path) -> None:
    path, _, _ = _workspace(tmp_path)
    with pytest.raises(PapermillExecutionError) as failed:
        _run(tmp_path, workspace=str(path), model=MODEL, max_error_rate="lots")
    assert failed.value.ename == "InvalidArgument"
    assert "max_error_rate must be a number in [0, 1]" in failed.value.evalue
