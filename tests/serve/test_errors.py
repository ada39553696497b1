"""Requests that do not fit get a V2 error body naming the problem; the server stays up."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Fleet, Server, sample


def churn_body(**changes: Any) -> dict[str, Any]:
    """A valid two-row request for the churn model, with tensors replaced or removed."""
    tensors = {
        "age": {"name": "age", "shape": [2], "datatype": "INT64", "data": [31, 40]},
        "plan": {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]},
        "score": {"name": "score", "shape": [2], "datatype": "FP64", "data": [0.2, 0.9]},
    }
    for name, tensor in changes.items():
        if tensor is None:
            del tensors[name]
        else:
            tensors[name] = {"name": name, **tensor}
    return {"inputs": list(tensors.values())}


def assert_error(r: httpx.Response, status: int, *fragments: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str)
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    return str(body["error"])


@pytest.fixture
def churn(fleet: Fleet) -> Iterator[Server]:
    """The churn server; each test also checks it still answers a good request after."""
    yield fleet.churn
    assert fleet.churn.infer(churn_body()).status_code == 200


def test_valid_body_is_accepted(churn: Server) -> None:
    assert churn.infer(churn_body()).status_code == 200


def nested(depth: int) -> Any:
    data: Any = [1.0]
    for _ in range(depth):
        data = [data]
    return data


BAD_TENSORS = {
    "shape does not match the data": (
        {"age": {"shape": [3], "datatype": "INT64", "data": [31, 40]}},
        ("'age'", "shape [3] needs 3 values, got 2"),
    ),
    "column sent as a matrix": (
        {"age": {"shape": [2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}},
        ("'age'", "[2, 2]"),
    ),
    "different batch sizes": (
        {"score": {"shape": [3], "datatype": "FP64", "data": [0.1, 0.2, 0.3]}},
        ("different batch sizes", "2", "3"),
    ),
    "strings for a number column": (
        {"age": {"shape": [2], "datatype": "BYTES", "data": ["a", "b"]}},
        ("'age'", "expected datatype INT64, got BYTES"),
    ),
    "numbers for a string column": (
        {"plan": {"shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}},
        ("'plan'", "expected BYTES"),
    ),
    "data not of the declared datatype": (
        {"score": {"shape": [2], "datatype": "FP64", "data": ["high", "low"]}},
        ("'score'", "FP64"),
    ),
    "numeric strings for a number column": (
        {"score": {"shape": [2], "datatype": "FP64", "data": ["0.5", "0.7"]}},
        ("'score'", "FP64"),
    ),
    "fractions for an integer tensor": (
        {"age": {"shape": [2], "datatype": "INT64", "data": [31.5, 40.0]}},
        ("'age'", "INT64"),
    ),
    "fractions for an integer column": (
        {"age": {"shape": [2], "datatype": "FP64", "data": [31.5, 40.0]}},
        ("'age'", "not all INT64"),
    ),
    "numbers declared as BYTES": (
        {"plan": {"shape": [2], "datatype": "BYTES", "data": [1, 2]}},
        ("'plan'", "BYTES"),
    ),
    "unknown datatype": (
        {"age": {"shape": [2], "datatype": "INT128", "data": [1, 2]}},
        ("'age'", "unknown datatype 'INT128'"),
    ),
    "negative shape": (
        {"age": {"shape": [-2], "datatype": "INT64", "data": [1, 2]}},
        ("'age'", "non-negative"),
    ),
    "negative value as UINT8": (
        {"age": {"shape": [2], "datatype": "UINT8", "data": [-1, 40]}},
        ("'age'", "value -1 is out of range for UINT8 (0 to 255)"),
    ),
    "too large for INT8": (
        {"age": {"shape": [2], "datatype": "INT8", "data": [200, 40]}},
        ("'age'", "value 200 is out of range for INT8 (-128 to 127)"),
    ),
    "too large for FP16": (
        {"score": {"shape": [2], "datatype": "FP16", "data": [1e6, 0.5]}},
        ("'score'", "out of range for FP16"),
    ),
    "FP16 for an FP64 column": (
        {"score": {"shape": [2], "datatype": "FP16", "data": [0.2, 0.9]}},
        ("'score'", "expected datatype FP64, got FP16", "send FP32 or FP64"),
    ),
    "BOOL for an FP64 column": (
        {"score": {"shape": [2], "datatype": "BOOL", "data": [True, False]}},
        ("'score'", "expected datatype FP64, got BOOL"),
    ),
    "integers too large to be exact in FP64": (
        {"score": {"shape": [2], "datatype": "INT64", "data": [2**60 + 1, 1]}},
        ("'score'", "not exact in FP64"),
    ),
    "UINT64 beyond INT64": (
        {"age": {"shape": [2], "datatype": "UINT64", "data": [2**63 + 5, 1]}},
        ("'age'", "out of range for INT64"),
    ),
    "data nested otherwise than the shape": (
        {"score": {"shape": [2], "datatype": "FP64", "data": [[0.2, 0.9]]}},
        ("'score'", "nested as [1, 2] but shape is [2]"),
    ),
    "absurd shape": (
        {"age": {"shape": [2**62, 2**62], "datatype": "INT64", "data": [1, 2]}},
        ("'age'", f"needs {2**124} values, got 2"),
    ),
    "too many dimensions": (
        {"age": {"shape": [1] * 9 + [2], "datatype": "INT64", "data": [1, 2]}},
        ("'age'", "more than 8 dimensions"),
    ),
    "data nested deeper than numpy goes": (
        {"score": {"shape": [2], "datatype": "FP64", "data": nested(70)}},
        ("'score'", "flat or evenly nested"),
    ),
    "booleans among floats": (
        {"score": {"shape": [2], "datatype": "FP64", "data": [0.5, True]}},
        ("'score'", "mixes booleans", "FP64"),
    ),
    "booleans among integers, nested": (
        {"age": {"shape": [2, 1], "datatype": "INT64", "data": [[31], [False]]}},
        ("'age'", "mixes booleans", "INT64"),
    ),
    "missing input": ({"score": None}, ("missing input", "'score'")),
    "unknown input": (
        {"zip": {"shape": [2], "datatype": "INT64", "data": [1, 2]}},
        ("unknown input", "'zip'"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_TENSORS))
def test_bad_tensor_is_a_400_naming_the_problem(churn: Server, case: str) -> None:
    changes, fragments = BAD_TENSORS[case]
    assert_error(churn.infer(churn_body(**changes)), 400, *fragments)


BAD_BODIES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "not an object": ("hello", ("'inputs'",)),
    "no inputs": ({"id": "x"}, ("'inputs'",)),
    "empty inputs": ({"inputs": []}, ("non-empty",)),
    "tensor not an object": ({"inputs": [3]}, ("inputs[0]",)),
    "tensor without data": (
        {"inputs": [{"name": "age", "shape": [1], "datatype": "INT64"}]},
        ("inputs[0]", "data"),
    ),
    "tensor name not a string": (
        {"inputs": [{"name": ["age"], "shape": [1], "datatype": "INT64", "data": [1]}]},
        ("name",),
    ),
    "datatype not a string": (
        {"inputs": [{"name": "age", "shape": [1], "datatype": ["INT64"], "data": [1]}]},
        ("datatype",),
    ),
    "ragged data": (
        {"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": [[1, 2], [3]]}]},
        ("'age'",),
    ),
    "same input twice": (
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}] * 2},
        ("'x' is given twice",),
    ),
    "no rows": (
        {
            "inputs": [
                {"name": n, "shape": [0], "datatype": d, "data": []}
                for n, d in (("age", "INT64"), ("plan", "BYTES"), ("score", "FP64"))
            ]
        },
        ("no rows",),
    ),
    "empty list": ([], ("empty",)),
    "records lacking a field": ([{"age": 3, "plan": "pro"}], ("'score'",)),
    "record with a string for a number": (
        [{"age": "31", "plan": "pro", "score": 0.5}],
        ("'age'", "INT64", "'31'"),
    ),
    "record with a number for a string": (
        [{"age": 31, "plan": 7, "score": 0.5}],
        ("'plan'", "BYTES"),
    ),
    "record with a null for an integer": (
        [{"age": None, "plan": "pro", "score": 0.5}],
        ("'age'", "INT64"),
    ),
    "rows of strings": ([["a", "b", "c"]], ("rows",)),
    "rows of the wrong width": ([[1.0, 2.0]], ("2 values", "expects 3")),
    "rows with a number as text": (
        [[31, "1.5", 0.5]],
        ("rows must hold numbers", "got str values"),
    ),
    "rows with a boolean": ([[31, True, 0.5]], ("rows must hold numbers", "got bool values")),
    "rows with a number too large": ([[10**400, "pro", 0.5]], ("rows",)),
    "rows with a number too large and a null": ([[10**400, None, 0.5]], ("too large", "FP64")),
    "output parameters not an object": (
        {**churn_body(), "outputs": [{"name": "predict", "parameters": "binary"}]},
        ("output 'predict'", "parameters must be an object"),
    ),
    "list of scalars": ([1, 2, 3], ("records", "rows")),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_body_is_a_400_naming_the_problem(churn: Server, case: str) -> None:
    body, fragments = BAD_BODIES[case]
    assert_error(churn.infer(body), 400, *fragments)


def test_json_nested_beyond_any_reason_is_a_400(fleet: Fleet) -> None:
    deep = b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP64", "data": '
    deep += b"[" * 200_000 + b"1" + b"]" * 200_000 + b"}]}"
    r = fleet.iris.client.post("/v2/models/iris/infer", content=deep)
    assert_error(r, 400, "nested too deeply")
    assert fleet.iris.client.get("/v2/health/live").status_code == 200


def test_invalid_json_is_a_400(churn: Server) -> None:
    r = churn.client.post(
        "/v2/models/churn/infer",
        content=b'{"inputs": [',
        headers={"content-type": "application/json"},
    )
    assert_error(r, 400, "not valid JSON")
    r = churn.client.post("/v2/models/churn/infer", content=b"\xff\xfe{")
    assert_error(r, 400, "not valid JSON")


def test_body_over_the_limit_is_a_413(churn: Server) -> None:
    assert churn.spec.max_body_bytes == 4096
    big = churn_body(plan={"shape": [2], "datatype": "BYTES", "data": ["x" * 3000, "y" * 3000]})
    assert_error(churn.infer(big), 413, "over the limit of 4096")


def test_streamed_body_over_the_limit_is_a_413(churn: Server) -> None:
    """A chunked body has no Content-Length; the limit still holds while it streams in."""

    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": [{"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["'
        for _ in range(64):
            yield b"x" * 1024
        yield b'"]}]}'

    r = churn.client.post("/v2/models/churn/infer", content=chunks())
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "over the limit of 4096")


def test_endless_body_is_refused_once_over_the_limit(churn: Server) -> None:
    """Only a server that stops reading at the limit can answer a body that never ends."""
    chunk = b"x" * 8192
    with socket.create_connection(("127.0.0.1", churn.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/churn/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n"
            % (len(chunk), chunk)
        )
        reply = b""
        while b"over the limit" not in reply:
            data = sock.recv(65536)  # raises TimeoutError if the server waits for more
            assert data, f"connection closed without an answer: {reply!r}"
            reply += data
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b'{"error":"body of more than 4096 bytes is over the limit of 4096"}' in reply


@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        ("/v2/models/nope/infer", ("unknown model 'nope'", "'churn'")),
        ("/v2/models/nope/versions/1/infer", ("unknown model 'nope'",)),
        ("/v2/models/churn/versions/2/infer", ("unknown version '2'", "version 1")),
    ],
)
def test_unknown_model_or_version_is_a_400(churn: Server, path: str, fragments: tuple[str]) -> None:
    assert_error(churn.client.post(path, json=churn_body()), 400, *fragments)


def test_infer_is_post_only(churn: Server) -> None:
    assert_error(churn.client.get("/v2/models/churn/infer"), 405, "GET is not allowed", "POST")
    assert_error(churn.client.put("/v2/models/churn/infer", json={}), 405, "PUT")


def test_an_unknown_endpoint_is_a_404_with_a_v2_body(churn: Server) -> None:
    assert_error(churn.client.get("/v2/nope"), 404, "no endpoint /v2/nope", "GET /v2")
    assert_error(churn.client.post("/infer", json=churn_body()), 404, "no endpoint /infer")


def test_model_that_raises_is_a_500_and_the_server_keeps_serving(fleet: Fleet) -> None:
    for server in (fleet.doubler, fleet.doubler_unbatched):
        before = sample(server.metrics(), "mlops_requests", "mlops_requests_total", code="500")
        bad = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, -3.0]}]}
        assert_error(server.infer(bad), 500, "ValueError", "x must not be negative, got [-3.0]")
        good = server.infer([{"x": 2.5}])
        assert good.status_code == 200 and good.json()["outputs"][0]["data"][0] == 5.0
        after = sample(server.metrics(), "mlops_requests", "mlops_requests_total", code="500")
        assert after == before + 1


def test_rows_of_the_wrong_width_for_an_array_model(fleet: Fleet) -> None:
    assert_error(fleet.iris.infer([[5.1, 3.5, 1.4]]), 400, "'input'", "[-1, 4]", "[1, 3]")


def test_no_rows_for_a_model_that_could_take_them(fleet: Fleet) -> None:
    body = {"inputs": [{"name": "x", "shape": [0], "datatype": "FP64", "data": []}]}
    assert_error(fleet.doubler.infer(body), 400, "no rows")


def test_model_answering_too_few_rows_is_a_500(fleet: Fleet) -> None:
    for server in (fleet.doubler, fleet.doubler_unbatched):
        r = server.infer([{"x": 1.0}, {"x": 999.0}, {"x": 3.0}])
        assert_error(r, 500, "predict returned 2 predictions for 3 rows")
        assert server.infer([{"x": 4.0}]).json()["outputs"][0]["data"][0] == 8.0
