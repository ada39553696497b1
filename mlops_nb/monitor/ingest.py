"""Ingest: spool files written by model servers become part of a model's log.

A spool holds many small files (a replica flushes every few seconds). Ingest

1. lists them and skips, without opening them, every file whose (path, size, mtime) was
   ingested before (the ``spool_files`` table), so a second run over an unchanged spool
   only lists folders;
2. reads each new file once, hashes its bytes (a copy of a file ingested under another
   path is skipped), checks it against the spool format and the column kinds already
   logged;
3. writes the rows of all new files as a few large files, one per version and day, and
   catalogues them with the spool files, and the redaction rules their metadata records
   (``log_redaction``, read by ``mon.redaction()`` and by drift), in one transaction:
   either all of them are added, or none;
4. then, with ``after="delete"`` or ``after="archive"``, removes the ingested files from
   the spool or moves them under ``<spool>/.archive/`` (the default ``"keep"`` leaves the
   spool alone, for servers or tools that own it).

A file rewritten in place with the same size and mtime is not seen again; spool writers
never do that (they write a new file and rename it into place).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import query
from ..errors import InvalidArgument, NotFound
from ..progress import progress
from ..schema import migrate_monitoring
from ..serve.redact import METADATA_KEY
from . import catalog, logstore

if TYPE_CHECKING:
    from .core import Monitor

AFTER = ("keep", "delete", "archive")
ARCHIVE = ".archive"


@dataclass(frozen=True)
class SpoolFile:
    path: str
    version: int
    size: int
    mtime_ns: int


def _version(name: str, model: str, folder: str) -> int:
    """The version of a ``version=<n>`` folder right below ``model=<name>``."""
    text = name.split("=", 1)[1] if name.startswith("version=") else ""
    if text.isascii() and text.isdigit():
        return int(text)
    raise InvalidArgument(
        f"{folder}: no version=<n> folder below model={model}; spool files live under "
        "model=<name>/version=<n>/date=<YYYY-MM-DD>/"
    )


def scan(root: Path, model: str) -> list[SpoolFile]:
    """Spool files of ``model`` below ``root``; folder names above ``root`` are never read.

    The version comes from the folder right below ``model=<name>``, read once per folder.
    """
    marker = f"model={model}"
    found: list[SpoolFile] = []
    # (folder, version or None before model=<name>, depth below model=<name> or -1)
    stack: list[tuple[str, int | None, int]] = [(str(root), None, -1)]
    while stack:
        folder, version, depth = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith((".", "_")):
                    continue  # temporary files, the archive, side folders
                if entry.is_dir(follow_symlinks=False):
                    if depth < 0:
                        stack.append((entry.path, None, 0 if name == marker else -1))
                    elif depth == 0:
                        stack.append((entry.path, _version(name, model, entry.path), 1))
                    else:
                        stack.append((entry.path, version, depth + 1))
                elif name.endswith(".parquet") and depth >= 0:
                    if version is None:
                        _version("", model, entry.path)
                    st = entry.stat()
                    found.append(SpoolFile(entry.path, version, st.st_size, st.st_mtime_ns))  # type: ignore[arg-type]
    return sorted(found, key=lambda f: f.path)


def _known(
    con: duckdb.DuckDBPyConnection, model: str
) -> tuple[dict[str, tuple[Any, ...]], set[str]]:
    try:
        rows = con.execute(
            "SELECT path, size, mtime_ns, rows, sha256 FROM spool_files WHERE model = ?", [model]
        ).fetchall()
    except duckdb.CatalogException:
        rows = []
    legacy = con.execute(
        "SELECT substr(content_key, 8) FROM log_files WHERE model = ? AND content_key LIKE "
        "'sha256:%'",
        [model],
    ).fetchall()
    return {r[0]: r[1:] for r in rows}, {r[4] for r in rows} | {r[0] for r in legacy}


def _load(f: SpoolFile) -> tuple[str, pa.Table, str | None]:
    """(sha256, rows, UTC day of the first row) of one spool file, read once."""
    with open(f.path, "rb") as fh:
        data = fh.read()
    try:
        table = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    except (pa.ArrowInvalid, OSError) as e:
        raise InvalidArgument(f"{f.path}: not a readable Parquet file ({e})") from e
    day = None
    if table.num_rows and "timestamp" in table.column_names:
        ts = table.column("timestamp")
        if pa.types.is_timestamp(ts.type):
            micros = ts.cast(pa.timestamp("us")).cast(pa.int64()).to_numpy(zero_copy_only=False)
            day = str(np.datetime64(int(micros.min()) // 86_400_000_000, "D"))
    return hashlib.sha256(data).hexdigest(), table, day


def ingest(mon: Monitor, path: str | Path, after: str = "keep") -> pd.DataFrame:
    if after not in AFTER:
        raise InvalidArgument(f"after must be one of {', '.join(AFTER)}; got {after!r}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InvalidArgument(f"spool folder {str(root)!r} does not exist")
    ws = mon._ws
    found = scan(root, mon.model)

    def lookup(con: duckdb.DuckDBPyConnection) -> Any:
        query.require_model(con, mon.model)
        for v in sorted({f.version for f in found}):
            try:
                query.resolve(con, mon.model, v)
            except NotFound as e:
                raise InvalidArgument(f"spool folder version={v}: {e}") from e
        return (*_known(con, mon.model), catalog.known_columns(con, mon.model))

    by_path, shas, columns = ws._store.read(lookup)
    rows: dict[str, int] = {}
    added: set[str] = set()
    records: list[list[Any]] = []
    groups: dict[tuple[int, str], list[pa.Table]] = {}
    new_columns: list[tuple[str, str, str]] = []
    fresh: list[str] = []
    last_schema: pa.Schema | None = None
    redaction: list[tuple[int, dict[str, str] | None]] = []
    todo = []
    for f in found:
        seen = by_path.get(f.path)
        if seen is not None and tuple(seen[:2]) == (f.size, f.mtime_ns):
            rows[f.path] = int(seen[2])
        else:
            todo.append(f)
    # Decoding releases the GIL: a few threads overlap reads, hashing and decoding.
    with ThreadPoolExecutor(max_workers=4) as pool:
        loaded = pool.map(_load, todo)
        for f, (digest, table, day) in progress(zip(todo, loaded, strict=True), total=len(todo),
                                                desc="ingest", unit="file"):  # fmt: skip
            if last_schema is None or not table.schema.equals(last_schema):
                # Spool files of a model mostly share one schema: check each schema once.
                logstore.check_schema(table.schema, f.path)
                new_columns += catalog.check_columns(columns, table.schema, f.path)
                last_schema = table.schema
            rows[f.path] = table.num_rows
            redaction.append((f.version, _rules(table.schema, f)))
            records.append([mon.model, f.path, f.size, f.mtime_ns, digest, table.num_rows,
                            f.version])  # fmt: skip
            if digest in shas:
                continue  # the same content came in under another path
            shas.add(digest)
            fresh.append(digest)
            added.add(f.path)
            if day is not None:
                groups.setdefault((f.version, day), []).append(table)
    segments = _write(mon, groups)
    if records:
        _commit(mon, segments, new_columns, records, fresh, redaction)
    _after(root, found, after)
    return pd.DataFrame({
        "file": [f.path for f in found],
        "version": [f.version for f in found],
        "rows": [rows[f.path] for f in found],
        "added": [f.path in added for f in found],
    })  # fmt: skip


def _write(mon: Monitor, groups: dict[tuple[int, str], list[pa.Table]]) -> list[catalog.Segment]:
    segments: list[catalog.Segment] = []
    try:
        for (version, _day), tables in sorted(groups.items()):
            merged = pa.concat_tables(tables, promote_options="permissive")
            for start in range(0, merged.num_rows, logstore.CHUNK_ROWS):
                part = merged.slice(start, logstore.CHUNK_ROWS)
                segments.append(
                    logstore.write_file(mon._ws.logs_root, mon.model, version, part, "spool")
                )
    except BaseException:
        for seg in segments:
            Path(seg.path).unlink(missing_ok=True)
        raise
    return segments


def _rules(schema: pa.Schema, f: SpoolFile) -> dict[str, str] | None:
    """The redaction rules a spool file's metadata records by feature (None: no rules)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    try:
        described = json.loads(raw)
    except ValueError:
        described = None
    if not isinstance(described, dict):
        raise InvalidArgument(
            f"{f.path}: its redaction metadata ({METADATA_KEY.decode()}) is not a JSON object: "
            "it was not written by an mlops_nb model server, or is damaged; move it out of the "
            "spool folder and ingest again"
        )
    return {str(k): str(v) for k, v in described.items()}


