"""Per-column drift statistics: on the raw values (exact) or on streamed summaries.

Both paths give one row per column, ``(name, kind, result without verdict, n_ref, n_cur)``,
and the missing-value shares; :mod:`.drift` decides verdicts from them the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidArgument
from ..progress import Bar, progress
from . import stats, stream
from .stats import StatResult

if TYPE_CHECKING:
    from .drift import Side

NUMERIC_METHODS = {"ks", "wasserstein_norm", "psi", "jensen_shannon"}
CATEGORICAL_METHODS = {"chi2", "psi", "jensen_shannon"}
OUTPUTS = ("prediction", "confidence")
MISSING_CHANGE = 0.05
BATCH_COLUMNS = 6


def kind_of(dtype: pa.DataType, name: str) -> str:
    if pa.types.is_floating(dtype):
        return "numeric"
    # Integer predictions are class labels; integer features are counts and measures.
    if pa.types.is_integer(dtype) and name != "prediction":
        return "numeric"
    return "categorical"


def _numbers(col: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.float64]]:
    arr = col.cast(pa.float64()).to_numpy()
    result: np.ndarray[Any, np.dtype[np.float64]] = arr[np.isfinite(arr)]
    return result


def _categories(col: pa.ChunkedArray) -> dict[str, float]:
    counts = pc.value_counts(col.cast(pa.string()).drop_null())
    return dict(
        zip(
            counts.field("values").to_pylist(),
            counts.field("counts").to_numpy().astype(float),
            strict=True,
        )
    )


def _unmatched(
    name: str, ref: pa.DataType | None, cur: pa.DataType | None, n_ref: int, n_cur: int
) -> tuple[str, StatResult, int, int] | None:
    """The row of a column missing on one side or of another kind on each; else None."""
    if ref is None or cur is None:
        where = "reference" if ref is None else "current"
        kind = kind_of(cur if ref is None else ref, name)
        return kind, StatResult("none", None, note=f"absent from the {where} data"), 0, 0
    if kind_of(ref, name) != kind_of(cur, name):
        note = f"type changed: {ref} in reference, {cur} in current"
        return kind_of(cur, name), StatResult("schema", None, drifted=True, note=note), n_ref, n_cur
    return None


def _compare(
    name: str, ref: pa.ChunkedArray | None, cur: pa.ChunkedArray | None, method: str | None,
    min_samples: int,
) -> tuple[str, StatResult, int, int]:  # fmt: skip
    """(kind, result without verdict, n_ref, n_cur) for one column."""
    early = _unmatched(
        name, None if ref is None else ref.type, None if cur is None else cur.type,
        len(ref) if ref is not None else 0, len(cur) if cur is not None else 0,
    )  # fmt: skip
    if early is not None:
        return early
    assert ref is not None and cur is not None
    kind = _check_method(name, kind_of(ref.type, name), method)
    if kind == "numeric":
        a, b = _numbers(ref), _numbers(cur)
        n_ref, n_cur = a.size, b.size
        if min(n_ref, n_cur) < min_samples:
            return kind, _insufficient(method or "ks", n_ref, n_cur, min_samples), n_ref, n_cur
        chosen = stats.choose_method("numeric", n_ref, n_cur)
        method = method or chosen.method
        if method == "wasserstein_norm":
            result = stats.normalized_wasserstein_large(a, b)
        else:
            a.sort()
            b.sort()
            result = _numeric(method, a, b)
        threshold = chosen.threshold if method == chosen.method else _default_threshold(method)
        return kind, replace(result, threshold=threshold), n_ref, n_cur
    ref_counts, cur_counts = _categories(ref), _categories(cur)
    cats = sorted(set(ref_counts) | set(cur_counts))
    r = np.array([ref_counts.get(k, 0.0) for k in cats])
    c = np.array([cur_counts.get(k, 0.0) for k in cats])
    return (kind, *_categorical(r, c, method, min_samples))


def _check_method(name: str, kind: str, method: str | None) -> str:
    """The kind the column is compared as, after checking an override fits it."""
    if method is None:
        return kind
    allowed = NUMERIC_METHODS | CATEGORICAL_METHODS if kind == "numeric" else CATEGORICAL_METHODS
    if method not in allowed:
        raise InvalidArgument(
            f"method {method!r} does not fit {kind} feature {name!r}; use one of "
            f"{', '.join(sorted(allowed))}"
        )
    return "categorical" if method == "chi2" else kind


def _categorical(
    r: np.ndarray[Any, Any], c: np.ndarray[Any, Any], method: str | None, min_samples: int
) -> tuple[StatResult, int, int]:
    n_ref, n_cur = int(r.sum()), int(c.sum())
    if min(n_ref, n_cur) < min_samples:
        return _insufficient(method or "chi2", n_ref, n_cur, min_samples), n_ref, n_cur
    chosen = stats.choose_method("categorical", n_ref, n_cur)
    method = method or chosen.method
    fn = {
        "chi2": stats.chi2_from_counts,
        "psi": stats.psi_from_counts,
        "jensen_shannon": stats.jensen_shannon_from_counts,
    }[method]
    threshold = chosen.threshold if method == chosen.method else _default_threshold(method)
    return replace(fn(r, c), threshold=threshold), n_ref, n_cur


def _default_threshold(method: str) -> float:
    return (
        stats.DEFAULT_ALPHA if method in stats.P_VALUE_METHODS else stats.DEFAULT_THRESHOLDS[method]
    )


def _insufficient(method: str, n_ref: int, n_cur: int, min_samples: int) -> StatResult:
    return StatResult(
        method, None, note=f"insufficient data: {min(n_ref, n_cur)} values, need {min_samples}"
    )


def _numeric(method: str, a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> StatResult:
    """One statistic for two sorted numeric samples."""
    if method == "wasserstein_norm":
        return stats.normalized_wasserstein_sorted(a, b)
    if method == "ks":
        return stats.ks_from_counts(*stats.merge_sorted(a, b))
    edges = stats.quantile_edges(a)
    ref_bins, cur_bins = stats.bin_counts(a, edges), stats.bin_counts(b, edges)
    if method == "psi":
        return stats.psi_from_counts(ref_bins, cur_bins)
    return stats.jensen_shannon_from_counts(ref_bins, cur_bins)


Row = tuple[str, str, StatResult, int, int]


def exact(
    ref: Side, cur: Side, all_names: list[str], methods: dict[str, str], min_samples: int
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Statistics on the raw values, a few columns in memory at a time."""
    rows: list[Row] = []
    missing: list[dict[str, Any]] = []
    batches = [all_names[i : i + BATCH_COLUMNS] for i in range(0, len(all_names), BATCH_COLUMNS)]

    def load(batch: list[str]) -> tuple[pa.Table, pa.Table]:
        return ref.fetch(batch), cur.fetch(batch)

    def compared() -> Iterator[tuple[Row, dict[str, Any]]]:
        # numpy sorts release the GIL: two threads keep both cores of a small machine busy,
        # while a third reads the next batch of columns out of DuckDB.
        with ThreadPoolExecutor(max_workers=2) as pool, ThreadPoolExecutor(max_workers=1) as io:
            pending = io.submit(load, batches[0]) if batches else None
            for index, batch in enumerate(batches):
                assert pending is not None
                ref_t, cur_t = pending.result()
                more = index + 1 < len(batches)
                pending = io.submit(load, batches[index + 1]) if more else None

                def one(name: str, ref_t: pa.Table = ref_t, cur_t: pa.Table = cur_t) -> Any:
                    r = ref_t.column(name) if name in ref_t.column_names else None
                    c = cur_t.column(name) if name in cur_t.column_names else None
                    found = _compare(name, r, c, methods.get(name), min_samples)
                    return (name, *found), _missing_row(name, r, c)

                yield from pool.map(one, batch)
                del ref_t, cur_t

    for row, miss in progress(compared(), total=len(all_names), desc="drift", unit="column"):
        rows.append(row)
        if row[0] not in OUTPUTS:
            missing.append(miss)
    return rows, missing


