"""Bad or shifting input to the prediction log: refused with a clear error, nothing changed."""

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
    ws.model("churn").register({"v": 1})
    return ws.monitor("churn")


def _state(ws: mnb.Workspace, mon: mnb.Monitor) -> tuple[list[str], pd.DataFrame]:
    files = sorted(str(p) for p in Path(ws.logs_root).rglob("*") if p.is_file())
    return files, mon.predictions()


def test_a_feature_that_changes_kind_is_refused_and_earlier_rows_keep_their_type(
    ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    mon.log(pd.DataFrame({"zip": [1234, 5678]}), [0, 1], version=1)
    before = _state(ws, mon)
    with pytest.raises(mnb.InvalidArgument, match=r"'zip' was logged as number .* convert it"):
        mon.log(pd.DataFrame({"zip": ["01234", "x"]}), [0, 1], version=1)
    files, frame = _state(ws, mon)
    assert files == before[0]
    pd.testing.assert_frame_equal(frame, before[1])
    assert frame["feature.zip"].tolist() == [1234, 5678]
    # Integers and floats of a feature mix: both are numbers, read as DOUBLE.
    mon.log(pd.DataFrame({"zip": [1.5]}), [1], version=1)
    assert sorted(mon.predictions()["feature.zip"].tolist()) == [1.5, 1234.0, 5678.0]


def test_a_prediction_that_changes_kind_is_refused(ws: mnb.Workspace, mon: mnb.Monitor) -> None:
    mon.log(np.zeros((2, 1)), [0, 1], version=1)
    before = _state(ws, mon)
    for other in (["a", "b"], [0.5, 0.25], [True, False]):
        with pytest.raises(mnb.InvalidArgument, match="'prediction' was logged as integer"):
            mon.log(np.zeros((2, 1)), other, version=1)
    assert _state(ws, mon)[0] == before[0]
    assert mon.predictions()["prediction"].tolist() == [0, 1]


@pytest.mark.parametrize(
    "y_pred", [[1, "a"], pd.Series([1, "a"], dtype=object), np.array([1, "a"], dtype=object)]
)
def test_mixed_predictions_are_refused_not_stored_as_text(
    ws: mnb.Workspace, mon: mnb.Monitor, y_pred: object
) -> None:
    with pytest.raises(mnb.InvalidArgument, match="mixed or unsupported types"):
        mon.log(np.zeros((2, 1)), y_pred, version=1)
    assert _state(ws, mon)[0] == []


def test_mixed_labels_and_mixed_feature_columns_are_refused(
    ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    ids = mon.log(np.zeros((2, 1)), [0, 1], version=1)
    with pytest.raises(mnb.InvalidArgument, match="y_true holds values of mixed"):
        mon.log_labels(ids, [1, "a"])
    assert mon.predictions()["label"].isna().all()
    before = _state(ws, mon)[0]
    with pytest.raises(mnb.InvalidArgument, match="feature 'x0' holds values of mixed"):
        mon.log(pd.DataFrame({"x0": pd.Series([1, "a"], dtype=object)}), [0, 1], version=1)
    assert _state(ws, mon)[0] == before


def test_duplicate_column_names_are_refused(ws: mnb.Workspace, mon: mnb.Monitor) -> None:
    X = pd.DataFrame([[1, 2], [3, 4]], columns=["a", "a"])
    with pytest.raises(mnb.InvalidArgument, match=r"duplicate column names \['a'\]"):
        mon.log(X, [0, 1], version=1)
    assert _state(ws, mon)[0] == []


def test_a_workspace_under_a_key_value_folder_keeps_its_labels(tmp_path: Path) -> None:
    root = tmp_path / "version=7" / "model=other" / "date=1999-01-01"
    root.mkdir(parents=True)
    ws = mnb.open(root / "mlops.duckdb")
    try:
        ws.model("churn").register({"v": 1})
        ws.model("churn").register({"v": 2})
        mon = ws.monitor("churn")
        mon.log(np.zeros((2, 1)), [0, 1], version=2)
        spool = root / "spool"
        folder = spool / "model=churn" / "version=1" / "date=2026-11-20"
        folder.mkdir(parents=True)
        table = mon.predictions()[["id", "timestamp", "prediction"]].assign(id=["s1", "s2"])
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), folder / "a.parquet")
        assert mon.ingest(spool)["version"].tolist() == [1]
        frame = mon.predictions()
        assert sorted(frame["version"].tolist()) == [1, 1, 2, 2]
        assert "model" not in frame.columns and "date" not in frame.columns
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.predictions("last 99999999999d"), "longer than 1000 years"),
        (lambda m: m.predictions("last 1e400d"), "cannot read duration|longer than"),
        (lambda m: m.predictions(limit=-1), "limit must be a whole number >= 0"),
        (lambda m: m.predictions(limit=2.5), "limit must be a whole number"),
        (lambda m: m.metrics("1h", over="last 24h"), r"metrics\(window=\.\.\.\)"),
        (lambda m: m.metrics("1h", windw="last 24h"), "unexpected arguments"),
        (lambda m: m.drift("last 2d", "last 1d", thresholds={"x0": float("nan")}), "finite"),
        (lambda m: m.drift("last 2d", "last 1d", thresholds={"x0": -1}), "finite number > 0"),
        (lambda m: m.drift("last 2d", "last 1d", thresholds={"x0": "a"}), "must be a number"),
        (lambda m: m.drift("last 2d", "last 1d", exact="yes"), "exact must be"),
        (lambda m: m.ingest(".", after="move"), "after must be one of"),
        (lambda m: m.compact(small_rows=0), "small_rows must be"),
    ],
)
def test_bad_arguments_get_clear_errors(mon: mnb.Monitor, call: object, match: str) -> None:
    mon.log(np.zeros((3, 1)), [0, 1, 0], version=1)
    with pytest.raises(mnb.InvalidArgument, match=match):
        call(mon)  # type: ignore[operator]


