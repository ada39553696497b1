"""V2 responses, in JSON or in the binary tensor data extension that Triton clients use.

With the extension, a body is a JSON header followed by raw tensor bytes; the
``Inference-Header-Content-Length`` header gives the JSON part's length. An input with
``parameters.binary_data_size`` takes its bytes from the binary part, in input order
(see :func:`mlops_nb.serve.values.from_binary`); an output is answered in binary when the
request asks (``outputs[i].parameters.binary_data`` or the request's
``parameters.binary_data_output``), with its size in ``parameters.binary_data_size``.
BYTES elements are each a 4-byte little-endian length and the UTF-8 bytes.

>>> body, header = encode({"outputs": []}, [("p", np.array([1.5]))], {"p"})
>>> header, body[header:]
(101, b'\\x00\\x00\\x00\\x00\\x00\\x00\\xf8?')
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from ..signature import v2_datatype
from .records import PredictionIds
from .values import BadRequest

HEADER = "inference-header-content-length"


def split(raw: bytes, header_length: str | None) -> tuple[bytes, bytes | None]:
    """(JSON part, binary part or None) of a request body."""
    if header_length is None:
        return raw, None
    if not header_length.isdigit() or int(header_length) > len(raw):
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length!r} must be a byte count within "
            f"the body of {len(raw)} bytes"
        )
    n = int(header_length)
    return raw[:n], raw[n:]


def _bytes_of(values: np.ndarray[Any, Any]) -> bytes:
    if values.dtype.kind in "OUS":
        parts = []
        for v in values.ravel():
            item = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(struct.pack("<I", len(item)) + item)
        return b"".join(parts)
    if values.dtype.kind == "b":
        return values.astype(np.uint8).tobytes()
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()


def tensor(name: str, values: np.ndarray[Any, Any]) -> dict[str, Any]:
    """An output tensor in V2 JSON form."""
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


def _listed(value: object) -> list[str]:
    """What JSON makes of a large batch's ids (the rest it knows)."""
    if isinstance(value, PredictionIds):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(
    payload: dict[str, Any], outputs: list[tuple[str, np.ndarray[Any, Any]]], binary: set[str]
) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    blobs: list[bytes] = []
    tensors = []
    for name, values in outputs:
        if "*" in binary or name in binary:
            raw = _bytes_of(values)
            blobs.append(raw)
            tensors.append({
                "name": name, "shape": list(values.shape), "datatype": v2_datatype(values.dtype),
                "parameters": {"binary_data_size": len(raw)},
            })  # fmt: skip
        else:
            tensors.append(tensor(name, values))
    payload["outputs"] = tensors
    header = json.dumps(payload, default=_listed).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
