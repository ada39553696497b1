"""Turning what users pass to ``log()`` and ``log_labels()`` into typed Arrow columns.

Every value of one column must have one type: ``[1, "a"]`` is refused, never stored as
text, because a later reader could not tell the number 1 from the string "1".

>>> to_arrow([1, 2], "y_pred").type
DataType(int64)
>>> to_arrow([1, "a"], "y_pred")
Traceback (most recent call last):
...
mlops_nb.errors.InvalidArgument: y_pred holds values of mixed or unsupported types (Could not convert 'a' with type str: tried to convert to int64); give one type of number, boolean or string, e.g. [str(v) for v in values]
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import InvalidArgument

FEATURE_PREFIX = "feature."
_OK_TYPES = (pa.types.is_boolean, pa.types.is_integer, pa.types.is_floating, pa.types.is_string,
             pa.types.is_large_string)  # fmt: skip
_MIXED = (
    "holds values of mixed or unsupported types ({}); give one type of number, boolean or "
    "string, e.g. [str(v) for v in values]"
)


def _column_ok(dtype: pa.DataType) -> bool:
    return any(check(dtype) for check in _OK_TYPES)


def _from_python(values: Any, what: str) -> pa.Array | None:
    """Arrow's own inference on Python sequences: it refuses mixed types, numpy does not."""
    if isinstance(values, pd.Series):
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
            return None
    elif not isinstance(values, list | tuple):
        return None
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InvalidArgument(f"{what} {_MIXED.format(e)}") from e
    return None if pa.types.is_list(arr.type) else arr


def to_arrow(values: Any, what: str) -> pa.Array:
    """One column as an Arrow array of a supported type, or a clear error."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    arr = values if isinstance(values, pa.Array) else _from_python(values, what)
    if arr is None:
        np_values = np.asarray(values)
        if np_values.ndim == 2 and np_values.shape[1] == 1:
            np_values = np_values[:, 0]
        if np_values.ndim != 1:
            raise InvalidArgument(f"{what} must be one-dimensional, got shape {np_values.shape}")
        try:
            arr = pa.array(np_values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InvalidArgument(f"{what} {_MIXED.format(e)}") from e
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_large_string(arr.type):
        # pandas 3 strings arrive as large_string; the spool format says string.
        arr = arr.cast(pa.string())
    if pa.types.is_null(arr.type):
        raise InvalidArgument(f"{what} holds only missing values; its type cannot be known")
    if not _column_ok(arr.type):
        raise InvalidArgument(f"{what} has type {arr.type}; use numbers, booleans or strings")
    return arr


def features(X: Any, names: list[str] | None) -> pa.Table:
    """``feature.<name>`` columns from a DataFrame, a 2-D array or an Arrow table."""
    if isinstance(X, pa.Table):
        source = dict(zip([str(n) for n in X.column_names], X.columns, strict=True))
        given = [str(n) for n in X.column_names]
    elif isinstance(X, pd.DataFrame):
        given = [str(n) for n in X.columns]
        _unique(given)
        source = _frame_columns(X, given)
    else:
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise InvalidArgument(f"X must be tabular (2-D), got shape {arr.shape}")
        given = (
            names
            if names and len(names) == arr.shape[1]
            else [f"x{i}" for i in range(arr.shape[1])]
        )
        source = {c: arr[:, i] for i, c in enumerate(given)}
    _unique(given)
    columns = {FEATURE_PREFIX + n: to_arrow(source[n], f"feature {n!r}") for n in given}
    return pa.table(columns) if columns else pa.table({})


def _frame_columns(X: pd.DataFrame, given: list[str]) -> dict[str, Any]:
    """A frame's columns by name; a frame of one numeric dtype held in one block is read
    as that block's rows, each already contiguous, with no Series per column."""
    kinds = set(X.dtypes)
    one = next(iter(kinds)) if len(kinds) == 1 else None
    if isinstance(one, np.dtype) and one.kind in "biuf":
        rows = X.to_numpy().T
        if rows.flags.c_contiguous:  # a view of the block, not a copy
            return dict(zip(given, rows, strict=True))
    return {n: X.iloc[:, i] for i, n in enumerate(given)}


def _unique(names: list[str]) -> None:
    seen: set[str] = set()
    dupes = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dupes:
        raise InvalidArgument(
            f"X has duplicate column names {dupes}; rename them (e.g. X.columns = [...]) so "
            "each feature has one column"
        )


def label_text(labels: pa.Array) -> pa.Array:
    """Labels as text for the ``labels`` table; whole floats read as integers ("1", not "1.0")."""
    if pa.types.is_floating(labels.type):
        values = labels.to_numpy(zero_copy_only=False)
        if np.all(np.mod(values, 1) == 0):
            return pa.array(values.astype(np.int64)).cast(pa.string())
    return labels.cast(pa.string())


def timestamps(values: Any, n: int, now: Any) -> pa.Array:
    utc = pa.timestamp("us", tz="UTC")
    if values is None:
        stamp = np.datetime64(pd.Timestamp(now).tz_convert("UTC").tz_localize(None), "us")
        # Microseconds as the array's own buffer: converting datetime64 values one by one
        # through pa.array costs more than filling them.
        micros = np.full(n, stamp.astype(np.int64))
        return pa.Array.from_buffers(utc, n, [None, pa.py_buffer(micros)])
    try:
        with warnings.catch_warnings():
            # pandas warns when it falls back to per-element parsing; a bad value still
            # raises below, which is what the caller needs to see.
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(pd.Series(values), utc=True)
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidArgument(f"cannot read timestamps: {e}") from e
    if len(parsed) != n:
        raise InvalidArgument(f"timestamps has {len(parsed)} values but y_pred has {n}")
    if parsed.isna().any():
        raise InvalidArgument("timestamps must not contain missing values")
    return pa.array(parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[us]"), type=utc)


def numbers(values: Any, n: int, what: str, *, low: float, high: float | None) -> pa.Array:
    if values is None:
        return pa.nulls(n, pa.float64())
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"{what} must be numbers: {e}") from e
    if arr.ndim != 1 or len(arr) != n:
        raise InvalidArgument(
            f"{what} must have one value per prediction ({n}), got shape {arr.shape}"
        )
    missing = np.isnan(arr)
    has_missing = bool(missing.any())
    given = arr[~missing] if has_missing else arr
    if given.size and not (
        np.isfinite(lo := given.min())
        and np.isfinite(hi := given.max())
        and lo >= low
        and (high is None or hi <= high)
    ):
        bounds = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise InvalidArgument(
            f"{what} values must be finite and within {bounds} (NaN marks missing)"
        )
    return pa.array(arr, mask=missing) if has_missing else pa.array(arr)
