"""Drift honours the redaction the model servers applied before logging.

Spool files are written as a model server writes them (``logstore.write`` of a table the
server's ``Redactor`` rewrote, its rules in the file's metadata); the reference is the raw
training sample, whose very rows were logged: wherever the comparison is sound, nothing
drifts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import mlops_nb as mnb
from mlops_nb.monitor import logstore
from mlops_nb.serve.redact import Redactor

RULES = {"age": {"coarse": 10}, "plan": {"prefix": 2}}


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 200
    return pd.DataFrame({
        "age": rng.integers(18, 80, n),
        "plan": pd.Categorical(rng.choice(["basic", "plus", "pro"], n)),
    })  # fmt: skip


def _spool(root: Path, frame: pd.DataFrame, version: int, rules: dict | None, tag: str) -> None:
    stamps = pd.Timestamp.now(tz="UTC").floor("s") - pd.to_timedelta(np.arange(len(frame)), "s")
    table = pa.table({
        "id": [f"{tag}-{i}" for i in range(len(frame))],
        "timestamp": pa.array(stamps.as_unit("us")),
        "prediction": pa.array(np.zeros(len(frame), dtype=np.int64)),
        "feature.age": pa.array(frame["age"].to_numpy()),
        "feature.plan": pa.array(frame["plan"].astype(str).to_numpy()),
    })  # fmt: skip
    if rules is not None:
        table = Redactor.of(rules, None).apply(table)
    logstore.write(root, "churn", version, table)


@pytest.fixture
def mon(ws: mnb.Workspace, frame: pd.DataFrame, tmp_path: Path) -> mnb.Monitor:
    for _ in range(2):
        ws.model("churn").register({"w": 1}, reference_data=frame)
    # v1's servers coarsened age and cut plan; v2's logged them raw.
    _spool(tmp_path / "spool", frame, 1, RULES, "v1")
    _spool(tmp_path / "spool", frame, 2, None, "v2")
    mon = ws.monitor("churn")
    mon.ingest(tmp_path / "spool")
    return mon


def _rows(report: mnb.DriftReport) -> pd.DataFrame:
    return report.summary.set_index("feature")


def test_the_rules_are_recorded_per_version(mon: mnb.Monitor) -> None:
    got = mon.redaction()[["version", "feature", "rule"]].values.tolist()
    assert got == [[1, "age", "coarse:10"], [1, "plan", "prefix:2"]]
    assert mon.redaction(version=2).empty  # never redacted: nothing to record
    with pytest.raises(mnb.ModelNotFound):
        mon._ws.monitor("chrun").redaction()


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("reference", ["training", "frame"])
def test_a_raw_reference_is_redacted_as_the_version_s_log(
    mon: mnb.Monitor, frame: pd.DataFrame, exact: bool, reference: str
) -> None:
    ref = "training" if reference == "training" else frame  # plan is a pandas category
    for version in (1, 2):
        report = mon.drift(ref, "last 1d", version=version, min_samples=10, exact=exact,
                           store=False)  # fmt: skip
        rows = _rows(report)
        for feature in ("age", "plan"):
            assert rows.loc[feature, "drifted"] is False, (version, rows)
            assert rows.loc[feature, "n_ref"] == rows.loc[feature, "n_cur"] == len(frame)
        assert report.drifted is False


def test_a_feature_redacted_differently_over_the_window_gets_no_verdict(
    mon: mnb.Monitor, frame: pd.DataFrame, tmp_path: Path
) -> None:
    # Both versions in one window: coarse values from v1 beside raw ones from v2.
    rows = _rows(mon.drift("training", "last 1d", min_samples=10, store=False))
    for feature, rule in (("age", "coarse:10"), ("plan", "prefix:2")):
        assert rows.loc[feature, "drifted"] is None
        assert (rows.loc[feature, "n_ref"], rows.loc[feature, "n_cur"]) == (200, 400)
        assert f"differs: {', '.join(sorted([rule, 'none']))}" in rows.loc[feature, "note"]
    # v1 redeployed without its rules: its newer files are raw, its window mixed.
    _spool(tmp_path / "spool", frame, 1, None, "v1-raw")
    mon.ingest(tmp_path / "spool")
    rows = _rows(mon.drift("training", "last 1d", version=1, min_samples=10, store=False))
    assert rows.loc["age", "drifted"] is None and "differs" in rows.loc["age", "note"]
    # Two windows of the log compare logged values with logged values, whatever the rules.
    rows = _rows(mon.drift("last 1d", "last 1d", version=2, min_samples=10, store=False))
    assert rows.loc["age", "drifted"] is False and "differs" not in str(rows.loc["age", "note"])


def test_a_rule_added_later_marks_the_earlier_files_as_unredacted(
    mon: mnb.Monitor, frame: pd.DataFrame, tmp_path: Path
) -> None:
    _spool(tmp_path / "spool", frame, 1, {**RULES, "zip": "drop"}, "v1-zip")
    mon.ingest(tmp_path / "spool")
    got = mon.redaction(version=1)[["feature", "rule"]].values.tolist()
    assert got == [["age", "coarse:10"], ["plan", "prefix:2"], ["zip", "drop"], ["zip", "none"]]
