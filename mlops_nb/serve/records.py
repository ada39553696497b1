"""Payload chunks into one Arrow table whose types follow the signature, losing no row.

Requests are mostly a row or a few: per-chunk numpy calls would cost more than the rows
themselves, so each column is gathered into one list and converted by Arrow in a single
call. Per-request scalars (timestamp, latency, error) are broadcast here, off the request
path. NaN becomes null (a missing confidence is missing, not a number).

A value that does not fit its column's type (a string where numbers came before, for a
model without a signature) is logged as null in its column and kept as text in the row's
``misfit`` column (JSON: column -> value), so it never costs other rows their log.

>>> t = table_of([{"id": ["a", "b"], "timestamp": 0, "feature.x": [1, "two"]}], {}, None)
>>> t.column("feature.x").to_pylist(), t.column("misfit").to_pylist()
([1, None], [None, '{"feature.x": "two"}'])
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
import pyarrow as pa

from .redact import Redactor
from .values import NUMPY_OF

MISFIT = "misfit"
# A chunk's 2-D input, before it is split into one column per feature.
TENSOR = "feature.*"

# The spool format's own columns keep their types even in a flush where all are missing.
_FIXED_TYPES = {
    "id": pa.string(),
    "confidence": pa.float64(),
    "latency_ms": pa.float64(),
    "error": pa.string(),
    MISFIT: pa.string(),
}


class PredictionIds(Sequence[str]):
    """The ids ``base-0`` .. ``base-{n-1}`` of a batch's rows, each made when read: a large
    batch's ids are then not built (or copied) on the event loop.

    >>> ids = PredictionIds("a1", 3)
    >>> ids, len(ids), ids[2], list(ids)
    (PredictionIds('a1', 3), 3, 'a1-2', ['a1-0', 'a1-1', 'a1-2'])
    """

    __slots__ = ("base", "n")

    def __init__(self, base: str, n: int) -> None:
        self.base, self.n = base, n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [f"{self.base}-{k}" for k in range(self.n)[i]]
        k = range(self.n)[i]  # IndexError past the end, negative from it
        return f"{self.base}-{k}"

    def __iter__(self) -> Iterator[str]:
        base = self.base
        return (f"{base}-{k}" for k in range(self.n))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PredictionIds):
            return (self.base, self.n) == (other.base, other.n)
        return isinstance(other, list) and list(self) == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PredictionIds({self.base!r}, {self.n})"


def chunk_of(
    ids: Sequence[str], columns: dict[str, np.ndarray[Any, Any]], outcome: Any, latency_ms: float,
    error: str | None,
) -> dict[str, Any]:  # fmt: skip
    """One request's rows for the payload log; ``outcome`` is None when it failed."""
    rows = len(ids)
    prediction: np.ndarray[Any, Any] | None = None
    confidence: np.ndarray[Any, Any] | float = np.nan
    if outcome is not None:
        prediction = outcome.prediction
        if prediction is not None and prediction.ndim > 1:
            prediction = prediction.reshape(rows, -1)[:, 0]
        if outcome.confidence is not None:
            confidence = outcome.confidence
    chunk: dict[str, Any] = {
        "id": ids,
        "timestamp": time.time_ns() // 1000,  # microseconds since the epoch, UTC
        "prediction": prediction,
        "confidence": confidence,
        "latency_ms": latency_ms,
    }
    if error is not None:
        chunk["error"] = error
    for name, values in columns.items():
        if values.ndim == 2:
            # One 2-D tensor, kept whole: table_of makes one column per feature of it,
            # x0..x{k-1}, in the signature's order.
            chunk[TENSOR] = values
        else:
            chunk[f"feature.{name}"] = values
    return chunk


def log_types(signature: dict[str, Any] | None) -> dict[str, pa.DataType]:
    """Arrow types of the spool columns the signature fixes: prediction and features."""
    sig = signature or {}
    types: dict[str, pa.DataType] = {}

    def arrow(datatype: str) -> pa.DataType:
        dtype = np.dtype(NUMPY_OF.get(datatype, np.object_))
        return pa.string() if dtype == np.object_ else pa.from_numpy_dtype(dtype)

    outputs = sig.get("outputs") or []
    if outputs:
        types["prediction"] = arrow(outputs[0]["datatype"])
    inputs = sig.get("inputs") or []
    if len(inputs) == 1 and len(inputs[0]["shape"]) == 2 and inputs[0]["shape"][1] > 0:
        for k in range(inputs[0]["shape"][1]):
            types[f"feature.x{k}"] = arrow(inputs[0]["datatype"])
    elif all(len(i["shape"]) == 1 for i in inputs):
        for i in inputs:
            types[f"feature.{i['name']}"] = arrow(i["datatype"])
    return types


def log_features(signature: dict[str, Any] | None) -> list[str] | None:
    """The feature names a signature's payload log has (None when it does not say).

    >>> log_features({"inputs": [{"name": "x", "shape": [-1, 2], "datatype": "FP64"}]})
    ['x0', 'x1']
    """
    if not (signature or {}).get("inputs"):
        return None
    names = [c[len("feature.") :] for c in log_types(signature) if c.startswith("feature.")]
    return names or None