def streamed(
    ref: Side, cur: Side, all_names: list[str], methods: dict[str, str], min_samples: int
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Statistics from per-column summaries of one pass per side (see :mod:`.stream`)."""

    def numeric(name: str, dtype: pa.DataType) -> bool:
        return kind_of(dtype, name) == "numeric" and methods.get(name) != "chi2"

    # Two passes over the reference (ranges, then histograms) and one over the current side.
    bar = _RowsBar(2 * ref.num_rows + cur.num_rows)
    try:
        first = stream.summarize(bar.counted(ref.scan(all_names)), all_names, numeric, None)
        ref_sum = stream.summarize(bar.counted(ref.scan(all_names)), all_names, numeric, first)
        constant = any(c.numeric and c.n and c.low == c.high for c in first.values())
        cur_sum = stream.summarize(
            bar.counted(cur.scan(all_names)), all_names, numeric, first, moments=constant
        )
    finally:
        bar.close()
    rows: list[Row] = []
    missing: list[dict[str, Any]] = []
    for name in all_names:
        r, c = ref_sum.get(name), cur_sum.get(name)
        rows.append((name, *_compare_summaries(name, r, c, methods.get(name), min_samples)))
        if name not in OUTPUTS:
            a = r.missing / r.total if r is not None and r.total else None
            b = c.missing / c.total if c is not None and c.total else None
            change = None if a is None or b is None else b - a
            missing.append({
                "feature": name, "missing_ref": a, "missing_cur": b, "change": change,
                "flagged": change is not None and abs(change) >= MISSING_CHANGE,
            })  # fmt: skip
    return rows, missing


class _RowsBar:
    """A bar of the rows that the streaming passes have read."""

    def __init__(self, total: int) -> None:
        self._bar = Bar(total=total, desc="drift (streamed)", unit="rows")
        self._read = 0

    def counted(self, scan: stream.Scan) -> stream.Scan:
        def counting(consume: stream.Consumer) -> None:
            def one(batch: pa.RecordBatch) -> None:
                consume(batch)
                self._read += batch.num_rows
                self._bar.move(self._read)

            scan(one)

        return counting

    def close(self) -> None:
        self._bar.close()


def _compare_summaries(
    name: str, ref: stream.Column | None, cur: stream.Column | None, method: str | None,
    min_samples: int,
) -> tuple[str, StatResult, int, int]:  # fmt: skip
    """:func:`_compare` on streamed summaries."""
    early = _unmatched(
        name, None if ref is None else ref.type, None if cur is None else cur.type,
        ref.total if ref is not None else 0, cur.total if cur is not None else 0,
    )  # fmt: skip
    if early is not None:
        return early
    assert ref is not None and cur is not None
    kind = _check_method(name, kind_of(ref.type, name), method)
    if ref.numeric and cur.numeric:
        n_ref, n_cur = ref.n, cur.n
        if min(n_ref, n_cur) < min_samples:
            return kind, _insufficient(method or "ks", n_ref, n_cur, min_samples), n_ref, n_cur
        chosen = stats.choose_method("numeric", n_ref, n_cur)
        method = method or chosen.method
        result = stream.numeric_result(method, ref, cur)
        threshold = chosen.threshold if method == chosen.method else _default_threshold(method)
        return kind, replace(result, threshold=threshold), n_ref, n_cur
    r, c = stream.categories(ref, cur)
    return (kind, *_categorical(r, c, method, min_samples))


def _missing_share(col: pa.ChunkedArray | None) -> float | None:
    if col is None or len(col) == 0:
        return None
    nulls = int(col.null_count)
    if pa.types.is_floating(col.type):
        nulls += int(pc.sum(pc.is_nan(col.drop_null())).as_py() or 0)
    return nulls / len(col)


def _missing_row(
    name: str, ref: pa.ChunkedArray | None, cur: pa.ChunkedArray | None
) -> dict[str, Any]:
    a, b = _missing_share(ref), _missing_share(cur)
    change = None if a is None or b is None else b - a
    return {
        "feature": name, "missing_ref": a, "missing_cur": b, "change": change,
        "flagged": change is not None and abs(change) >= MISSING_CHANGE,
    }  # fmt: skip
