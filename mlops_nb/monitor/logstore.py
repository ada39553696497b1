"""Prediction logs as Parquet files, catalogued in the workspace.

The spool format, shared by :meth:`Monitor.log` and model servers:

Layout (Hive partitioning)::

    <root>/model=<name>/version=<n>/date=<YYYY-MM-DD>/<uuid>.parquet

``model``, ``version`` (integer) and ``date`` (UTC day of the first row's timestamp) name
the folder; they are not stored in the file, and readers take ``version`` from the
workspace's catalog, never from the path (see :mod:`.catalog`). A file may run past its
day (one ``log()`` call over months is one file, or a few of at most ``CHUNK_ROWS`` rows). One row per prediction, columns:

============== ============================== =========================================
column         Arrow type                     meaning
============== ============================== =========================================
id             string, not null               unique prediction id; labels join on it
timestamp      timestamp[us, tz=UTC], no null when the prediction was made
prediction     bool, int64, float64 or string the model's output (null when error set)
confidence     float64, nullable              probability of the predicted class
latency_ms     float64, nullable              time to answer, in milliseconds
error          string, nullable               why the request failed, if it did
misfit         string, nullable               JSON of values that did not fit their column
feature.<name> bool, int*, float*, string     one typed column per input feature
============== ============================== =========================================

Files are written whole to a temporary name and renamed into place, so a reader never
sees half a file. The workspace table ``log_files`` lists the files that belong to the
log; a file becomes visible only once it is catalogued, so a crash before that leaves an
invisible file that :func:`.compact.compact` sweeps away later.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InvalidArgument
from .catalog import Segment
from .convert import FEATURE_PREFIX

__all__ = [
    "FEATURE_PREFIX", "Segment", "check_schema", "partition", "plan", "segment", "write",
    "write_file",
]  # fmt: skip

REQUIRED = {"id": "string", "timestamp": "timestamp"}
OPTIONAL = ("prediction", "confidence", "latency_ms", "error", "misfit")
WRITE_OPTIONS = {"compression": "snappy", "use_dictionary": False, "row_group_size": 256 * 1024}
# Rows per file written by log(), ingest and compaction: large enough for DuckDB to scan
# fast, small enough that writing one never holds more than a few hundred MB.
CHUNK_ROWS = 1_000_000


def partition(root: Path, model: str, version: int, day: str) -> Path:
    return root / f"model={model}" / f"version={version}" / f"date={day}"


def plan(
    root: Path, model: str, version: int, table: pa.Table, prefix: str = "log",
    token: str | None = None,
) -> Segment:  # fmt: skip
    """Where ``table`` goes (under the day of its first row) and what the catalog records."""
    low, high = pc.min_max(table.column("timestamp")).values() if table.num_rows else (None, None)
    return segment(
        root, model, version, table.num_rows,
        low.as_py() if low is not None else None, high.as_py() if high is not None else None,
        prefix, token,
    )  # fmt: skip


def segment(
    root: Path, model: str, version: int, rows: int, first: datetime | None,
    last: datetime | None, prefix: str = "log", token: str | None = None,
) -> Segment:  # fmt: skip
    """A new file's place (under the day of ``first``) and catalog row. The same
    ``token`` (and day) names the same file: a retried write replaces, never duplicates."""
    day = first.strftime("%Y-%m-%d") if first is not None else "unknown"
    name = f"{prefix}-{uuid.uuid4().hex if token is None else f'{token}-{day}'}.parquet"
    path = partition(root, model, version, day) / name
    return Segment(model, version, str(path), f"{prefix}:{name}", rows, first, last)


def put(segment: Segment, table: pa.Table) -> Segment:
    """Write the planned file whole: to a temporary name, then renamed into place."""
    path = Path(segment.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table, tmp, **WRITE_OPTIONS)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return segment


def write_file(
    root: Path, model: str, version: int, table: pa.Table, prefix: str = "log",
    token: str | None = None,
) -> Segment:  # fmt: skip
    """Write ``table`` as one file under the day of its first row; not yet catalogued."""
    return put(plan(root, model, version, table, prefix, token), table)


def write(
    root: Path, model: str, version: int, table: pa.Table, token: str | None = None
) -> list[Segment]:
    """Spool ``table`` as one file per UTC day (model servers); returns the segments.
    Given a ``token``, a second write of the same table (a retry after a failure part
    way) replaces the files of the first instead of adding copies of its rows."""
    micros = table.column("timestamp").cast(pa.int64()).to_numpy()
    days = micros // 86_400_000_000
    unique_days = np.unique(days)
    return [
        write_file(
            root, model, version,
            table if len(unique_days) == 1 else table.filter(pa.array(days == day)),
            token=token,
        )
        for day in unique_days
    ]  # fmt: skip


def check_schema(schema: pa.Schema, where: str) -> None:
    """Refuse a file that does not follow the spool format, naming what is wrong."""
    names = set(schema.names)
    for column, kind in REQUIRED.items():
        if column not in names:
            raise InvalidArgument(
                f"{where}: column {column!r} is missing; spool files need id (string) and "
                "timestamp (timestamp, UTC) columns (see mlops_nb.monitor.logstore)"
            )
        dtype = schema.field(column).type
        ok = (
            pa.types.is_timestamp(dtype)
            if kind == "timestamp"
            else (pa.types.is_string(dtype) or pa.types.is_large_string(dtype))
        )
        if not ok:
            raise InvalidArgument(f"{where}: column {column!r} has type {dtype}, expected {kind}")
    for column in ("confidence", "latency_ms"):
        if column in names and not (
            pa.types.is_floating(schema.field(column).type)
            or pa.types.is_integer(schema.field(column).type)
        ):
            raise InvalidArgument(
                f"{where}: column {column!r} has type {schema.field(column).type}, expected a number"
            )
    extra = [
        n
        for n in names
        if n not in REQUIRED and n not in OPTIONAL and not n.startswith(FEATURE_PREFIX)
    ]
    if extra:
        raise InvalidArgument(
            f"{where}: unexpected columns {sorted(extra)}; feature columns are named "
            f"'{FEATURE_PREFIX}<name>'"
        )