def _type_of(values: list[Any]) -> pa.DataType:
    """The type a column takes from the first value that came: what came before rules."""
    for v in values:
        if v is None or (isinstance(v, float) and v != v):
            continue
        if isinstance(v, bool | np.bool_):
            return pa.bool_()
        if isinstance(v, int | np.integer):
            return pa.int64()
        if isinstance(v, float | np.floating):
            return pa.float64()
        return pa.string()
    return pa.string()


def _fits(v: Any, dtype: pa.DataType) -> bool:
    if pa.types.is_boolean(dtype):
        return isinstance(v, bool | np.bool_)
    if pa.types.is_integer(dtype):
        whole = isinstance(v, float) and v.is_integer()
        return (isinstance(v, int | np.integer) and not isinstance(v, bool)) or whole
    if pa.types.is_floating(dtype):
        return isinstance(v, int | float | np.number) and not isinstance(v, bool)
    return isinstance(v, str)


def _text(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


def _column(
    name: str,
    values: list[Any] | np.ndarray[Any, Any],
    want: pa.DataType | None,
    misfits: list[dict[str, Any] | None],
    redacted: bool,
) -> pa.Array:
    try:
        arr = pa.array(values, from_pandas=True)
        if pa.types.is_null(arr.type):
            return arr.cast(want or pa.string())
        return arr.cast(want) if want is not None and arr.type != want else arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError,
            ValueError, OverflowError):  # fmt: skip
        pass
    # The slow path, value by value, only for a column with a value that does not fit.
    flat = values.tolist() if isinstance(values, np.ndarray) else values
    target = want or _type_of(flat)
    kept: list[Any] = []
    for i, v in enumerate(flat):
        if v is None or (isinstance(v, float) and v != v) or _fits(v, target):
            kept.append(v)
            continue
        kept.append(None)
        row = misfits[i] or {}
        row[name] = "<redacted>" if redacted else _text(v)
        misfits[i] = row
    try:
        return pa.array(kept, type=target, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        # Out of range for the type (an int beyond int64): as text, nothing lost.
        for i, v in enumerate(kept):
            if v is not None:
                row = misfits[i] or {}
                row[name] = "<redacted>" if redacted else _text(v)
                misfits[i] = row
        return pa.nulls(len(kept), type=target)


def table_of(
    chunks: list[dict[str, Any]], types: dict[str, pa.DataType], redactor: Redactor | None
) -> pa.Table:
    """One Arrow table from many small chunks (see the module docstring)."""
    chunks, blocks = _split_tensors(chunks)
    names: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for chunk in chunks:
        keys = tuple(chunk)  # mostly the same few: look at each set of keys once
        if keys not in seen:
            seen.add(keys)
            names.extend(n for n in keys if n not in names and n != TENSOR)
    names.extend(blocks)
    counts = [len(chunk["id"]) for chunk in chunks]
    misfits: list[dict[str, Any] | None] = [None] * sum(counts)
    columns = {}
    for name in names:
        if name == "timestamp":
            flat = _gather(name, chunks, counts)
            columns[name] = pa.array(flat, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
            continue
        want = types.get(name, _FIXED_TYPES.get(name))
        redacted = redactor is not None and redactor.covers(name)
        values = blocks[name] if name in blocks else _gather(name, chunks, counts)
        columns[name] = _column(name, values, want, misfits, redacted)
    if any(m is not None for m in misfits):
        columns[MISFIT] = pa.array(
            [None if m is None else json.dumps(m, sort_keys=True) for m in misfits],
            type=pa.string(),
        )
    table = pa.table(columns)
    return redactor.apply(table) if redactor else table


def _split_tensors(
    chunks: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray[Any, Any]]]:
    """The chunks' 2-D inputs as one column per feature. When every chunk has one of the
    same width and numeric type (the usual case), they are joined into one block and
    returned as whole columns (``TENSOR`` keys are then skipped); else each chunk gets
    feature columns of its own."""
    tensors = [c.get(TENSOR) for c in chunks]
    if all(t is None for t in tensors):
        return chunks, {}
    first = tensors[0]
    if (
        first is not None
        and first.dtype.kind in "biuf"
        and all(
            t is not None and t.dtype == first.dtype and t.shape[1] == first.shape[1]
            for t in tensors
        )
    ):
        block: np.ndarray[Any, Any] = np.concatenate([t for t in tensors if t is not None])
        return chunks, {f"feature.x{k}": block[:, k] for k in range(block.shape[1])}
    out = []
    for chunk, values in zip(chunks, tensors, strict=True):
        if values is not None:
            chunk = {k: v for k, v in chunk.items() if k != TENSOR}
            for k in range(values.shape[1]):
                chunk[f"feature.x{k}"] = values[:, k]
        out.append(chunk)
    return out, {}


def _gather(name: str, chunks: list[dict[str, Any]], counts: list[int]) -> list[Any]:
    """One column's values over all chunks, as one list (missing ones as None)."""
    flat: list[Any] = []
    for chunk, n in zip(chunks, counts, strict=True):
        value = chunk.get(name)
        if isinstance(value, list | PredictionIds):
            flat.extend(value)
        elif isinstance(value, np.ndarray):
            flat.extend(value.tolist())
        else:
            flat.extend([value] * n)
    return flat
