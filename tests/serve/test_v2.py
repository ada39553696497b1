"""Open Inference Protocol (V2) conformance of a real server: endpoints, shapes, answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlops_nb as mnb

from .conftest import Fleet


def v2_inputs(X: pd.DataFrame, column_shape: str = "flat") -> dict[str, Any]:
    """One V2 tensor per column, as a KServe or Triton client sends them."""
    inputs = []
    for name in X.columns:
        values = X[name]
        datatype = {"i": "INT64", "f": "FP64"}.get(values.dtype.kind, "BYTES")
        shape = [len(X)] if column_shape == "flat" else [len(X), 1]
        inputs.append({"name": name, "shape": shape, "datatype": datatype, "data": values.tolist()})
    return {"inputs": inputs}


def output(body: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [o for o in body["outputs"] if o["name"] == name]
    return found


# -- health and metadata -------------------------------------------------------------------


def test_health_live_and_ready(fleet: Fleet) -> None:
    live = fleet.churn.client.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = fleet.churn.client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert ready.headers["content-type"] == "application/json"


def test_server_metadata(fleet: Fleet) -> None:
    r = fleet.churn.client.get("/v2")
    assert r.status_code == 200
    assert r.json() == {
        "name": "mlops-nb",
        "version": mnb.__version__,
        "extensions": ["binary_tensor_data"],
    }


@pytest.mark.parametrize("path", ["/v2/models/churn", "/v2/models/churn/versions/1"])
def test_model_metadata_publishes_the_signature(fleet: Fleet, path: str) -> None:
    r = fleet.churn.client.get(path)
    assert r.status_code == 200
    info = fleet.churn_v.info()
    assert r.json() == {
        "name": "churn",
        "versions": ["1"],
        "platform": "sklearn",
        "inputs": [
            {"name": "age", "datatype": "INT64", "shape": [-1]},
            {"name": "plan", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP64", "shape": [-1]},
        ],
        "outputs": [
            {"name": "predict", "datatype": "BYTES", "shape": [-1]},
            {"name": "confidence", "datatype": "FP64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
        ],
        "parameters": {
            "digest": info["digest"],
            "input_form": "columns",
            "accepts": ["columns", "tensor"],
            "content_types": ["np", "pd"],
        },
    }


def test_array_model_metadata_has_one_2d_input(fleet: Fleet) -> None:
    body = fleet.iris.client.get("/v2/models/iris").json()
    assert body["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert body["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "confidence", "datatype": "FP64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert body["parameters"]["input_form"] == "tensor"


@pytest.mark.parametrize("path", ["/v2/models/churn/ready", "/v2/models/churn/versions/1/ready"])
def test_model_ready(fleet: Fleet, path: str) -> None:
    r = fleet.churn.client.get(path)
    assert (r.status_code, r.json()) == (200, {"name": "churn", "ready": True})


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/v2/models/nope", "'nope'"),
        ("/v2/models/churn/versions/2", "'2'"),
        ("/v2/models/nope/ready", "'nope'"),
        ("/v2/models/churn/versions/9/ready", "'9'"),
    ],
)
def test_metadata_of_another_model_is_not_found(fleet: Fleet, path: str, named: str) -> None:
    r = fleet.churn.client.get(path)
    assert r.status_code == 404
    assert list(r.json()) == ["error"] and named in r.json()["error"]


# -- infer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, 1, "1"])
def test_infer_with_column_tensors_answers_like_the_model(fleet: Fleet, version: Any) -> None:
    X = fleet.churn_X.iloc[10:17].reset_index(drop=True)
    r = fleet.churn.infer(v2_inputs(X), version=version)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "churn" and body["model_version"] == "1"
    predict = output(body, "predict")
    assert predict["datatype"] == "BYTES" and predict["shape"] == [7]
    assert predict["data"] == fleet.churn_pipe.predict(X).tolist()
    confidence = output(body, "confidence")
    assert confidence["datatype"] == "FP64" and confidence["shape"] == [7]
    np.testing.assert_allclose(confidence["data"], fleet.churn_pipe.predict_proba(X).max(axis=1))
    ids = body["parameters"]["prediction_ids"]
    assert len(ids) == 7 and len(set(ids)) == 7 and body["id"] in ids


def test_infer_accepts_columns_of_shape_n_by_1(fleet: Fleet) -> None:
    X = fleet.churn_X.iloc[:3]
    r = fleet.churn.infer(v2_inputs(X, column_shape="n1"))
    assert r.status_code == 200, r.text
    assert output(r.json(), "predict")["data"] == fleet.churn_pipe.predict(X).tolist()


def test_request_id_is_echoed_and_prediction_ids_stay_unique(fleet: Fleet) -> None:
    body = {"id": "req-42", **v2_inputs(fleet.churn_X.iloc[:1])}
    first = fleet.churn.infer(body).json()
    again = fleet.churn.infer(body).json()  # a client reusing its request id
    assert first["id"] == again["id"] == "req-42"
    (a,) = first["parameters"]["prediction_ids"]
    (b,) = again["parameters"]["prediction_ids"]
    assert a != b and "req-42" not in (a, b)


def test_infer_on_a_2d_array_model(fleet: Fleet) -> None:
    X = fleet.iris_X[[0, 60, 120, 149]]
    body = {
        "inputs": [
            {"name": "input", "shape": [4, 4], "datatype": "FP64", "data": X.ravel().tolist()}
        ]
    }
    r = fleet.iris.infer(body, version=1)
    assert r.status_code == 200, r.text
    predict = output(r.json(), "predict")
    assert predict == {
        "name": "predict",
        "shape": [4],
        "datatype": "INT64",
        "data": fleet.iris_model.predict(X).tolist(),
    }
    np.testing.assert_allclose(
        output(r.json(), "confidence")["data"], fleet.iris_model.predict_proba(X).max(axis=1)
    )


def test_convenience_list_of_records(fleet: Fleet) -> None:
    X = fleet.churn_X.iloc[20:25]
    r = fleet.churn.infer(X.to_dict(orient="records"))
    assert r.status_code == 200, r.text
    predict = output(r.json(), "predict")
    assert predict["shape"] == [5] and predict["data"] == fleet.churn_pipe.predict(X).tolist()


def test_convenience_list_of_rows_for_an_array_model(fleet: Fleet) -> None:
    X = fleet.iris_X[::30]
    r = fleet.iris.infer(X.tolist())
    assert r.status_code == 200, r.text
    assert output(r.json(), "predict")["data"] == fleet.iris_model.predict(X).tolist()


def test_convenience_list_of_rows_for_a_one_column_frame_model(fleet: Fleet) -> None:
    r = fleet.doubler.infer([[1.5], [4.0]])
    assert r.status_code == 200, r.text
    predict = output(r.json(), "predict")
    assert predict["shape"] == [2, 2] and predict["data"][0::2] == [3.0, 8.0]


def test_convenience_rows_of_integers_and_nulls() -> None:
    from mlops_nb.serve.values import records

    frame = {n: {"name": n, "shape": [-1], "datatype": "FP64"} for n in ("a", "b")}
    columns = records([[1, None], [2, 0.5]], frame)
    assert columns["a"].tolist() == [1.0, 2.0]
    assert np.isnan(columns["b"][0]) and columns["b"][1] == 0.5  # null is a missing value
    assert records([[3, 4]], {})["input"].dtype == np.float64
    # Integers for a float input are taken as floats are (20000001 is not exact in FP32,
    # and neither is 20000001.0: the rows path holds neither to it).
    fp32 = {"input-0": {"name": "input-0", "shape": [-1, 2], "datatype": "FP32"}}
    assert records([[20_000_001, 3]], fp32)["input-0"].dtype == np.float64
    ints = {"a": {"name": "a", "shape": [-1], "datatype": "INT64"}}
    assert records([[2**60 + 1]], ints)["a"].tolist() == [2**60 + 1]  # exact, as an integer


def test_convenience_rows_of_integers_for_a_one_column_frame_model(fleet: Fleet) -> None:
    r = fleet.doubler.infer([[1], [4]])
    assert r.status_code == 200, r.text
    assert output(r.json(), "predict")["data"][0::2] == [2.0, 8.0]


def test_convenience_records_for_a_one_column_frame_model(fleet: Fleet) -> None:
    r = fleet.doubler.infer([{"x": 1.5}, {"x": 2}])
    assert r.status_code == 200, r.text
    assert output(r.json(), "predict")["data"][0::2] == [3.0, 4.0]


def test_2d_output_keeps_its_shape(fleet: Fleet) -> None:
    body = {"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}
    predict = output(fleet.doubler.infer(body).json(), "predict")
    assert predict["shape"] == [3, 2] and predict["datatype"] == "FP64"
    assert np.array(predict["data"]).reshape(3, 2)[:, 0].tolist() == [2.0, 4.0, 6.0]