def _redaction_rows(
    con: duckdb.DuckDBPyConnection, model: str, files: list[tuple[int, dict[str, str] | None]],
    paths: list[str],
) -> set[tuple[int, str, str]]:  # fmt: skip
    """(version, feature, rule) rows for the new files' rules, for versions that ever had
    rules: "none" where files applied no rule to a feature others of the version did
    (files ingested earlier, before a rule was added, included); feature "*" for a file
    with no rules at all. A version never redacted records nothing."""
    known: dict[int, set[str]] = {}
    for version, feature in con.execute(
        "SELECT DISTINCT version, feature FROM log_redaction WHERE model = ?", [model]
    ).fetchall():
        known.setdefault(int(version), set()).add(str(feature))
    earlier = {int(v) for (v,) in con.execute(
        "SELECT DISTINCT version FROM spool_files WHERE model = ? AND NOT list_contains(?, path)",
        [model, paths]).fetchall()}  # fmt: skip
    rows: set[tuple[int, str, str]] = set()
    for version, rules in files:
        new = set(rules or {}) - known.get(version, set())
        if version in earlier:
            rows |= {(version, f, "none") for f in new}
        known.setdefault(version, set()).update(new)
    for version, rules in files:
        features = known.get(version, set()) - {"*"}
        if rules is None and features:
            rows.add((version, "*", "none"))
        elif rules is not None:
            rows |= {(version, f, rules.get(f, "none")) for f in features}
    return rows


