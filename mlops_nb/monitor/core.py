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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import query
from ..errors import InvalidArgument
from ..progress import progress
from ..schema import migrate_monitoring
from . import catalog, compact, convert, logwrite, redaction, s3spool
from .windows import Window, parse

if TYPE_CHECKING:
    import duckdb

    from ..widgets.monitoring import MonitoringView
    from ..workspace import Workspace
    from .compact import Compaction
    from .report import DriftReport


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
        """Run ``notebook`` for this model every ``every`` on ``target``.

        On ``mnb.Kubernetes(workspace_claim=...)`` this is a CronJob running
        ``mlops-nb monitor`` (see :mod:`mlops_nb.kube.cron`); ``output="s3://..."``,
        ``parameters={...}`` and ``dry_run=True`` are among its options.
        """
        from ..kube.cron import schedule

        return schedule(notebook, target, model=self.model, every=every, **options)

    # -- catalog -------------------------------------------------------------------------

    def _version(self, con: duckdb.DuckDBPyConnection, version: int | str) -> int:
        return query.resolve(con, self.model, version)

    def _files(
        self, version: int | None = None, window: Window | None = None
    ) -> list[tuple[int, str]]:
        start, end = window.bounds(self._ws.now()) if window is not None else (None, None)

        def run(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str]]:
            query.require_model(con, self.model)
            return catalog.files(con, self.model, version, start, end)

        return self._ws._store.read(run)

    def files(self) -> pd.DataFrame:
        """The Parquet files that make up this model's log."""
        return self._ws._store.query_df(
            "SELECT version, path, rows, min_ts, max_ts, source, added_at FROM log_files "
            "WHERE model = ? ORDER BY min_ts, path",
            [self.model],
        )

    def compact(
        self, *, small_rows: int = compact.SMALL_ROWS, sweep_after: float = compact.SWEEP_AFTER_S
    ) -> Compaction:
        """Merge each day's small log files (under ``small_rows`` rows) into large ones.

        Atomic per day and safe to re-run after a crash; see :mod:`.compact`.
        """
        return compact.compact(self, small_rows=small_rows, sweep_after=sweep_after)

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
    ) -> pd.arrays.ArrowStringArray:
        """Append predictions in bulk; returns their ids (generated unless given).

        ``X`` is a DataFrame, a 2-D array (columns named from the version's signature) or a
        pyarrow Table; ``y_pred`` one prediction per row. Timestamps default to now (UTC).
        Large calls are written in files of at most ``CHUNK_ROWS`` rows, converted one chunk
        at a time; all or none of them become part of the log.

        The ids come back as a pandas string array that shares the log's Arrow buffers
        (index it, slice it, pass it to :meth:`log_labels`; ``list(ids)`` gives Python
        strings), so a large call costs no Python object per row.
        """
        ws = self._ws
        prediction = convert.to_arrow(y_pred, "y_pred")
        n = len(prediction)
        height = _height(X)
        if height != n:
            raise InvalidArgument(f"X has {height} rows but y_pred has {n}; they must match")
        base: dict[str, pa.Array] = {
            "timestamp": convert.timestamps(timestamps, n, ws.now()),
            "prediction": prediction,
            "confidence": convert.numbers(confidence, n, "confidence", low=0.0, high=1.0),
            "latency_ms": convert.numbers(latency_ms, n, "latency_ms", low=0.0, high=None),
        }
        given = self._ids(ids, n) if ids is not None else None
        if errors is not None:
            err = pa.array(np.asarray(errors, dtype=object), type=pa.string())
            if len(err) != n:
                raise InvalidArgument(f"errors has {len(err)} values but y_pred has {n}")
            base["error"] = err
        if n == 0:
            # The version must exist even when nothing is logged.
            ws._store.read(lambda con: self._version(con, version))
            return _id_array([pa.array([], pa.string())])
        # Arrays are named by the version's signature, read before the write (and the
        # version checked again inside it); other inputs carry their names.
        named: tuple[int, list[str] | None] | None = None
        if _needs_names(X):
            named = ws._store.read(lambda con: _named(con, self.model, version))
        prefix, width = logwrite.id_prefix(), len(str(n - 1))
        id_chunks: list[pa.Array] = []

        def build(start: int, stop: int) -> pa.Table:
            features = convert.features(_rows(X, start, stop, n), named[1] if named else None)
            if features.num_columns and features.num_rows != stop - start:
                raise InvalidArgument(
                    f"X has {features.num_rows} rows but y_pred has {n}; they must match"
                )
            ids_part = (
                given.slice(start, stop - start)
                if given is not None
                else logwrite.row_ids(prefix, start, stop, width)
            )
            id_chunks.append(ids_part)
            columns = {"id": ids_part, **{k: v.slice(start, stop - start) for k, v in base.items()}}
            columns.update(zip(features.column_names, features.columns, strict=True))
            return pa.table(columns)

        chunks = logwrite.ChunkWriter(ws.logs_root, self.model, n, build)

        def write(con: duckdb.DuckDBPyConnection) -> tuple[pd.arrays.ArrowStringArray, set[str]]:
            number = self._version(con, version)
            if named is not None and named[0] != number:
                raise InvalidArgument(
                    f"{self.model} {version!r} became v{number} while this call read "
                    f"v{named[0]}'s signature; log again (or pass version={number})"
                )
            migrate_monitoring(con)
            known = catalog.known_columns(con, self.model)
            new_columns: list[tuple[str, str, str]] = []
            # A bar (after half a second) for calls of many chunks; quiet when piped.
            every = range(len(chunks.bounds))
            for i in progress(every, total=len(every), desc=f"log {self.model}", unit="chunk"):
                schema = first if i == 0 else chunks.start(i)  # chunk 0 is already written
                new_columns += catalog.check_columns(known, schema, "log()")
            segments = chunks.segments(number)
            catalog.record(con, segments, new_columns, "log", ws.now(), checked=True)
            crowded = compact.small_files(
                con, self.model, {str(Path(s.path).parent) for s in segments}
            )
            result = _id_array(id_chunks)  # made while the last file is written
            chunks.place(segments)
            return result, crowded

        try:
            first = chunks.start(0)  # written while the transaction begins
            result, crowded = ws._store.write(write)
        except BaseException:
            chunks.discard()  # waits for the call's files, then removes the staged ones
            raise
        if crowded:
            compact.compact(self, folders=crowded)
        return result

    def _ids(self, ids: Any, n: int) -> pa.Array:
        """Ids a caller gave, checked: one per row, none missing, none logged before."""
        arr = pa.array(np.asarray(ids, dtype=object)).cast(pa.string())
        if len(arr) != n:
            raise InvalidArgument(f"ids has {len(arr)} values but y_pred has {n}; they must match")
        if arr.null_count:
            raise InvalidArgument("ids must not contain missing values")
        if pc.count_distinct(arr).as_py() != n:
            raise InvalidArgument("ids must be unique within a call to log()")
        clash = self._logged_ids(arr, limit=3, present=True)
        if clash:
            raise InvalidArgument(
                f"ids already logged for {self.model}: {clash}; prediction ids must be unique"
            )
        return arr

    def _logged_ids(self, arr: pa.Array, limit: int | None, present: bool) -> list[str]:
        """Given ids that are (``present``) or are not in the log, sorted."""
        listed = self._files()
        if not listed:
            return [] if present else sorted(arr.to_pylist())
        given = pa.table({"id": arr})
        join = "SEMI" if present else "ANTI"
        tail = f" LIMIT {int(limit)}" if limit is not None else ""

        def run(con: duckdb.DuckDBPyConnection) -> list[str]:
            with registered(con, given) as name:
                rows = con.execute(
                    f"SELECT g.id FROM {name} g {join} JOIN (SELECT id FROM "
                    f"{catalog.read_sql(listed)}) l ON g.id = l.id ORDER BY g.id{tail}"
                ).fetchall()
            return [r[0] for r in rows]

        return self._ws._store.read(run)

    def log_labels(self, ids: Any, y_true: Any) -> int:
        """Attach ground truth to logged predictions (a later label for an id replaces it).

        Every id must have been logged; otherwise nothing is written. Ids the workspace's
        deployments served but nobody ingested yet are found by ingesting its spool first.
        """
        id_arr = pa.array(np.asarray(ids, dtype=object)).cast(pa.string())
        labels = convert.to_arrow(y_true, "y_true")
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
        missing = self._logged_ids(id_arr, limit=None, present=False)
        spool = self._ws.spool_root
        if missing and (spool / f"model={self.model}").is_dir():
            self.ingest(spool)
            missing = self._logged_ids(id_arr, limit=None, present=False)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise InvalidArgument(
                f"{len(missing)} of {len(id_arr)} ids were never logged for {self.model} "
                f"(e.g. {shown}); pass the ids returned by log(), or ingest the spool that "
                "holds them with mon.ingest(folder). Nothing was written"
            )
        numeric = (
            pa.types.is_integer(labels.type)
            or pa.types.is_floating(labels.type)
            or pa.types.is_boolean(labels.type)
        )
        given = pa.table({
            "id": id_arr,
            "label": convert.label_text(labels),
            "label_num": labels.cast(pa.float64()) if numeric else pa.nulls(len(labels), pa.float64()),
        })  # fmt: skip
        now = self._ws.now()

        def write(con: duckdb.DuckDBPyConnection) -> int:
            with registered(con, given) as name:
                con.execute(
                    f"INSERT OR REPLACE INTO labels SELECT ?, id, label, label_num, ? FROM {name}",
                    [self.model, now],
                )
            return len(id_arr)

        return self._ws._store.write(write)

    def ingest(self, path: str | Path, *, after: str = "keep") -> pd.DataFrame:
        """Add spool files written by model servers (see :mod:`.ingest` and :mod:`.logstore`).

        Files ingested before are skipped by (path, size, mtime) without being read; all new
        files are added in one transaction, or none. ``after="delete"`` or ``"archive"``
        (to ``<spool>/.archive/``) removes them from the spool once catalogued. Returns one
        row per spool file found, saying whether it was added. ``path`` may be
        ``s3://bucket/prefix`` (see :mod:`.s3spool`): its files are fetched, then ingested.
        """
        if str(path).startswith("s3://"):
            with s3spool.downloaded(str(path), self.model, self._ws._s3_options) as local:
                return self.ingest(local, after=after)
        from .ingest import ingest

        return ingest(self, path, after)

    # -- reading -------------------------------------------------------------------------

    def window_sql(
        self, window: Any = None, version: int | str | None = None, columns: str = "*"
    ) -> tuple[str, list[Any]] | None:
        """SQL selecting the window's rows, or None when nothing is logged."""
        number = None
        if version is not None:
            number = self._ws._store.read(lambda con: self._version(con, version))
        parsed = parse(window)
        listed = self._files(number, parsed)
        if not listed:
            return None
        clause, params, limit = parsed.sql(self._ws.now())
        sql = f"SELECT {columns} FROM {catalog.read_sql(listed)} WHERE {clause}"
        if limit is not None:
            sql += f" ORDER BY timestamp DESC LIMIT {int(limit)}"
        return sql, params

    def predictions(
        self, window: Any = None, *, version: int | str | None = None, limit: int | None = None
    ) -> pd.DataFrame:
        """Logged predictions (newest last) with their labels, as a DataFrame."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise InvalidArgument(f"limit must be a whole number >= 0 or None, got {limit!r}")
        selected = self.window_sql(window, version)
        if selected is None:
            return pd.DataFrame(columns=["id", "timestamp", "version", "prediction", "label"])
        sql, params = selected
        full = (
            f"SELECT p.*, l.label FROM ({sql}) p LEFT JOIN labels l "
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
        exact: bool | None = None,
    ) -> DriftReport:
        """Compare a reference with current traffic, feature by feature; see :mod:`.drift`.

        ``exact=None`` computes on the raw values up to ``EXACT_ROWS`` rows (both sides)
        and on streamed summaries above, with memory independent of the window
        (:mod:`.stream` states the error); ``True`` or ``False`` forces one path.
        """
        from .drift import run_drift

        if exact is not None and not isinstance(exact, bool):
            raise InvalidArgument(f"exact must be True, False or None, got {exact!r}")
        return run_drift(
            self, reference, current, version=version, features=features, methods=methods,
            thresholds=thresholds, min_samples=min_samples, drift_share=drift_share, store=store,
            exact=exact,
        )  # fmt: skip

    def metrics(
        self, bucket: str = "1h", *, window: Any = None, by: str | None = "version",
        **old: Any,
    ) -> pd.DataFrame:  # fmt: skip
        """Per ``bucket`` of time (and version) over ``window``: traffic, latency, errors,
        confidence and quality. ``mon.metrics("1h", window="last 24h")``."""
        from .metrics import compute_metrics

        if "over" in old:
            raise InvalidArgument(
                "metrics(over=...) is now metrics(window=...): the first argument is the "
                "bucket size, e.g. mon.metrics('1h', window='last 24h')"
            )
        if old:
            raise InvalidArgument(f"unexpected arguments {sorted(old)} for metrics()")
        return compute_metrics(self, bucket=bucket, by=by, window=window)

    def view(self, bucket: str = "1h", window: Any = "last 24h") -> MonitoringView:
        """A live view: volume, latency, errors and quality over time per version."""
        from ..widgets.monitoring import MonitoringView

        return MonitoringView(self, bucket=bucket, over=window)

    def history(self) -> pd.DataFrame:
        """Stored drift runs, oldest first."""
        return self._ws._store.query_df(
            "SELECT id, ran_at, reference, current, n_ref, n_cur, drifted, share_drifted, "
            "verdict FROM drift_runs WHERE model = ? ORDER BY id",
            [self.model],
        )

    def redaction(self, version: int | str | None = None) -> pd.DataFrame:
        """The redaction rules the model's servers applied before logging, as ingested
        from the spool files' metadata: version, feature, rule, recorded_at. A feature
        with rule ``"none"`` went unredacted in some of the version's files; feature
        ``"*"`` means some files carried no rules at all. A version never redacted has
        no rows.

        >>> import mlops_nb as mnb
        >>> ws = mnb.open(":memory:"); _ = ws.model("churn").register({"w": 1})
        >>> ws.monitor("churn").redaction().columns.tolist()
        ['version', 'feature', 'rule', 'recorded_at']
        """

        def number(con: duckdb.DuckDBPyConnection) -> int | None:
            query.require_model(con, self.model)
            return None if version is None else self._version(con, version)

        return redaction.frame(self._ws._store, self.model, self._ws._store.read(number))

    def feature_history(self, feature: str) -> pd.DataFrame:
        """One feature's result in each stored drift run, oldest first: run id, ran_at,
        method, statistic, p_value, drifted (read from the runs' stored summaries)."""
        if not isinstance(feature, str):
            raise InvalidArgument(f"feature must be a column name, got {feature!r}")
        return self._ws._store.query_df(
            """
            SELECT id, ran_at, f->>'method' AS method, (f->>'statistic')::DOUBLE AS statistic,
                   (f->>'p_value')::DOUBLE AS p_value, (f->>'drifted')::BOOLEAN AS drifted
            FROM (SELECT id, ran_at, unnest(CAST(summary->'summary' AS JSON[])) AS f
                  FROM drift_runs WHERE model = ?)
            WHERE f->>'feature' = ? ORDER BY id
            """,
            [self.model, feature],
        )


def _needs_names(X: Any) -> bool:
    """Whether X's columns are named by the version's signature (arrays carry no names)."""
    return not isinstance(X, pa.Table | pd.DataFrame)


def _named(
    con: duckdb.DuckDBPyConnection, model: str, version: int | str
) -> tuple[int, list[str] | None]:
    """The version's number and its signature's input names, if it has a signature."""
    number = query.resolve(con, model, version)
    sig = query.version_row(con, model, number)["signature"]
    return number, [i["name"] for i in sig["inputs"]] if sig and sig.get("inputs") else None


def _id_array(chunks: list[pa.Array]) -> pd.arrays.ArrowStringArray:
    """Ids as a pandas string array over the Arrow buffers: no copy, no Python objects."""
    return pd.arrays.ArrowStringArray(pa.chunked_array(chunks, type=pa.string()))


def _height(X: Any) -> int:
    if isinstance(X, pa.Table):
        return int(X.num_rows)
    if isinstance(X, pd.DataFrame):
        return len(X)
    shape = np.shape(X)
    return int(shape[0]) if shape else 1


def _rows(X: Any, start: int, stop: int, n: int) -> Any:
    """Rows ``start:stop`` of X without copying the rest."""
    if start == 0 and stop == n:
        return X
    if isinstance(X, pa.Table):
        return X.slice(start, stop - start)
    if isinstance(X, pd.DataFrame):
        return X.iloc[start:stop]
    return np.asarray(X)[start:stop]


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[str]:
    """Expose an Arrow table to SQL under a unique name for the length of a block."""
    name = f"arrow_{uuid.uuid4().hex[:12]}"
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)
