"""Open Inference Protocol (V2) request decoding and response encoding.

A request names input tensors with a shape, a datatype and row-major data::

    {"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": [31, 40]},
                {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}

For a model registered with a DataFrame example, each column is one input tensor of shape
``[n]`` (or ``[n, 1]``); for an array example, one tensor ``input`` of shape ``[n, k]``.
For convenience a body that is a plain JSON list of records (``[{"age": 31, ...}]``) or
of rows (``[[1.0, 2.0], ...]``) is accepted too.

Values must fit their datatype (no ``"1.5"`` for FP64, no ``1.5`` for INT64, strings for
BYTES; ``null`` is a missing value for floats and strings), and numbers are converted to
the signature's datatype, so the model and the payload log see one type per feature.

>>> batch = decode({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64",
...                             "data": [1, 2, 3, 4]}]}, None)
>>> batch.rows, batch.columns["x"].tolist()
(2, [[1.0, 2.0], [3.0, 4.0]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..signature import v2_datatype

NUMPY_OF = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}  # fmt: skip


class BadRequest(ValueError):
    """The request does not fit the protocol or the model's signature (HTTP 400)."""


@dataclass
class Batch:
    """Decoded input: named columns of equal length, or one 2-D tensor named ``input``."""

    columns: dict[str, np.ndarray[Any, Any]]
    rows: int
    request_id: str | None = None


def _tensor(spec: Any, index: int) -> tuple[str, np.ndarray[Any, Any]]:
    if not isinstance(spec, dict):
        raise BadRequest(f"inputs[{index}] must be an object with name, shape, datatype, data")
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in spec]
    if missing:
        raise BadRequest(f"inputs[{index}] is missing {', '.join(missing)}")
    name, shape, datatype, data = spec["name"], spec["shape"], spec["datatype"], spec["data"]
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{index}]: name must be a non-empty string, got {name!r}")
    if not isinstance(datatype, str) or datatype not in NUMPY_OF:
        raise BadRequest(
            f"input {name!r}: unknown datatype {datatype!r}; use one of {', '.join(NUMPY_OF)}"
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadRequest(f"input {name!r}: shape must be a list of non-negative integers")
    arr = _array(name, datatype, data)
    expected = int(np.prod(shape)) if shape else 1
    if arr.size != expected:
        raise BadRequest(f"input {name!r}: shape {shape} needs {expected} values, got {arr.size}")
    return name, arr.reshape(shape)


# What JSON values fit each datatype kind; numpy would otherwise coerce silently
# ("1.5" -> 1.5 for FP64, 1.5 -> 1 for INT64, "x" -> True for BOOL).
_FITS = {"b": "boolean", "i": "integer", "u": "integer", "f": "numeric", "O": "string"}


def _array(name: str, datatype: str, data: Any) -> np.ndarray[Any, Any]:
    try:
        loose = np.asarray(data)
    except (TypeError, ValueError) as e:
        raise BadRequest(f"input {name!r}: data must be a flat or evenly nested list: {e}") from e
    dtype = np.dtype(NUMPY_OF[datatype])
    if loose.size and not _fits(loose, dtype.kind):
        raise BadRequest(
            f"input {name!r}: data does not match datatype {datatype}: expected "
            f"{_FITS[dtype.kind]} values, got {loose.ravel()[:3].tolist()!r}"
        )
    try:
        with np.errstate(over="raise", invalid="raise"):
            return np.asarray(loose, dtype=dtype)
    except (TypeError, ValueError, OverflowError, FloatingPointError) as e:
        raise BadRequest(f"input {name!r}: data does not match datatype {datatype}: {e}") from e


def _fits(loose: np.ndarray[Any, Any], kind: str) -> bool:
    got: str = loose.dtype.kind
    if kind == "O":
        return got == "U" or (
            got == "O" and all(v is None or isinstance(v, str) for v in loose.flat)
        )
    if kind == "b":
        return got == "b"
    if kind in "iu":
        # Whole numbers written as 40.0 are still integers.
        return got in "iu" or (
            got == "f" and bool(np.isfinite(loose).all()) and bool((loose % 1 == 0).all())
        )
    # Floats: numbers, and JSON null as a missing value (NaN).
    return got in "iuf" or (
        got == "O"
        and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool))
            for v in loose.flat
        )
    )


