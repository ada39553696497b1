"""The catalog of a model's prediction log: its files, its columns' types, and the SQL
that reads them.

Readers never let DuckDB derive columns from folder names (``hive_partitioning`` is off):
a workspace under a folder such as ``version=7`` would otherwise relabel every row.
``version`` comes from the catalog, added to each file group as a constant.

Each logged column keeps one kind per model (``log_columns``): booleans, numbers or
strings (for ``prediction``: booleans, integers, floats or strings, since integer
predictions are class labels and float ones are not). A batch whose column has another
kind is refused before anything is written, so earlier rows are never re-read as another
type; integers and floats of a feature mix freely (both read as DOUBLE).

A query reads only the files whose ``[min_ts, max_ts]`` meets its window, so a month of
a year's log opens a month of files, and compaction keeps a day's files few.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from ..errors import InvalidArgument
from ..schema import migrate_monitoring


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


def kind(name: str, dtype: pa.DataType) -> str:
    """The kind a column is kept as: ``bool``, ``number``/``integer``/``float`` or ``string``.

    >>> kind("feature.age", pa.int64()), kind("prediction", pa.int64())
    ('number', 'integer')
    """
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        if name == "prediction":
            return "integer" if pa.types.is_integer(dtype) else "float"
        return "number"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    return "string"


Known = dict[str, str]


def known_columns(con: duckdb.DuckDBPyConnection, model: str) -> Known:
    """Column kinds logged for ``model``; read from its files once for logs that predate
    the ``log_columns`` table (and recorded there)."""
    try:
        rows = con.execute("SELECT name, kind FROM log_columns WHERE model = ?", [model]).fetchall()
    except duckdb.CatalogException:  # no monitoring tables yet
        return {}
    if rows:
        return {r[0]: r[1] for r in rows}
    listed = files(con, model)
    if not listed:
        return {}
    described = con.execute(
        f"DESCRIBE SELECT * EXCLUDE (version) FROM {read_sql(listed)}"
    ).fetchall()
    known: Known = {}
    for name, duck_type, *_ in described:
        found = _DUCK_KINDS.get(str(duck_type).split("(")[0], "string")
        if name == "prediction" and found == "number":
            floats = str(duck_type).startswith(("DOUBLE", "FLOAT", "DECIMAL"))
            found = "float" if floats else "integer"
        known[name] = found
        con.execute(
            "INSERT OR IGNORE INTO log_columns VALUES (?, ?, ?, ?)", [model, name, found, duck_type]
        ).fetchall()
    return known


_DUCK_KINDS = {
    "BOOLEAN": "bool", "TINYINT": "number", "SMALLINT": "number", "INTEGER": "number",
    "BIGINT": "number", "HUGEINT": "number", "UTINYINT": "number", "USMALLINT": "number",
    "UINTEGER": "number", "UBIGINT": "number", "FLOAT": "number", "DOUBLE": "number",
    "DECIMAL": "number", "VARCHAR": "string", "TIMESTAMP WITH TIME ZONE": "timestamp",
    "TIMESTAMP": "timestamp",
}  # fmt: skip


def check_columns(known: Known, schema: pa.Schema, where: str) -> list[tuple[str, str, str]]:
    """New (name, kind, type) rows for ``schema``; refuses a column whose kind changed."""
    new = []
    for field in schema:
        if pa.types.is_null(field.type):
            continue
        found = kind(field.name, field.type)
        before = known.get(field.name)
        if before is None:
            new.append((field.name, found, str(field.type)))
            known[field.name] = found
        elif before != found:
            shown = field.name.removeprefix("feature.")
            raise InvalidArgument(
                f"{where}: column {shown!r} was logged as {before} values and now holds "
                f"{found} ({field.type}); earlier rows keep their type, so convert it back "
                f"(e.g. X[{shown!r}].astype(...)) or log it under a new name. Nothing was "
                "written"
            )
    return new


def record(
    con: duckdb.DuckDBPyConnection, segments: Sequence[Segment], columns: Iterable[tuple[str, str, str]],
    source: str, now: datetime, checked: bool = False,
) -> None:  # fmt: skip
    """Catalog files and new column kinds (inside the caller's transaction).

    ``checked``: the caller read the column kinds in this same transaction, so no other
    writer can have changed them since.
    """
    if not segments:
        return
    model = segments[0].model
    if not checked:
        migrate_monitoring(con)
        known = known_columns(con, model)
        for name, found, _dtype in columns:
            # Checked again here: another process may have logged the column meanwhile.
            if name in known and known[name] != found:
                raise InvalidArgument(
                    f"column {name!r} was just logged as {known[name]} by another writer; "
                    f"this batch holds {found}. Nothing was written"
                )
    for name, found, dtype in columns:
        con.execute(
            "INSERT OR IGNORE INTO log_columns VALUES (?, ?, ?, ?)", [model, name, found, dtype]
        ).fetchall()
    rows = [
        [s.model, s.version, s.path, s.content_key, s.rows, s.min_ts, s.max_ts, source, now]
        for s in segments
    ]
    if len(rows) <= 16:
        for row in rows:
            con.execute("INSERT INTO log_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row).fetchall()
        return
    table = pa.table({
        "model": [s.model for s in segments],
        "version": pa.array([s.version for s in segments], pa.int32()),
        "path": [s.path for s in segments],
        "content_key": [s.content_key for s in segments],
        "rows": pa.array([s.rows for s in segments], pa.int64()),
        "min_ts": pa.array([s.min_ts for s in segments], pa.timestamp("us", tz="UTC")),
        "max_ts": pa.array([s.max_ts for s in segments], pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    con.register("new_log_files", table)
    try:
        con.execute(
            "INSERT INTO log_files SELECT model, version, path, content_key, rows, min_ts, "
            "max_ts, ?, ? FROM new_log_files",
            [source, now],
        ).fetchall()
    finally:
        con.unregister("new_log_files")


def files(
    con: duckdb.DuckDBPyConnection, model: str, version: int | None = None,
    start: datetime | None = None, end: datetime | None = None,
) -> list[tuple[int, str]]:  # fmt: skip
    """(version, path) of the catalogued files that may hold rows of the window."""
    sql = "SELECT version, path FROM log_files WHERE model = ?"
    params: list[Any] = [model]
    if version is not None:
        sql += " AND version = ?"
        params.append(version)
    if start is not None:
        sql += " AND (max_ts IS NULL OR max_ts >= ?)"
        params.append(start)
    if end is not None:
        sql += " AND (min_ts IS NULL OR min_ts < ?)"
        params.append(end)
    rows = con.execute(sql + " ORDER BY version, min_ts, path", params).fetchall()
    return [(int(v), str(p)) for v, p in rows]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


EMPTY = (
    "(SELECT NULL::VARCHAR AS id, NULL::TIMESTAMPTZ AS timestamp, NULL::INTEGER AS version "
    "WHERE FALSE)"
)


def read_sql(listed: Sequence[tuple[int, str]]) -> str:
    """A DuckDB table expression over catalogued files, ``version`` from the catalog."""
    if not listed:
        return EMPTY
    groups: dict[int, list[str]] = {}
    for version, path in listed:
        groups.setdefault(version, []).append(path)
    parts = [
        f"SELECT *, {int(v)}::INTEGER AS version FROM read_parquet([{', '.join(map(_quote, ps))}], "
        "hive_partitioning = false, union_by_name = true)"
        for v, ps in groups.items()
    ]
    return "(" + " UNION ALL BY NAME ".join(parts) + ")"
