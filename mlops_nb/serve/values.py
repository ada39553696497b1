"""Tensor values, strictly: JSON or binary data into numpy, checked against the datatype.

numpy alone converts silently (``-1`` as UINT8 is 255, ``200`` as INT8 is -56, ``"1.5"``
as FP64 is 1.5); here every conversion either keeps the values or is refused with the
input's name and the rule that was broken.

>>> from_json("x", "UINT8", [1], [-1])
Traceback (most recent call last):
...
mlops_nb.serve.values.BadRequest: input 'x': value -1 is out of range for UINT8 (0 to 255)
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import numpy as np

from ..errors import InvalidArgument
from ..signature import v2_datatype

NUMPY_OF = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}  # fmt: skip

# What JSON values fit each datatype kind; numpy would otherwise coerce silently
# ("1.5" -> 1.5 for FP64, 1.5 -> 1 for INT64, "x" -> True for BOOL).
_FITS = {"b": "boolean", "i": "integer", "u": "integer", "f": "numeric", "O": "string"}


class BadRequest(InvalidArgument):
    """The request does not fit the protocol or the model's signature (HTTP 400).

    ``withheld`` is the message without the request's own values, for where they must not
    go (a payload log that redacts features); the client is told the whole ``message``.

    >>> BadRequest("value 31 is too big", withheld="a value is too big").withheld
    'a value is too big'
    """

    status = 400

    def __init__(self, message: str, *, withheld: str | None = None) -> None:
        super().__init__(message)
        self.withheld = message if withheld is None else withheld


class TooLarge(BadRequest):
    """The request body is over the server's ``max_body_bytes`` (HTTP 413)."""

    status = 413


def _loose(name: str, data: Any) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(data)
    except (TypeError, ValueError, RecursionError) as e:
        raise BadRequest(
            f"input {name!r}: data must be a flat or evenly nested list: {e}",
            withheld=f"input {name!r}: data must be a flat or evenly nested list",
        ) from e


def from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray[Any, Any]:
    """JSON ``data`` (flat, or nested exactly as ``shape``) as an array of ``datatype``."""
    loose = _loose(name, data)
    if loose.ndim > 1 and list(loose.shape) != shape:
        raise BadRequest(
            f"input {name!r}: data is nested as {list(loose.shape)} but shape is {shape}; "
            "send it flat (row-major) or nested exactly as the shape"
        )
    dtype = np.dtype(NUMPY_OF[datatype])
    if loose.size and not _fits(loose, dtype.kind):
        rule = (
            f"input {name!r}: data does not match datatype {datatype}: expected "
            f"{_FITS[dtype.kind]} values"
        )
        raise BadRequest(f"{rule}, got {loose.ravel()[:3].tolist()!r}", withheld=rule)
    if loose.dtype.kind in "iuf" and bool in _kinds(data):
        raise BadRequest(
            f"input {name!r}: data mixes booleans (true/false) with numbers; datatype "
            f"{datatype} takes numbers only"
        )
    if dtype.kind in "iuf" and loose.size and loose.dtype.kind in "iuf":
        _in_range(name, loose, dtype, datatype)
    try:
        with np.errstate(over="raise", invalid="raise"):
            return np.asarray(loose, dtype=dtype)
    except (TypeError, ValueError, OverflowError, FloatingPointError) as e:
        raise BadRequest(
            f"input {name!r}: data does not match datatype {datatype}: {e}",
            withheld=f"input {name!r}: data does not match datatype {datatype}",
        ) from e


def _in_range(name: str, arr: np.ndarray[Any, Any], dtype: np.dtype[Any], datatype: str) -> None:
    """Refuse values that ``dtype`` cannot hold, instead of letting them wrap or overflow."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = arr.min(), arr.max()
        for v in (low, high):
            if v < info.min or v > info.max:
                shown = v.item() if hasattr(v, "item") else v
                rule = f"out of range for {datatype} ({info.min} to {info.max})"
                raise BadRequest(
                    f"input {name!r}: value {shown} is {rule}",
                    withheld=f"input {name!r}: a value is {rule}",
                )
    elif dtype.kind == "f" and arr.dtype.kind == "f":
        limit = float(np.finfo(dtype).max)
        finite = arr[np.isfinite(arr)]
        if finite.size and float(np.abs(finite).max()) > limit:
            rule = f"out of range for {datatype} (largest {limit:g})"
            raise BadRequest(
                f"input {name!r}: value {float(np.abs(finite).max())!r} is {rule}",
                withheld=f"input {name!r}: a value is {rule}",
            )


def _kinds(data: Any) -> set[type]:
    """The Python types of the values in evenly nested lists (numpy reads true as 1 and
    false as 0 among numbers, silently). One C-level pass per level of nesting."""
    level = data
    while isinstance(level, list):
        kinds = set(map(type, level))
        if kinds != {list}:
            return kinds
        level = list(itertools.chain.from_iterable(level))
    return {type(level)}


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


def from_binary(
    name: str, datatype: str, shape: list[int], size: Any, blob: memoryview, offset: int
) -> tuple[np.ndarray[Any, Any], int]:
    """``size`` bytes of the binary part at ``offset`` (the binary tensor extension)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer")
    end = offset + size
    if end > len(blob):
        raise BadRequest(
            f"input {name!r}: binary_data_size {size} runs past the end of the binary part "
            f"({len(blob) - offset} bytes left)"
        )
    raw = blob[offset:end]
    if datatype == "BYTES":
        items: list[Any] = []
        pos = 0
        while pos < size:
            if pos + 4 > size:
                raise BadRequest(f"input {name!r}: BYTES element cut short (4-byte length)")
            (n,) = struct.unpack_from("<I", raw, pos)
            if pos + 4 + n > size:
                raise BadRequest(f"input {name!r}: BYTES element of {n} bytes cut short")
            try:
                items.append(bytes(raw[pos + 4 : pos + 4 + n]).decode("utf-8"))
            except UnicodeDecodeError as e:
                raise BadRequest(f"input {name!r}: BYTES element is not UTF-8 text") from e
            pos += 4 + n
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr, end
    dtype = np.dtype(NUMPY_OF[datatype]).newbyteorder("<")
    if size % dtype.itemsize:
        raise BadRequest(f"input {name!r}: {size} bytes is not a whole number of {datatype} values")
    if datatype == "BOOL":
        flags = np.frombuffer(raw, dtype=np.uint8)
        if flags.size and flags.max() > 1:
            raise BadRequest(f"input {name!r}: BOOL bytes must be 0 or 1")
        return flags.astype(bool), end
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True), end


