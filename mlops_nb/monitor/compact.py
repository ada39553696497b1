"""Compaction: many small log files of a day become a few large ones.

Per partition (model, version, day folder), files under ``small_rows`` rows are read,
rewritten as files of up to ``CHUNK_ROWS`` rows, and swapped into the catalog in one
transaction. The steps, and what a crash at each leaves behind:

1. write the new files (a crash leaves uncatalogued files: invisible to readers);
2. swap in the catalog: delete the old rows, insert the new ones, in one transaction
   (a crash before commit changes nothing; after it, the old files are uncatalogued);
3. delete the old files.

Readers only ever read catalogued files, so every moment shows each row exactly once.
Files in the log folders that the catalog does not list and that are older than
``sweep_after`` seconds (leftovers of a crash at step 1 or 3, or of a crashed ``log()``)
are removed by the next run, so compaction is safe to re-run at any time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidArgument
from ..schema import migrate_monitoring
from . import catalog, logstore

if TYPE_CHECKING:
    from .core import Monitor

SMALL_ROWS = 100_000
# log() and ingest compact a partition on their own once it holds this many small files.
AUTO_FILES = 32
SWEEP_AFTER_S = 3600.0
# Fault-injection point for crash tests: called with "written" (new files on disk) and
# "swapped" (catalog committed, old files not yet deleted).
_hook: Callable[[str], None] | None = None


@dataclass(frozen=True)
class Compaction:
    """What one compaction run did."""

    partitions: int
    files_before: int
    files_after: int
    swept: int

    def __repr__(self) -> str:
        return (
            f"<Compaction {self.partitions} partitions: {self.files_before} files -> "
            f"{self.files_after}, {self.swept} leftovers removed>"
        )


def _stage(name: str) -> None:
    if _hook is not None:
        _hook(name)


def compact(
    mon: Monitor, *, small_rows: int = SMALL_ROWS, folders: set[str] | None = None,
    sweep_after: float = SWEEP_AFTER_S,
) -> Compaction:  # fmt: skip
    if isinstance(small_rows, bool) or not isinstance(small_rows, int) or small_rows < 1:
        raise InvalidArgument(f"small_rows must be a positive integer, got {small_rows!r}")
    if not sweep_after >= 0:
        raise InvalidArgument(f"sweep_after must be >= 0 seconds, got {sweep_after!r}")
    store = mon._ws._store
    listed = store.read(
        lambda con: con.execute(
            "SELECT version, path FROM log_files WHERE model = ? AND rows < ? ORDER BY min_ts, path",
            [mon.model, small_rows],
        ).fetchall()
    )
    groups: dict[tuple[int, str], list[str]] = {}
    for version, path in listed:
        folder = str(Path(path).parent)
        if folders is None or folder in folders:
            groups.setdefault((int(version), folder), []).append(str(path))
    before = after = parts = 0
    for (version, _folder), paths in sorted(groups.items()):
        if len(paths) < 2:
            continue
        written = _one(mon, version, paths)
        if written is not None:
            parts, before, after = parts + 1, before + len(paths), after + written
    swept = _sweep(mon, sweep_after) if folders is None else 0
    return Compaction(parts, before, after, swept)


def _one(mon: Monitor, version: int, paths: list[str]) -> int | None:
    tables = []
    for p in paths:
        with pq.ParquetFile(p) as f:  # the plain reader: read_table's dataset layer costs more
            tables.append(f.read(use_threads=False))
    merged = pa.concat_tables(tables, promote_options="permissive")
    del tables
    segments = []
    try:
        for start in range(0, merged.num_rows, logstore.CHUNK_ROWS):
            part = merged.slice(start, logstore.CHUNK_ROWS)
            segments.append(
                logstore.write_file(mon._ws.logs_root, mon.model, version, part, "compact")
            )
        _stage("written")

        def swap(con: duckdb.DuckDBPyConnection) -> bool:
            migrate_monitoring(con)
            rows = con.execute(
                "SELECT path, content_key FROM log_files WHERE model = ? AND list_contains(?, path)",
                [mon.model, paths],
            ).fetchall()
            if len(rows) != len(paths):
                return False  # another run compacted these meanwhile
            # Spool content keys of the old layout remember which spool files are in the
            # log; keep them so a later ingest still skips those files.
            for path, key in rows:
                if key.startswith("sha256:"):
                    con.execute(
                        "INSERT OR IGNORE INTO spool_files VALUES (?, ?, -1, -1, ?, 0, ?, ?)",
                        [mon.model, f"compacted:{path}", key[7:], version, mon._ws.now()],
                    ).fetchall()
            con.execute(
                "DELETE FROM log_files WHERE model = ? AND list_contains(?, path)",
                [mon.model, paths],
            ).fetchall()
            catalog.record(con, segments, [], "compact", mon._ws.now())
            return True

        swapped = mon._ws._store.write(swap)
    except BaseException:
        for seg in segments:
            Path(seg.path).unlink(missing_ok=True)
        raise
    if not swapped:
        for seg in segments:
            Path(seg.path).unlink(missing_ok=True)
        return None
    _stage("swapped")
    for p in paths:
        Path(p).unlink(missing_ok=True)
    return len(segments)


def _sweep(mon: Monitor, older_than: float) -> int:
    """Remove files below the model's log folder that the catalog does not list."""
    base = mon._ws.logs_root / f"model={mon.model}"
    if not base.is_dir():
        return 0
    listed = {
        r[0]
        for r in mon._ws._store.read(
            lambda con: con.execute(
                "SELECT path FROM log_files WHERE model = ?", [mon.model]
            ).fetchall()
        )
    }
    cutoff = time.time() - older_than
    removed = 0
    for folder, _dirs, names in os.walk(base):
        for name in names:
            path = os.path.join(folder, name)
            if path in listed or not (name.endswith((".parquet", ".tmp"))):
                continue
            try:
                if os.stat(path).st_mtime <= cutoff:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def small_files(con: duckdb.DuckDBPyConnection, model: str, folders: set[str]) -> set[str]:
    """The folders among ``folders`` holding at least ``AUTO_FILES`` small files."""
    crowded = set()
    for folder in folders:
        row = con.execute(
            "SELECT count(*) FROM log_files WHERE model = ? AND rows < ? AND starts_with(path, ?)",
            [model, SMALL_ROWS, folder + os.sep],
        ).fetchall()[0]
        if row[0] >= AUTO_FILES:
            crowded.add(folder)
    return crowded
