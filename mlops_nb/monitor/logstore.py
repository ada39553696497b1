"""Prediction logs as Parquet files, catalogued in the workspace.

The spool format, shared by :meth:`Monitor.log` and model servers:

Layout (Hive partitioning)::

    <root>/model=<name>/version=<n>/date=<YYYY-MM-DD>/<uuid>.parquet

``model``, ``version`` (integer) and ``date`` (UTC day of the rows' timestamps) come from
the path and are not stored in the file. One row per prediction, columns:

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
log; a file becomes visible only once it is catalogued, in the same transaction that
checks it was not ingested before (keyed by its sha256), so re-ingesting a spool file
adds nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidArgument

FEATURE_PREFIX = "feature."
REQUIRED = {"id": "string", "timestamp": "timestamp"}
OPTIONAL = ("prediction", "confidence", "latency_ms", "error", "misfit")
_WRITE_OPTIONS = {"compression": "snappy", "use_dictionary": False}


@dataclass(frozen=True)
class Segment:
    """One Parquet file of the log, ready to be catalogued."""

    model: str
    version: int
    path: str
    content_key: str
    rows: int
    min_ts: datetime | None
    max_ts: datetime | None


def partition(root: Path, model: str, version: int, day: str) -> Path:
    return root / f"model={model}" / f"version={version}" / f"date={day}"


def write(root: Path, model: str, version: int, table: pa.Table) -> list[Segment]:
    """Write ``table`` as one file per UTC day; returns the segments (not yet catalogued)."""
    micros = table.column("timestamp").cast(pa.int64()).to_numpy()
    days = micros // 86_400_000_000
    segments = []
    unique_days = np.unique(days)
    for day in unique_days:
        part = table if len(unique_days) == 1 else table.filter(pa.array(days == day))
        stamp = np.datetime64(int(day), "D").astype(str)
        folder = partition(root, model, version, stamp)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{uuid.uuid4().hex}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(part, tmp, **_WRITE_OPTIONS)
        os.replace(tmp, folder / name)
        ts = part.column("timestamp")
        segments.append(
            Segment(
                model, version, str(folder / name), f"log:{name}", part.num_rows,
                _py(pa.compute.min(ts)), _py(pa.compute.max(ts)),
            )
        )  # fmt: skip
    return segments


def _py(scalar: pa.Scalar) -> datetime | None:
    value = scalar.as_py()
    return value if isinstance(value, datetime) else None


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


def spool_segment(path: Path, model: str) -> tuple[int, pa.Schema, str]:
    """(version, schema, sha256) of a spool file, checked against the format."""
    version = None
    for part in path.parts:
        if part.startswith("version="):
            try:
                version = int(part.split("=", 1)[1])
            except ValueError:
                version = None
    if version is None:
        raise InvalidArgument(
            f"{path}: no version=<n> folder in the path; spool files live under "
            "model=<name>/version=<n>/date=<YYYY-MM-DD>/"
        )
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InvalidArgument(f"{path}: not a readable Parquet file ({e})") from e
    check_schema(schema, str(path))
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return version, schema, digest


def copy_in(root: Path, src: Path, model: str, version: int, digest: str) -> Segment:
    """Copy a checked spool file into the log store (the spool may be rotated away)."""
    meta = pq.read_metadata(src)
    table = pq.read_table(src, columns=["timestamp"])
    ts = table.column("timestamp")
    day = "unknown"
    if table.num_rows:
        first = pa.compute.min(ts).as_py()
        day = first.strftime("%Y-%m-%d")
    folder = partition(root, model, version, day)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"spool-{digest[:32]}.parquet"
    tmp = folder / f".{target.name}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, target)
    return Segment(
        model, version, str(target), f"sha256:{digest}", meta.num_rows,
        _py(pa.compute.min(ts)) if table.num_rows else None,
        _py(pa.compute.max(ts)) if table.num_rows else None,
    )  # fmt: skip


def read_sql(paths: list[str]) -> str:
    """A DuckDB table expression over the given log files (model/version/date from paths)."""
    if not paths:
        return (
            "(SELECT NULL::VARCHAR AS id, NULL::TIMESTAMPTZ AS timestamp, NULL::INTEGER AS "
            "version WHERE FALSE)"
        )
    quoted = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    return (
        f"read_parquet([{quoted}], hive_partitioning = true, union_by_name = true, "
        "hive_types = {'version': INTEGER, 'date': DATE})"
    )