def _commit(
    mon: Monitor, segments: list[catalog.Segment], columns: list[tuple[str, str, str]],
    records: list[list[Any]], fresh: list[str],
    redaction: list[tuple[int, dict[str, str] | None]],
) -> None:  # fmt: skip
    ws = mon._ws
    now = ws.now()
    table = pa.table({
        name: [r[i] for r in records]
        for i, name in enumerate(["model", "path", "size", "mtime_ns", "sha256", "rows", "version"])
    })  # fmt: skip

    def write(con: duckdb.DuckDBPyConnection) -> None:
        migrate_monitoring(con)
        clash = con.execute(
            "SELECT count(*) FROM spool_files WHERE model = ? AND list_contains(?, sha256) AND "
            "NOT list_contains(?, path)",
            [mon.model, fresh, [r[1] for r in records]],
        ).fetchall()[0]
        if clash[0]:
            raise InvalidArgument(
                "another ingest of this spool ran at the same time; nothing was added by this "
                "one: run ingest again"
            )
        # Read before the new files are catalogued: which versions had files before them.
        found = sorted(_redaction_rows(con, mon.model, redaction, [r[1] for r in records]))
        catalog.record(con, segments, columns, "spool", now)
        con.register("new_spool_files", table)
        try:
            con.execute(
                "INSERT OR REPLACE INTO spool_files SELECT model, path, size, mtime_ns, sha256, "
                "rows, version, ? FROM new_spool_files",
                [now],
            ).fetchall()
        finally:
            con.unregister("new_spool_files")
        if found:
            con.executemany(
                "INSERT OR IGNORE INTO log_redaction VALUES (?, ?, ?, ?, ?)",
                [[mon.model, version, feature, rule, now] for version, feature, rule in found],
            )

    try:
        ws._store.write(write)
    except BaseException:
        for seg in segments:
            Path(seg.path).unlink(missing_ok=True)
        raise


def _after(root: Path, found: list[SpoolFile], after: str) -> None:
    """Remove or archive ingested spool files; only once their rows are catalogued."""
    if after == "keep":
        return
    for f in found:
        if after == "delete":
            Path(f.path).unlink(missing_ok=True)
        else:
            target = root / ARCHIVE / Path(f.path).relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f.path, target)
