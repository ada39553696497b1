"""Prediction logs, labels and spool ingestion on a real workspace file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mlops_nb as mnb


@pytest.fixture
def mon(ws: mnb.Workspace) -> mnb.Monitor:
    X = pd.DataFrame({"age": [30, 40], "plan": ["a", "b"]})
    ws.model("churn").register({"v": 1}, input_example=X)
    ws.model("churn").register({"v": 2})
    return ws.monitor("churn")


def _files(ws: mnb.Workspace) -> list[Path]:
    return sorted(Path(ws.logs_root).rglob("*.parquet"))


def test_log_stores_typed_columns_and_returns_ids(ws: mnb.Workspace, mon: mnb.Monitor) -> None:
    X = pd.DataFrame({"age": [31, 45, 52], "plan": ["a", "b", None], "score": [0.1, np.nan, 2.0]})
    ids = mon.log(X, ["stay", "leave", "stay"], version=1, confidence=[0.9, 0.7, 0.6],
                  latency_ms=[3.0, 4.5, 2.2])  # fmt: skip
    assert len(ids) == 3 and len(set(ids)) == 3
    files = _files(ws)
    assert len(files) == 1
    rel = files[0].relative_to(ws.logs_root).parts
    assert rel[0] == "model=churn" and rel[1] == "version=1" and rel[2].startswith("date=")
    schema = pq.read_schema(files[0])
    assert schema.field("feature.age").type == pa.int64()
    assert schema.field("feature.plan").type == pa.string()
    assert schema.field("feature.score").type == pa.float64()
    assert schema.field("prediction").type == pa.string()
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    frame = mon.predictions()
    assert frame["id"].tolist() == list(ids)
    assert frame["prediction"].tolist() == ["stay", "leave", "stay"]
    assert frame["feature.plan"].tolist()[:2] == ["a", "b"]
    assert frame["version"].tolist() == [1, 1, 1]
    assert mon.files()["rows"].tolist() == [3]


def test_array_features_take_names_from_the_signature(mon: mnb.Monitor) -> None:
    mon.log(np.array([[30, 1], [40, 0]]), [1, 0], version=1)
    assert {"feature.age", "feature.plan"} <= set(mon.predictions().columns)
    mon.log(np.array([[1.0, 2.0, 3.0]]), [1], version=2)  # no signature: x0, x1, ...
    assert "feature.x2" in mon.predictions(version=2).columns


def test_a_call_over_many_days_is_one_file_under_its_first_day(
    ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    stamps = ["2026-11-01T23:59:00Z", "2026-11-02T00:01:00Z", "2026-11-02T10:00:00Z"]
    mon.log(np.zeros((3, 2)), [0, 1, 0], version=1, timestamps=stamps)
    assert [p.parent.name for p in _files(ws)] == ["date=2026-11-01"]
    assert mon.predictions(("2026-11-02", "2026-11-03"))["prediction"].tolist() == [1, 0]
    assert mon.predictions(("2026-11-03", "2026-11-04")).empty


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"X": np.zeros((3, 2)), "y_pred": [1, 2]}, "X has 3 rows but y_pred has 2"),
        ({"confidence": [0.5, 1.5]}, r"within \[0, 1\]"),
        ({"latency_ms": [-1.0, 2.0]}, "latency_ms"),
        ({"ids": ["a", "a"]}, "unique"),
        ({"ids": ["a"]}, "ids has 1 values"),
        ({"timestamps": ["yesterday", "x"]}, "timestamps"),
        ({"y_pred": [[1, 2], [3, 4]]}, "one-dimensional"),
        ({"X": np.zeros((2, 2, 2))}, "tabular"),
        ({"y_pred": [object(), object()]}, "unsupported|mixed"),
    ],
)
def test_bad_log_input_writes_nothing(ws: mnb.Workspace, mon: mnb.Monitor, kwargs, match) -> None:
    args = {"X": np.zeros((2, 2)), "y_pred": [1, 2], "version": 1, **kwargs}
    X, y = args.pop("X"), args.pop("y_pred")
    with pytest.raises(mnb.InvalidArgument, match=match):
        mon.log(X, y, **args)
    assert _files(ws) == []
    assert mon.files().empty


def test_unknown_model_or_version(ws: mnb.Workspace, mon: mnb.Monitor) -> None:
    with pytest.raises(mnb.VersionNotFound, match="no version 7"):
        mon.log(np.zeros((1, 2)), [1], version=7)
    with pytest.raises(mnb.ModelNotFound):
        ws.monitor("nope").log(np.zeros((1, 2)), [1], version=1)
    assert _files(ws) == []


def test_supplied_ids_must_be_new(mon: mnb.Monitor) -> None:
    mon.log(np.zeros((2, 2)), [1, 0], version=1, ids=["r1", "r2"])
    with pytest.raises(mnb.InvalidArgument, match="already logged"):
        mon.log(np.zeros((2, 2)), [1, 0], version=1, ids=["r2", "r3"])
    assert mon.predictions()["id"].tolist() == ["r1", "r2"]


def test_labels_join_replace_and_refuse_unknown_ids(mon: mnb.Monitor) -> None:
    ids = mon.log(np.zeros((4, 2)), [1, 0, 1, 1], version=1)
    assert mon.log_labels([ids[2], ids[0]], [0, 1]) == 2
    assert mon.log_labels([ids[2]], [1]) == 1  # a correction replaces the label
    with pytest.raises(mnb.InvalidArgument, match="1 of 2 ids were never logged"):
        mon.log_labels([ids[1], "ghost"], [0, 0])
    with pytest.raises(mnb.InvalidArgument, match="must match"):
        mon.log_labels(ids[:2], [1])
    labels = mon.predictions().set_index("id")["label"]
    assert labels[ids[0]] == "1" and labels[ids[2]] == "1"
    assert pd.isna(labels[ids[1]]) and pd.isna(labels[ids[3]])


def _spool_file(root: Path, version: int, rows: int, seed: int, **overrides: pa.Array) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "model=churn" / f"version={version}" / "date=2026-11-20"
    folder.mkdir(parents=True, exist_ok=True)
    columns = {
        "id": pa.array([f"s{seed}-{i}" for i in range(rows)]),
        "timestamp": pa.array(
            pd.date_range("2026-11-20", periods=rows, freq="s", tz="UTC").as_unit("us")
        ),
        "prediction": pa.array(rng.integers(0, 2, rows)),
        "confidence": pa.array(rng.random(rows)),
        "latency_ms": pa.array(rng.random(rows) * 10),
        "feature.age": pa.array(rng.integers(18, 90, rows)),
        **overrides,
    }
    path = folder / f"part-{seed}.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def test_ingest_spool_once(tmp_path: Path, mon: mnb.Monitor) -> None:
    spool = tmp_path / "spool"
    _spool_file(spool, 1, 50, seed=1)
    _spool_file(spool, 2, 30, seed=2)
    first = mon.ingest(spool)
    assert first["added"].tolist() == [True, True]
    assert sorted(first["rows"]) == [30, 50]
    again = mon.ingest(spool)
    assert again["added"].tolist() == [False, False]
    assert len(mon.predictions()) == 80
    assert mon.predictions(version=2)["id"].str.startswith("s2-").all()


def test_ingest_refuses_bad_files_and_adds_none(tmp_path: Path, mon: mnb.Monitor) -> None:
    spool = tmp_path / "spool"
    _spool_file(spool, 1, 10, seed=1)
    bad = _spool_file(spool, 1, 10, seed=2, id=pa.array(range(10)))
    with pytest.raises(mnb.InvalidArgument, match="'id' has type int64"):
        mon.ingest(spool)
    assert mon.predictions().empty
    bad.unlink()
    _spool_file(spool, 1, 10, seed=3, extra=pa.array(range(10)))
    with pytest.raises(mnb.InvalidArgument, match="unexpected columns"):
        mon.ingest(spool)
    (spool / "model=churn" / "version=1" / "date=2026-11-20" / "part-3.parquet").unlink()
    _spool_file(spool, 9, 10, seed=4)
    with pytest.raises(mnb.InvalidArgument, match="no version 9"):
        mon.ingest(spool)
    assert mon.predictions().empty
    for f in (spool / "model=churn" / "version=9").rglob("*.parquet"):
        f.unlink()
    broken = spool / "model=churn" / "version=1" / "date=2026-11-20" / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(mnb.InvalidArgument, match="not a readable Parquet file"):
        mon.ingest(spool)
    with pytest.raises(mnb.InvalidArgument, match="does not exist"):
        mon.ingest(tmp_path / "nowhere")


def test_windows(mon: mnb.Monitor) -> None:
    now = pd.Timestamp.now(tz="UTC")
    stamps = [now - pd.Timedelta(hours=h) for h in (50, 30, 5, 1)]
    mon.log(np.zeros((4, 2)), [50, 30, 5, 1], version=1, timestamps=stamps)
    assert sorted(mon.predictions("last 24h")["prediction"]) == [1, 5]
    assert sorted(mon.predictions("last 2")["prediction"]) == [1, 5]
    assert sorted(mon.predictions(mnb.Window(last="2d"))["prediction"]) == [1, 5, 30]
    assert len(mon.predictions("all")) == 4
    with pytest.raises(mnb.InvalidArgument, match="cannot read window"):
        mon.predictions("yesterday")
    with pytest.raises(mnb.InvalidArgument, match="not before"):
        mnb.Window(start="2026-11-02", end="2026-11-01")


def test_repr(mon: mnb.Monitor) -> None:
    assert repr(mon) == "<Monitor churn>"