def test_metrics_take_a_bucket_and_a_window(mon: mnb.Monitor) -> None:
    now = pd.Timestamp.now(tz="UTC")
    stamps = [now - pd.Timedelta(hours=h) for h in (50, 30, 5, 1)]
    mon.log(np.zeros((4, 1)), [0, 1, 0, 1], version=1, timestamps=stamps)
    assert mon.metrics("1h", window="last 24h")["count"].sum() == 2
    assert mon.metrics("1h")["count"].sum() == 4
    assert mon.metrics(bucket="1d", window="last 2d")["count"].sum() == 3


def test_kinds_of_a_log_that_predates_the_kinds_table_come_from_its_files(
    ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    mon.log(pd.DataFrame({"zip": [1234, 5678]}), [0, 1], version=1)
    ws._store.write(lambda con: con.execute("DELETE FROM log_columns").fetchall())
    with pytest.raises(mnb.InvalidArgument, match="'zip' was logged as number"):
        mon.log(pd.DataFrame({"zip": ["01234", "x"]}), [0, 1], version=1)
    with pytest.raises(mnb.InvalidArgument, match="'prediction' was logged as integer"):
        mon.log(pd.DataFrame({"zip": [1]}), ["a"], version=1)
    assert mon.predictions()["feature.zip"].tolist() == [1234, 5678]


def test_generated_ids_are_strings_in_row_order_unique_across_calls(
    ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    first = mon.log(np.zeros((12, 1)), np.arange(12) % 2, version=1)
    second = mon.log(np.zeros((12, 1)), np.arange(12) % 2, version=1)
    assert isinstance(first, pd.arrays.ArrowStringArray) and len(first) == 12
    assert list(first) == sorted(first)  # zero-padded row numbers sort in row order
    assert all(isinstance(i, str) for i in first[[0, 5, 11]])
    assert not set(first) & set(second)
    logged = mon.predictions()
    assert sorted(logged["id"]) == sorted([*first, *second])
    assert mon.log_labels(first[::2], np.ones(6, dtype=int)) == 6
    assert mon.predictions().set_index("id").loc[list(first[::2]), "label"].eq("1").all()


@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "uint8", "bool"])
def test_a_frame_of_one_dtype_keeps_its_type_and_values(
    ws: mnb.Workspace, mon: mnb.Monitor, dtype: str
) -> None:
    values = np.arange(12).reshape(4, 3) % 2
    one_block = pd.DataFrame(values.astype(dtype), columns=["a", "b", "c"])
    # The same values in three blocks (one per column), and a frame of mixed dtypes.
    blocks = pd.concat([one_block[[c]].copy() for c in "abc"], axis=1)
    mixed = one_block.assign(d=["x", "y", "z", "w"])
    for X in (one_block, blocks, mixed):
        mon.log(X, [0, 1, 0, 1], version=1)
    files = sorted(Path(ws.logs_root).rglob("*.parquet"))
    types = {pq.read_schema(f).field("feature.b").type for f in files}
    assert types == {pa.from_numpy_dtype(np.dtype(dtype))}
    logged = mon.predictions().sort_values("id")
    for c in "abc":
        assert logged[f"feature.{c}"].tolist() == one_block[c].tolist() * 3