def decode(body: Any, signature: dict[str, Any] | None) -> Batch:
    """A :class:`Batch` from a V2 request body (or a list of records or rows)."""
    expected = {i["name"]: i for i in (signature or {}).get("inputs", [])}
    if isinstance(body, list):
        return _batch(_records(body, expected), expected, None)
    if not isinstance(body, dict) or "inputs" not in body:
        raise BadRequest("body must be a V2 inference request with 'inputs', or a JSON list")
    inputs = body["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    for i, spec in enumerate(inputs):
        name, arr = _tensor(spec, i)
        if name in tensors:
            raise BadRequest(f"input {name!r} is given twice")
        tensors[name] = arr
    if expected:
        absent = [n for n in expected if n not in tensors]
        if absent:
            raise BadRequest(f"missing input(s) {absent}; the model expects {list(expected)}")
        unknown = [n for n in tensors if n not in expected]
        if unknown:
            raise BadRequest(f"unknown input(s) {unknown}; the model expects {list(expected)}")
    request_id = body.get("id")
    return _batch(tensors, expected, str(request_id) if request_id is not None else None)


def _batch(
    tensors: dict[str, np.ndarray[Any, Any]],
    expected: dict[str, dict[str, Any]],
    request_id: str | None,
) -> Batch:
    columns: dict[str, np.ndarray[Any, Any]] = {}
    rows: int | None = None
    for name, arr in tensors.items():
        want = expected.get(name)
        if want is not None:
            arr = _conform(name, arr, want)
        if arr.ndim == 2 and arr.shape[1] == 1 and (want is None or len(want["shape"]) == 1):
            arr = arr[:, 0]
        if arr.ndim == 0:
            raise BadRequest(f"input {name!r}: needs a batch dimension, got a scalar")
        if rows is not None and arr.shape[0] != rows:
            raise BadRequest(f"inputs have different batch sizes ({rows} and {arr.shape[0]})")
        rows = arr.shape[0]
        columns[name] = arr
    if not rows:
        raise BadRequest("the request holds no rows to predict")
    return Batch(columns, rows, request_id)


def _conform(name: str, arr: np.ndarray[Any, Any], want: dict[str, Any]) -> np.ndarray[Any, Any]:
    """Check a tensor against the signature; numbers become the signature's dtype, so the
    model sees what it was trained on and the payload log keeps one type per feature."""
    shape = want["shape"]
    if len(shape) > 1 and (arr.ndim != len(shape) or list(arr.shape[1:]) != shape[1:]):
        raise BadRequest(f"input {name!r}: expected shape {shape}, got {list(arr.shape)}")
    if len(shape) == 1 and arr.ndim > 1 and list(arr.shape[1:]) != [1]:
        raise BadRequest(
            f"input {name!r}: expected shape {shape} (or [n, 1]), got {list(arr.shape)}"
        )
    target = np.dtype(NUMPY_OF.get(want["datatype"], np.object_))
    actual_kind = arr.dtype.kind
    numeric = {"i", "u", "f"}
    if target.kind in numeric and actual_kind not in numeric | {"b"}:
        raise BadRequest(
            f"input {name!r}: expected datatype {want['datatype']}, got {v2_datatype(arr.dtype)}"
        )
    if target.kind == "O" and actual_kind != "O":
        raise BadRequest(f"input {name!r}: expected BYTES (strings), got {v2_datatype(arr.dtype)}")
    if target.kind in numeric and arr.dtype != target:
        with np.errstate(all="ignore"):
            converted = arr.astype(target)
        # Integers must survive exactly (31.0 -> 31 is fine, 31.5 is not); floats may
        # round to a narrower float.
        if target.kind in "iu" and not np.array_equal(converted, arr):
            raise BadRequest(
                f"input {name!r}: expected datatype {want['datatype']}, got "
                f"{v2_datatype(arr.dtype)} values that are not all {want['datatype']}"
            )
        arr = converted
    return arr


def _records(
    body: list[Any], expected: dict[str, dict[str, Any]]
) -> dict[str, np.ndarray[Any, Any]]:
    if not body:
        raise BadRequest("the list of records is empty")
    if all(isinstance(r, dict) for r in body):
        names = list(expected) or list(body[0])
        absent = [n for n in names if n not in body[0]]
        if absent:
            raise BadRequest(f"records lack field(s) {absent}; the model expects {names}")
        columns = {}
        for n in names:
            try:
                values = [r[n] for r in body]
            except KeyError as e:
                raise BadRequest(f"a record lacks field {e.args[0]!r}") from e
            datatype = expected[n]["datatype"] if n in expected else None
            if datatype in NUMPY_OF:
                columns[n] = _array(n, str(datatype), values)
            else:
                try:
                    columns[n] = np.asarray(values)
                except (TypeError, ValueError) as e:
                    raise BadRequest(f"field {n!r}: values of uneven shape: {e}") from e
        return columns
    if all(isinstance(r, list) for r in body):
        try:
            arr = np.asarray(body, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise BadRequest(f"rows must be lists of numbers of equal length: {e}") from e
        if arr.ndim != 2:
            raise BadRequest("rows must be lists of numbers of equal length")
        inputs = list(expected.values())
        # A DataFrame signature (one [-1] tensor per column) takes one value per column.
        if len(inputs) > 1 or (len(inputs) == 1 and len(inputs[0]["shape"]) == 1):
            if arr.shape[1] != len(inputs):
                raise BadRequest(
                    f"rows have {arr.shape[1]} values; the model expects {len(inputs)}"
                )
            return {i["name"]: arr[:, k] for k, i in enumerate(inputs)}
        name = inputs[0]["name"] if inputs else "input"
        return {name: arr}
    raise BadRequest("a JSON list body must hold records (objects) or rows (lists)")


def tensor(name: str, values: np.ndarray[Any, Any]) -> dict[str, Any]:
    """An output tensor in V2 form."""
    datatype = v2_datatype(values.dtype)
    flat = values.ravel()
    if datatype == "BYTES":
        data: list[Any] = [str(v) for v in flat]
    elif flat.dtype.kind == "f" and np.isnan(flat).any():
        # JSON has no NaN: a missing number is null.
        data = [None if v != v else v for v in flat.tolist()]
    else:
        data = flat.tolist()
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": data}
