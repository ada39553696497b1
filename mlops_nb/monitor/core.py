"""The Monitor: one model's prediction log, labels, drift and metrics.

>>> import mlops_nb as mnb, numpy as np
>>> ws = mnb.open(":memory:")
>>> _ = ws.model("churn").register({"w": 1})
>>> mon = ws.monitor("churn")
>>> ids = mon.log(np.array([[1.0, 2.0], [3.0, 4.0]]), [0, 1], version=1, confidence=[0.9, 0.6])
>>> mon.log_labels(ids, [0, 0])
2
>>> mon.predictions()[["version", "prediction", "label", "feature.x0"]]
   version  prediction label  feature.x0
0        1           0     0         1.0
1        1           1     0         3.0
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import query
from ..errors import InvalidArgument, VersionNotFound
from . import logstore
from .windows import Window, parse

if TYPE_CHECKING:
    import duckdb

    from ..workspace import Workspace
    from .drift import DriftReport

_OK_TYPES = (pa.types.is_boolean, pa.types.is_integer, pa.types.is_floating, pa.types.is_string,
             pa.types.is_large_string)  # fmt: skip


def _column_ok(dtype: pa.DataType) -> bool:
    return any(check(dtype) for check in _OK_TYPES)


def _to_arrow(values: Any, what: str) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        arr = values
    else:
        np_values = np.asarray(values)
        if np_values.ndim == 2 and np_values.shape[1] == 1:
            np_values = np_values[:, 0]
        if np_values.ndim != 1:
            raise InvalidArgument(f"{what} must be one-dimensional, got shape {np_values.shape}")
        try:
            arr = pa.array(np_values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InvalidArgument(f"{what} holds values of mixed or unsupported types: {e}") from e
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_large_string(arr.type):
        # pandas 3 strings arrive as large_string; the spool format says string.
        arr = arr.cast(pa.string())
    if not _column_ok(arr.type):
        raise InvalidArgument(f"{what} has type {arr.type}; use numbers, booleans or strings")
    return arr


def _features(X: Any, names: list[str] | None) -> pa.Table:
    if isinstance(X, pa.Table):
        table = X
    elif isinstance(X, pd.DataFrame):
        table = pa.Table.from_pandas(X, preserve_index=False)
    else:
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise InvalidArgument(f"X must be tabular (2-D), got shape {arr.shape}")
        cols = (
            names
            if names and len(names) == arr.shape[1]
            else [f"x{i}" for i in range(arr.shape[1])]
        )
        table = pa.table({c: arr[:, i] for i, c in enumerate(cols)})
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        columns[logstore.FEATURE_PREFIX + str(name)] = _to_arrow(column, f"feature {name!r}")
    return pa.table(columns) if columns else pa.table({})


class Monitor:
    """Prediction log and monitoring for one model (all its versions). A lazy handle."""

    def __init__(self, ws: Workspace, model: str) -> None:
        self._ws = ws
        self.model = query.check_name(model)

    def __repr__(self) -> str:
        return f"<Monitor {self.model}>"

    def schedule(
        self, notebook: str, every: str = "1h", *, target: Any, **options: Any
    ) -> dict[str, Any]:
        """Run ``notebook`` every ``every`` on ``target`` (``mnb.Kubernetes``: a CronJob)."""
        from ..kube.cron import schedule

        return schedule(notebook, target, every=every, **options)

    # -- catalog -------------------------------------------------------------------------

    def _version(self, con: duckdb.DuckDBPyConnection, version: int | str) -> int:
        return query.resolve(con, self.model, version)

    def _paths(self, version: int | None = None) -> list[str]:
        sql = "SELECT path FROM log_files WHERE model = ?"
        params: list[Any] = [self.model]
        if version is not None:
            sql += " AND version = ?"
            params.append(version)

        def run(con: duckdb.DuckDBPyConnection) -> list[str]:
            query.require_model(con, self.model)
            return [r[0] for r in con.execute(sql + " ORDER BY path", params).fetchall()]

        return self._ws._store.read(run)

    def files(self) -> pd.DataFrame:
        """The Parquet files that make up this model's log."""
        return self._ws._store.query_df(
            "SELECT version, path, rows, min_ts, max_ts, source, added_at FROM log_files "
            "WHERE model = ? ORDER BY min_ts, path",
            [self.model],
        )

    def _catalog(self, segments: list[logstore.Segment], source: str) -> list[logstore.Segment]:
        """Record segments in one transaction; skip ones whose content is already there."""
        ws = self._ws

        kept: set[str] = set()

        def write(con: duckdb.DuckDBPyConnection) -> list[logstore.Segment]:
            added = []
            for seg in segments:
                seen = con.execute(
                    "SELECT path FROM log_files WHERE model = ? AND content_key = ?",
                    [seg.model, seg.content_key],
                ).fetchone()
                if seen:
                    kept.add(seen[0])
                    continue
                con.execute(
                    "INSERT INTO log_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [seg.model, seg.version, seg.path, seg.content_key, seg.rows, seg.min_ts,
                     seg.max_ts, source, ws.now()],
                )  # fmt: skip
                added.append(seg)
            return added

        try:
            added = ws._store.write(write)
        except BaseException:
            for seg in segments:
                Path(seg.path).unlink(missing_ok=True)
            raise
        for seg in segments:
            if seg not in added and seg.path not in kept:
                Path(seg.path).unlink(missing_ok=True)
        return added

    # -- logging -------------------------------------------------------------------------

    def log(
        self,
        X: Any,
        y_pred: Any,
        *,
        version: int | str,
        confidence: Any = None,
        latency_ms: Any = None,
        ids: Any = None,
        timestamps: Any = None,
        errors: Any = None,
    ) -> np.ndarray[Any, Any]:
        """Append predictions in bulk; returns their ids (generated unless given).

        ``X`` is a DataFrame, a 2-D array (columns named from the version's signature) or a
        pyarrow Table; ``y_pred`` one prediction per row. Timestamps default to now (UTC).
        """
        ws = self._ws

        def lookup(con: duckdb.DuckDBPyConnection) -> tuple[int, list[str] | None]:
            number = self._version(con, version)
            sig = query.version_row(con, self.model, number)["signature"]
            names = [i["name"] for i in sig["inputs"]] if sig and sig.get("inputs") else None
            return number, names

        number, names = ws._store.read(lookup)
        features = _features(X, names)
        prediction = _to_arrow(y_pred, "y_pred")
        n = len(prediction)
        if features.num_columns and features.num_rows != n:
            raise InvalidArgument(
                f"X has {features.num_rows} rows but y_pred has {n}; they must match"
            )
        columns: dict[str, pa.Array] = {}
        columns["id"] = self._ids(ids, n)
        columns["timestamp"] = _timestamps(timestamps, n, ws.now())
        columns["prediction"] = prediction
        columns["confidence"] = _numbers(confidence, n, "confidence", low=0.0, high=1.0)
        columns["latency_ms"] = _numbers(latency_ms, n, "latency_ms", low=0.0, high=None)
        if errors is not None:
            err = pa.array(np.asarray(errors, dtype=object), type=pa.string())
            if len(err) != n:
                raise InvalidArgument(f"errors has {len(err)} values but y_pred has {n}")
            columns["error"] = err
        table = pa.table(
            {**columns, **dict(zip(features.column_names, features.columns, strict=True))}
        )
        if n == 0:
            return np.array([], dtype=object)
        segments = logstore.write(ws.logs_root, self.model, number, table)
        self._catalog(segments, "log")
        result: np.ndarray[Any, Any] = columns["id"].to_numpy(zero_copy_only=False)
        return result

    def _ids(self, ids: Any, n: int) -> pa.Array:
        if ids is None:
            prefix = uuid.uuid4().hex[:20] + "-"
            return pc.binary_join_element_wise(
                prefix, pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), ""
            )
        arr = pa.array(np.asarray(ids, dtype=object)).cast(pa.string())
        if len(arr) != n:
            raise InvalidArgument(f"ids has {len(arr)} values but y_pred has {n}; they must match")
        if arr.null_count:
            raise InvalidArgument("ids must not contain missing values")
        if pc.count_distinct(arr).as_py() != n:
            raise InvalidArgument("ids must be unique within a call to log()")
        clash = self._existing_ids(arr, limit=3)
        if clash:
            raise InvalidArgument(
                f"ids already logged for {self.model}: {clash}; prediction ids must be unique"
            )
        return arr

    def _existing_ids(self, arr: pa.Array, limit: int) -> list[str]:
        paths = self._paths()
        if not paths:
            return []
        given = pa.table({"id": arr})

        def run(con: duckdb.DuckDBPyConnection) -> list[str]:
            with registered(con, given) as name:
                rows = con.execute(
                    f"SELECT g.id FROM {name} g SEMI JOIN {logstore.read_sql(paths)} l "
                    f"ON g.id = l.id ORDER BY g.id LIMIT {limit}"
                ).fetchall()
            return [r[0] for r in rows]

        return self._ws._store.read(run)

    def log_labels(self, ids: Any, y_true: Any) -> int:
        """Attach ground truth to logged predictions (a later label for an id replaces it).

        Every id must have been logged; otherwise nothing is written.
        """
        id_arr = pa.array(np.asarray(ids, dtype=object)).cast(pa.string())
        labels = _to_arrow(y_true, "y_true")
        if len(id_arr) != len(labels):
            raise InvalidArgument(
                f"ids has {len(id_arr)} values but y_true has {len(labels)}; they must match"
            )
        if id_arr.null_count or labels.null_count:
            raise InvalidArgument("ids and y_true must not contain missing values")
        if pc.count_distinct(id_arr).as_py() != len(id_arr):
            raise InvalidArgument("ids must be unique within a call to log_labels()")
        if len(id_arr) == 0:
            return 0
        paths = self._paths()
        numeric = (
            pa.types.is_integer(labels.type)
            or pa.types.is_floating(labels.type)
            or (pa.types.is_boolean(labels.type))
        )
        given = pa.table({
            "id": id_arr,
            "label": _label_text(labels),
            "label_num": labels.cast(pa.float64()) if numeric else pa.nulls(len(labels), pa.float64()),
        })  # fmt: skip
        ws = self._ws
        now = ws.now()

        def write(con: duckdb.DuckDBPyConnection) -> int:
            if not paths:
                raise InvalidArgument(f"no predictions are logged for {self.model!r} yet")
            with registered(con, given) as name:
                missing = con.execute(
                    f"SELECT g.id FROM {name} g ANTI JOIN "
                    f"(SELECT id FROM {logstore.read_sql(paths)}) l ON g.id = l.id ORDER BY g.id"
                ).fetchall()
                if not missing:
                    con.execute(
                        f"INSERT OR REPLACE INTO labels SELECT ?, id, label, label_num, ? FROM {name}",
                        [self.model, now],
                    )
            if missing:
                shown = ", ".join(repr(m[0]) for m in missing[:5])
                raise InvalidArgument(
                    f"{len(missing)} of {len(id_arr)} ids were never logged for {self.model} "
                    f"(e.g. {shown}); pass the ids returned by log(). Nothing was written"
                )
            return len(id_arr)

        return ws._store.write(write)

    def ingest(self, path: str | Path) -> pd.DataFrame:
        """Add spool files written by model servers (see :mod:`.logstore` for the format).

        Every file is checked before any is added; files already ingested are skipped.
        Returns one row per file found, saying whether it was added.
        """
        root = Path(path).expanduser()
        if not root.exists():
            raise InvalidArgument(f"spool folder {str(root)!r} does not exist")
        base = root / f"model={self.model}"
        files = (
            sorted(base.rglob("*.parquet"))
            if base.is_dir()
            else sorted(p for p in root.rglob("*.parquet") if f"model={self.model}" in p.parts)
        )
        checked = []
        for f in files:
            version, _schema, digest = logstore.spool_segment(f, self.model)
            checked.append((f, version, digest))

        def known(con: duckdb.DuckDBPyConnection) -> set[str]:
            for f, v, _ in checked:
                try:
                    self._version(con, v)
                except VersionNotFound as e:
                    raise InvalidArgument(f"{f}: {e}") from e
            rows = con.execute(
                "SELECT content_key FROM log_files WHERE model = ?", [self.model]
            ).fetchall()
            return {r[0] for r in rows}

        seen = self._ws._store.read(known)
        # Files ingested before are neither copied nor catalogued again.
        fresh = [(f, v, d) for f, v, d in checked if f"sha256:{d}" not in seen]
        segments = [logstore.copy_in(self._ws.logs_root, f, self.model, v, d) for f, v, d in fresh]
        added = {s.content_key for s in self._catalog(segments, "spool")}
        rows = {s.content_key: s.rows for s in segments}
        return pd.DataFrame(
            {
                "file": [str(f) for f, _, _ in checked],
                "version": [v for _, v, _ in checked],
                "rows": [
                    rows.get(f"sha256:{d}") or pq.read_metadata(f).num_rows for f, _, d in checked
                ],
                "added": [f"sha256:{d}" in added for _, _, d in checked],
            }
        )

    # -- reading -------------------------------------------------------------------------

    def _where(self, window: Window, version: int | None) -> tuple[str, list[Any], int | None]:
        clause, params, limit = window.sql(self._ws.now())
        if version is not None:
            clause += " AND version = ?"
            params = [*params, version]
        return clause, params, limit

    def window_sql(
        self, window: Any = None, version: int | str | None = None, columns: str = "*"
    ) -> tuple[str, list[Any]] | None:
        """SQL selecting the window's rows, or None when nothing is logged."""
        number = None
        if version is not None:
            number = self._ws._store.read(lambda con: self._version(con, version))
        paths = self._paths(number)
        if not paths:
            return None
        clause, params, limit = self._where(parse(window), number)
        sql = f"SELECT {columns} FROM {logstore.read_sql(paths)} WHERE {clause}"
        if limit is not None:
            sql += f" ORDER BY timestamp DESC LIMIT {int(limit)}"
        return sql, params

    def predictions(
        self, window: Any = None, *, version: int | str | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """Logged predictions (newest last) with their labels, as a DataFrame."""
        selected = self.window_sql(window, version)
        if selected is None:
            return pd.DataFrame(columns=["id", "timestamp", "version", "prediction", "label"])
        sql, params = selected
        full = (
            f"SELECT p.* EXCLUDE (date), l.label FROM ({sql}) p LEFT JOIN labels l "
            "ON l.model = ? AND l.id = p.id ORDER BY p.timestamp, p.id"
        )
        if limit is not None:
            full += f" LIMIT {int(limit)}"
        return self._ws._store.query_df(full, [*params, self.model])

    # -- analysis ------------------------------------------------------------------------

    def drift(
        self,
        reference: Any = "training",
        current: Any = "last 24h",
        *,
        version: int | str | None = None,
        features: list[str] | None = None,
        methods: Mapping[str, str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        min_samples: int = 100,
        drift_share: float = 0.5,
        store: bool = True,
    ) -> DriftReport:
        """Compare a reference with current traffic, feature by feature; see :mod:`.drift`."""
        from .drift import run_drift

        return run_drift(
            self, reference, current, version=version, features=features, methods=methods,
            thresholds=thresholds, min_samples=min_samples, drift_share=drift_share, store=store,
        )  # fmt: skip

    def metrics(
        self, window: str = "1h", *, by: str | None = "version", over: Any = None
    ) -> pd.DataFrame:
        """Per time bucket (and version): traffic, latency, errors, confidence, quality."""
        from .metrics import compute_metrics

        return compute_metrics(self, bucket=window, by=by, over=over)

    def history(self) -> pd.DataFrame:
        """Stored drift runs, oldest first."""
        return self._ws._store.query_df(
            "SELECT id, ran_at, reference, current, n_ref, n_cur, drifted, share_drifted, "
            "verdict FROM drift_runs WHERE model = ? ORDER BY id",
            [self.model],
        )


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[str]:
    """Expose an Arrow table to SQL under a unique name for the length of a block."""
    name = f"arrow_{uuid.uuid4().hex[:12]}"
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


def _label_text(labels: pa.Array) -> pa.Array:
    if pa.types.is_floating(labels.type):
        values = labels.to_numpy(zero_copy_only=False)
        if np.all(np.mod(values, 1) == 0):
            return pa.array(values.astype(np.int64)).cast(pa.string())
    return labels.cast(pa.string())


def _timestamps(values: Any, n: int, now: Any) -> pa.Array:
    utc = pa.timestamp("us", tz="UTC")
    if values is None:
        stamp = np.datetime64(pd.Timestamp(now).tz_convert("UTC").tz_localize(None), "us")
        return pa.array(np.full(n, stamp), type=utc)
    try:
        with warnings.catch_warnings():
            # pandas warns when it falls back to per-element parsing; a bad value still
            # raises below, which is what the caller needs to see.
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(pd.Series(values), utc=True)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"cannot read timestamps: {e}") from e
    if len(parsed) != n:
        raise InvalidArgument(f"timestamps has {len(parsed)} values but y_pred has {n}")
    if parsed.isna().any():
        raise InvalidArgument("timestamps must not contain missing values")
    return pa.array(parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[us]"), type=utc)


def _numbers(values: Any, n: int, what: str, *, low: float, high: float | None) -> pa.Array:
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
    finite = arr[~np.isnan(arr)]
    if (
        np.isinf(finite).any()
        or (finite < low).any()
        or (high is not None and (finite > high).any())
    ):
        bounds = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise InvalidArgument(
            f"{what} values must be finite and within {bounds} (NaN marks missing)"
        )
    return pa.array(arr, from_pandas=True)