# Integers a float type holds exactly: beyond 2**digits, 2**digits + 1 rounds.
_EXACT_INT = {2: 2**11, 4: 2**24, 8: 2**53}


def conform(name: str, arr: np.ndarray[Any, Any], want: dict[str, Any]) -> np.ndarray[Any, Any]:
    """Check a tensor against the signature; numbers become the signature's dtype only when
    no value changes (beyond float rounding to a narrower float), so the model sees what it
    was trained on and the payload log keeps one type per feature."""
    shape = want["shape"]
    if len(shape) > 1 and (arr.ndim != len(shape) or list(arr.shape[1:]) != shape[1:]):
        raise BadRequest(f"input {name!r}: expected shape {shape}, got {list(arr.shape)}")
    if len(shape) == 1 and arr.ndim > 1 and list(arr.shape[1:]) != [1]:
        raise BadRequest(
            f"input {name!r}: expected shape {shape} (or [n, 1]), got {list(arr.shape)}"
        )
    datatype = want["datatype"]
    target = np.dtype(NUMPY_OF.get(datatype, np.object_))
    sent, kind = v2_datatype(arr.dtype), arr.dtype.kind
    if target.kind == "O":
        if kind != "O":
            raise BadRequest(f"input {name!r}: expected BYTES (strings), got {sent}")
        return arr
    if kind == "O" or (kind == "b") != (target.kind == "b"):
        raise BadRequest(f"input {name!r}: expected datatype {datatype}, got {sent}")
    if arr.dtype == target:
        return arr
    if target.kind == "f":
        if kind == "f" and arr.dtype.itemsize == 2:
            raise BadRequest(
                f"input {name!r}: expected datatype {datatype}, got FP16, which keeps about 3 "
                "significant digits: send FP32 or FP64"
            )
        if (
            kind in "iu"
            and arr.size
            and int(np.abs(arr.astype(np.float64)).max()) > _EXACT_INT[target.itemsize]
        ):
            raise BadRequest(
                f"input {name!r}: {sent} values above {_EXACT_INT[target.itemsize]} are not exact "
                f"in {datatype}"
            )
        if kind == "f":
            _in_range(name, arr, target, datatype)
        return arr.astype(target)
    # Integer targets: integers in range, or floats that are whole numbers in range.
    if (
        kind == "f"
        and arr.size
        and not (bool(np.isfinite(arr).all()) and bool((arr % 1 == 0).all()))
    ):
        raise BadRequest(
            f"input {name!r}: expected datatype {datatype}, got {sent} values that are not all "
            f"{datatype}"
        )
    if arr.size:
        _in_range(name, arr, target, datatype)
    return arr.astype(target)


def records(
    body: list[Any], expected: dict[str, dict[str, Any]]
) -> dict[str, np.ndarray[Any, Any]]:
    """Columns from a JSON list of records (objects) or rows (lists of numbers)."""
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
                column = [r[n] for r in body]
            except KeyError as e:
                raise BadRequest(f"a record lacks field {e.args[0]!r}") from e
            datatype = expected[n]["datatype"] if n in expected else None
            if datatype in NUMPY_OF:
                columns[n] = from_json(n, str(datatype), [len(column)], column)
            else:
                columns[n] = _loose(n, column)
        return columns
    if all(isinstance(r, list) for r in body):
        try:
            arr = np.asarray(body)
        except (TypeError, ValueError, RecursionError) as e:
            raise BadRequest(
                f"rows must be lists of numbers of equal length: {e}",
                withheld="rows must be lists of numbers of equal length",
            ) from e
        if arr.ndim != 2:
            raise BadRequest("rows must be lists of numbers of equal length")
        # Numbers, and null for a missing one (NaN), as in a tensor's data.
        kinds = _kinds(body)
        if bool in kinds or not _fits(arr, "f"):
            got = sorted(k.__name__ for k in kinds - {int, float, type(None)})
            raise BadRequest(
                f"rows must hold numbers (or null) only, got {', '.join(got)} values; send "
                "other types as records (objects) or as V2 tensors",
                withheld="rows must hold numbers (or null) only; send other types as records "
                "or tensors",
            )
        # Integers stay integers only for integer inputs: floats are the usual rows, and
        # conform() would hold an integer to an exactness a float value is not held to.
        targets = {
            np.dtype(NUMPY_OF.get(i["datatype"], np.object_)).kind for i in expected.values()
        }
        if arr.dtype.kind == "O" or not targets or not targets <= set("iu"):
            try:
                arr = arr.astype(np.float64)
            except OverflowError as e:
                raise BadRequest(
                    f"rows hold a number too large for FP64: {e}",
                    withheld="rows hold a number too large for FP64",
                ) from e
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
