"""V2 as real clients speak it: tritonclient (PyPI) in its default binary mode, KServe's
documented iris request verbatim, MLServer's content types, requested outputs, ids."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

from .conftest import IRIS_COLUMNS, Fleet
from .test_errors import assert_error

# KServe's sklearn iris example input (docs: "Deploy InferenceService with ... V2 protocol"),
# byte for byte: one 2-D FP32 tensor for a model trained on four FP64 columns.
KSERVE_IRIS = """{
  "inputs": [
    {
      "name": "input-0",
      "shape": [2, 4],
      "datatype": "FP32",
      "data": [
        [6.8, 2.8, 4.8, 1.4],
        [6.0, 3.4, 4.5, 1.6]
      ]
    }
  ]
}"""
KSERVE_ROWS = np.array([[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]], dtype=np.float32)


@pytest.fixture
def client(fleet: Fleet) -> Any:
    c = triton.InferenceServerClient(url=f"127.0.0.1:{fleet.iris.port}")
    yield c
    c.close()


def test_tritonclient_default_mode_gets_binary_answers(fleet: Fleet, client: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris")
    meta = client.get_model_metadata("iris")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]

    X = fleet.iris_X[[0, 60, 120]]
    tensor = triton.InferInput("input-0", list(X.shape), "FP64")
    tensor.set_data_from_numpy(X)  # binary by default
    result = client.infer("iris", [tensor], request_id="req-7")
    response = result.get_response()
    assert response["id"] == "req-7"
    # No outputs named: tritonclient asks for every output in binary.
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    np.testing.assert_array_equal(result.as_numpy("predict"), fleet.iris_model.predict(X))
    np.testing.assert_allclose(
        result.as_numpy("confidence"), fleet.iris_model.predict_proba(X).max(axis=1)
    )


def test_tritonclient_requested_outputs_binary_and_json(fleet: Fleet, client: Any) -> None:
    X = fleet.iris_X[[5, 55]].astype(np.float32)  # FP32 for an FP64 model is accepted
    tensor = triton.InferInput("INPUT0", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    wanted = [
        triton.InferRequestedOutput("probabilities"),  # binary by default
        triton.InferRequestedOutput("predict", binary_data=False),
    ]
    result = client.infer("iris", [tensor], outputs=wanted)
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["probabilities", "predict"]
    proba = result.as_numpy("probabilities")
    assert proba.shape == (2, 3)
    np.testing.assert_allclose(proba, fleet.iris_model.predict_proba(X.astype(np.float64)))
    assert result.as_numpy("predict").tolist() == fleet.iris_model.predict(X).tolist()

    # JSON data in, JSON out: the same answers.
    tensor.set_data_from_numpy(X, binary_data=False)
    result = client.infer("iris", [tensor], outputs=[triton.InferRequestedOutput("probabilities",
                                                                                  binary_data=False)])  # fmt: skip
    np.testing.assert_allclose(result.as_numpy("probabilities"), proba)


def test_tritonclient_bytes_and_columns(fleet: Fleet) -> None:
    """The churn model: one tensor per column, strings as BYTES in binary."""
    X = fleet.churn_X.iloc[:3]
    c = triton.InferenceServerClient(url=f"127.0.0.1:{fleet.churn.port}")
    try:
        inputs = []
        for name, datatype in (("age", "INT64"), ("plan", "BYTES"), ("score", "FP64")):
            t = triton.InferInput(name, [3], datatype)
            values = X[name].to_numpy()
            t.set_data_from_numpy(values.astype(object) if datatype == "BYTES" else values)
            inputs.append(t)
        result = c.infer("churn", inputs)
        got = [v.decode() for v in result.as_numpy("predict")]
        assert got == fleet.churn_pipe.predict(X).tolist()
    finally:
        c.close()


@pytest.mark.parametrize("which", ["iris_df", "iris"])
def test_kserve_iris_example_verbatim(fleet: Fleet, which: str) -> None:
    """Columns model (four inputs) and array model (one [n, 4] input) both take it."""
    server = getattr(fleet, which)
    r = server.client.post(f"/v2/models/{which}/infer", content=KSERVE_IRIS,
                           headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200, r.text
    rows = KSERVE_ROWS.astype(np.float64)
    if which == "iris":
        expected = fleet.iris_model.predict(rows)
    else:
        expected = fleet.iris_df_model.predict(pd.DataFrame(rows, columns=IRIS_COLUMNS))
    (predict,) = [o for o in r.json()["outputs"] if o["name"] == "predict"]
    assert predict["data"] == expected.tolist()


def test_metadata_says_which_form_and_accepts_both(fleet: Fleet) -> None:
    meta = fleet.iris_df.client.get("/v2/models/iris_df").json()
    assert [i["name"] for i in meta["inputs"]] == IRIS_COLUMNS
    assert meta["parameters"]["input_form"] == "columns"
    assert meta["parameters"]["accepts"] == ["columns", "tensor"]
    rows = fleet.iris_X[[1, 2]]
    columns = {
        "inputs": [
            {"name": n, "shape": [2], "datatype": "FP64", "data": rows[:, k].tolist()}
            for k, n in enumerate(IRIS_COLUMNS)
        ]
    }
    a = fleet.iris_df.infer(columns)
    b = fleet.iris_df.infer(
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": rows.tolist()}]}
    )
    assert a.status_code == b.status_code == 200
    assert a.json()["outputs"] == b.json()["outputs"]


def test_mlserver_content_types(fleet: Fleet) -> None:
    rows = fleet.iris_X[[10, 90]]
    np_body = {
        "parameters": {"content_type": "np"},
        "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                    "data": rows.ravel().tolist(), "parameters": {"content_type": "np"}}],
    }  # fmt: skip
    pd_body = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": n, "shape": [2], "datatype": "FP64", "data": rows[:, k].tolist()}
            for k, n in enumerate(IRIS_COLUMNS)
        ],
    }
    expected = fleet.iris_df_model.predict(pd.DataFrame(rows, columns=IRIS_COLUMNS)).tolist()
    for body in (np_body, pd_body):
        r = fleet.iris_df.infer(body)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == expected
    bad = {**pd_body, "parameters": {"content_type": "arrow"}}
    assert_error(fleet.iris_df.infer(bad), 400, "content_type 'arrow'", "'np'", "'pd'")


def test_requested_outputs_and_id(fleet: Fleet) -> None:
    rows = fleet.iris_X[[3]]
    body = {
        "id": "abc-1",
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": rows.tolist()}],
        "outputs": [{"name": "probabilities"}],
    }
    r = fleet.iris.infer(body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["id"] == "abc-1"
    (out,) = answer["outputs"]
    assert (out["name"], out["shape"], out["datatype"]) == ("probabilities", [1, 3], "FP64")
    np.testing.assert_allclose(out["data"], fleet.iris_model.predict_proba(rows).ravel())
    unknown = {**body, "outputs": [{"name": "logits"}]}
    assert_error(fleet.iris.infer(unknown), 400, "unknown output(s) ['logits']", "probabilities")


def test_binary_request_errors_are_400s(fleet: Fleet) -> None:
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
                                     "parameters": {"binary_data_size": 32}}]}).encode()  # fmt: skip
    url = "/v2/models/iris/infer"
    short = fleet.iris.client.post(url, content=header + b"\0" * 8,
                                   headers={"inference-header-content-length": str(len(header))})  # fmt: skip
    assert_error(short, 400, "'input'", "binary_data_size 32")
    extra = fleet.iris.client.post(url, content=header + b"\0" * 40,
                                   headers={"inference-header-content-length": str(len(header))})  # fmt: skip
    assert_error(extra, 400, "binary part holds 40 bytes")
    bad_length = fleet.iris.client.post(url, content=header,
                                        headers={"inference-header-content-length": "x"})  # fmt: skip
    assert_error(bad_length, 400, "Inference-Header-Content-Length")
    no_blob = fleet.iris.client.post(url, content=header)
    assert_error(no_blob, 400, "no binary part")
