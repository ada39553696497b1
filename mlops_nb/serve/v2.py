"""Open Inference Protocol (V2) request decoding, as KServe, MLServer and Triton clients send.

A request names input tensors with a shape, a datatype and data, flat (row-major) or
nested as the shape::

    {"inputs": [{"name": "age", "shape": [2], "datatype": "INT64", "data": [31, 40]},
                {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}

A model registered with a DataFrame example expects one tensor per column ("columns"
form), and accepts as well one 2-D tensor ``[n, k]`` of any name holding the k columns in
signature order ("tensor" form: KServe's and Triton's usual request; MLServer's
``parameters.content_type`` ``"np"`` says the same, ``"pd"`` says columns). A model
registered with an array example expects one tensor ``[n, k]``, of any name. A plain JSON
list of records (``[{"age": 31, ...}]``) or rows (``[[1.0, 2.0], ...]``) is accepted too.
Tensor data may also come in the binary tensor extension (see :mod:`.binary`).

Values are strict: a value outside its datatype's range (``-1`` as UINT8), a lossy
conversion to the signature's datatype (FP16 or BOOL for FP64, ``1.5`` for INT64), and
absurd shapes or nesting are refused with a :class:`BadRequest` naming the input and the
rule, so the model never predicts on silently changed values.

>>> batch = decode({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64",
...                             "data": [1, 2, 3, 4]}]}, None)
>>> batch.rows, batch.columns["x"].tolist()
(2, [[1.0, 2.0], [3.0, 4.0]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import values
from .values import NUMPY_OF, BadRequest

__all__ = ["NUMPY_OF", "BadRequest", "Batch", "decode", "input_form"]

MAX_DIMS = 8


@dataclass
class Batch:
    """Decoded input: named columns of equal length, or one 2-D tensor."""

    columns: dict[str, np.ndarray[Any, Any]]
    rows: int
    request_id: str | None = None
    # Output names the client asked for (None: the defaults), and those wanted in binary.
    outputs: list[str] | None = None
    binary_outputs: set[str] = field(default_factory=set)


def input_form(signature: dict[str, Any] | None) -> str:
    """``"columns"`` (one tensor per column), ``"tensor"`` (one [n, k]) or ``"any"``."""
    inputs = (signature or {}).get("inputs") or []
    if not inputs:
        return "any"
    return "tensor" if len(inputs) == 1 and len(inputs[0]["shape"]) > 1 else "columns"


def _tensor(spec: Any, index: int, blob: memoryview | None, offset: int) -> tuple[str, Any, int]:
    if not isinstance(spec, dict):
        raise BadRequest(f"inputs[{index}] must be an object with name, shape, datatype, data")
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest(f"inputs[{index}]: parameters must be an object")
    size = params.get("binary_data_size")
    wanted = (
        ("name", "shape", "datatype") if size is not None else ("name", "shape", "datatype", "data")
    )
    missing = [k for k in wanted if k not in spec]
    if missing:
        raise BadRequest(f"inputs[{index}] is missing {', '.join(missing)}")
    name, shape, datatype = spec["name"], spec["shape"], spec["datatype"]
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
    if len(shape) > MAX_DIMS:
        raise BadRequest(f"input {name!r}: shape {shape} has more than {MAX_DIMS} dimensions")
    content = params.get("content_type")
    if content not in (None, "np", "str", "pd"):
        raise BadRequest(
            f"input {name!r}: content_type {content!r} is not supported; use 'np' or 'str'"
        )
    # Python integers: a shape like [2**62, 2**62] must not overflow into a wrong count.
    expected = math.prod(shape)
    if size is not None:
        if blob is None:
            raise BadRequest(
                f"input {name!r}: binary_data_size given but the request has no binary part; "
                "send the Inference-Header-Content-Length header"
            )
        arr, offset = values.from_binary(name, datatype, shape, size, blob, offset)
    else:
        arr = values.from_json(name, datatype, shape, spec["data"])
    if arr.size != expected:
        raise BadRequest(f"input {name!r}: shape {shape} needs {expected} values, got {arr.size}")
    return name, arr.reshape(shape), offset


def _outputs(body: dict[str, Any]) -> tuple[list[str] | None, set[str]]:
    params = body.get("parameters") or {}
    binary_all = isinstance(params, dict) and params.get("binary_data_output") is True
    requested = body.get("outputs")
    if requested is None:
        return None, {"*"} if binary_all else set()
    if not isinstance(requested, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in requested]
    for o in requested:
        if not isinstance(o.get("parameters") or {}, dict):
            raise BadRequest(f"output {o['name']!r}: parameters must be an object, "
                             f"got {o['parameters']!r}")  # fmt: skip
    binary = {
        o["name"]
        for o in requested
        if binary_all or (o.get("parameters") or {}).get("binary_data") is True
    }
    return names, binary


def decode(body: Any, signature: dict[str, Any] | None, blob: bytes | None = None) -> Batch:
    """A :class:`Batch` from a V2 request body (or a list of records or rows).

    ``blob`` is the binary part of a request sent with the binary tensor extension.
    """
    expected = {i["name"]: i for i in (signature or {}).get("inputs", [])}
    if isinstance(body, list):
        return _batch(values.records(body, expected), expected, None)
    if not isinstance(body, dict) or "inputs" not in body:
        raise BadRequest("body must be a V2 inference request with 'inputs', or a JSON list")
    inputs = body["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    content = params.get("content_type")
    if content not in (None, "np", "pd"):
        raise BadRequest(
            f"content_type {content!r} is not supported; use 'np' (one tensor) or 'pd' "
            "(one tensor per column)"
        )
    view = memoryview(blob) if blob is not None else None
    offset = 0
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    for i, spec in enumerate(inputs):
        name, arr, offset = _tensor(spec, i, view, offset)
        if name in tensors:
            raise BadRequest(f"input {name!r} is given twice")
        tensors[name] = arr
    if view is not None and offset != len(view):
        raise BadRequest(
            f"the binary part holds {len(view)} bytes but the inputs' binary_data_size "
            f"add up to {offset}"
        )
    tensors = _arrange(tensors, expected, content)
    request_id = body.get("id")
    outputs, binary = _outputs(body)
    batch = _batch(tensors, expected, str(request_id) if request_id is not None else None)
    batch.outputs, batch.binary_outputs = outputs, binary
    return batch


def _arrange(
    tensors: dict[str, np.ndarray[Any, Any]], expected: dict[str, dict[str, Any]], content: Any
) -> dict[str, np.ndarray[Any, Any]]:
    """Tensors in the form the signature expects, whichever form the client sent."""
    form = input_form({"inputs": list(expected.values())})
    if form == "any":
        return tensors
    if form == "tensor":
        if len(tensors) != 1:
            raise BadRequest(
                f"the model expects one tensor of shape {next(iter(expected.values()))['shape']}"
                f", got {len(tensors)} inputs {list(tensors)}"
            )
        # Clients name the tensor as they like ("input-0", "INPUT0"): any name will do.
        return {next(iter(expected)): next(iter(tensors.values()))}
    ((sent, arr),) = tensors.items() if len(tensors) == 1 else ((None, None),)
    if (
        sent is not None
        and arr is not None
        and content != "pd"
        and (content == "np" or sent not in expected)
    ):
        k = len(expected)
        if arr.ndim != 2 or arr.shape[1] != k:
            raise BadRequest(
                f"input {sent!r}: one tensor must have shape [n, {k}] (the model's {k} inputs "
                f"{list(expected)} in that order), got {list(arr.shape)}"
            )
        return {n: arr[:, j] for j, n in enumerate(expected)}
    absent = [n for n in expected if n not in tensors]
    if absent:
        raise BadRequest(
            f"missing input(s) {absent}; the model expects {list(expected)}, or one tensor "
            f"of shape [n, {len(expected)}] holding them in that order"
        )
    unknown = [n for n in tensors if n not in expected]
    if unknown:
        raise BadRequest(f"unknown input(s) {unknown}; the model expects {list(expected)}")
    return tensors


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
            arr = values.conform(name, arr, want)
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


def check_outputs(batch: Batch, available: list[str]) -> list[str]:
    """The outputs to answer: those asked for, each one the model can give."""
    if batch.outputs is None:
        return [n for n in available if n != "probabilities"]
    unknown = [n for n in batch.outputs if n not in available]
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; this model answers {available}")
    return batch.outputs