def test_log_leaves_the_caller_s_arrays_as_they_were(mon: mnb.Monitor) -> None:
    # The frame and number paths read the caller's buffers without copying; none of them
    # may write into those buffers (the NaN mask, the cast of a one-block frame), and what
    # was logged must not follow later changes to them.
    X = pd.DataFrame(np.arange(6, dtype=np.float32).reshape(3, 2), columns=["a", "b"])
    X.iloc[1, 0] = np.nan
    confidence = np.array([0.5, np.nan, 0.7])
    latency = np.array([np.nan, 2.0, 3.0])
    originals = X.copy(), confidence.copy(), latency.copy()
    mon.log(X, [0, 1, 0], version=1, confidence=confidence, latency_ms=latency)
    pd.testing.assert_frame_equal(X, originals[0])
    np.testing.assert_array_equal(confidence, originals[1])
    np.testing.assert_array_equal(latency, originals[2])
    X.iloc[:, :] = 9.0
    confidence[:] = 0.0
    logged = mon.predictions().sort_values("id")
    assert logged["feature.b"].tolist() == [1.0, 3.0, 5.0]
    assert logged["confidence"].isna().tolist() == [False, True, False]
    assert sorted(logged["confidence"].dropna()) == [0.5, 0.7]


def test_confidence_nan_is_missing_and_out_of_range_is_refused(
    ws: mnb.Workspace, mon: mnb.Monitor
) -> None:
    mon.log(np.zeros((3, 1)), [0, 1, 0], version=1, confidence=[0.5, np.nan, 1.0],
            latency_ms=[np.nan, np.nan, np.nan])  # fmt: skip
    logged = mon.predictions().sort_values("id")
    assert logged["confidence"].isna().tolist() == [False, True, False]
    assert logged["latency_ms"].isna().all()
    before = _state(ws, mon)
    for bad in ([0.5, np.nan, np.inf], [np.nan, -0.1, 0.2], [np.nan, np.nan, 1.01]):
        with pytest.raises(mnb.InvalidArgument, match=r"confidence values must be finite"):
            mon.log(np.zeros((3, 1)), [0, 1, 0], version=1, confidence=bad)
    with pytest.raises(mnb.InvalidArgument, match=r"latency_ms values must be finite"):
        mon.log(np.zeros((1, 1)), [0], version=1, latency_ms=[np.inf])
    files, frame = _state(ws, mon)
    assert files == before[0]
    pd.testing.assert_frame_equal(frame, before[1])


def test_default_timestamps_are_the_workspace_clock_in_utc(mon: mnb.Monitor) -> None:
    before = pd.Timestamp.now(tz="UTC")
    mon.log(np.zeros((3, 1)), [0, 1, 0], version=1)
    stamps = mon.predictions()["timestamp"]
    assert stamps.nunique() == 1
    assert before - pd.Timedelta(seconds=1) <= stamps.iloc[0] <= pd.Timestamp.now(tz="UTC")
    assert str(stamps.dt.tz) == "UTC"
