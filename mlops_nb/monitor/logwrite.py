"""One ``log()`` call's files, written while its catalog transaction runs.

A call's rows become files of at most ``CHUNK_ROWS`` rows. Each chunk is converted on the
calling thread and encoded by one writer thread (Parquet encoding releases the GIL) under a
staging name in the model's log folder, so the first file is already being written while
the workspace's transaction begins, the version is resolved and the column kinds are
checked. Only then does each file get its partition (``version=`` is known inside the
transaction): the staged files are renamed into place just before the transaction
commits. When anything fails before that, every staged file is removed; a crash leaves
staging files, and a commit that fails leaves placed files no catalog row names, which
:func:`.compact.compact` sweeps away.

Generated ids are ``<20 hex digits>-<row number>``, the row number zero-padded to the
width of the call's largest, so a call's ids sort in row order:

>>> row_ids(b"ab-", 8, 11, 2).to_pylist()
['ab-08', 'ab-09', 'ab-10']
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import logstore
from .catalog import Segment


def id_prefix() -> bytes:
    """A new call's id prefix: 20 random hex digits and a dash."""
    return (uuid.uuid4().hex[:20] + "-").encode()


def _digits(start: int, stop: int, width: int) -> np.ndarray[tuple[int, int], np.dtype[np.uint8]]:
    # Calls of one size repeat (a logging loop): the digits of small calls are made once.
    if stop - start <= _CACHED_ROWS:
        return _cached_digits(start, stop, width)
    return _make_digits(start, stop, width)


_CACHED_ROWS = 250_000  # at most a few MB per cached size


@lru_cache(maxsize=4)
def _cached_digits(
    start: int, stop: int, width: int
) -> np.ndarray[tuple[int, int], np.dtype[np.uint8]]:
    return _make_digits(start, stop, width)


def _make_digits(
    start: int, stop: int, width: int
) -> np.ndarray[tuple[int, int], np.dtype[np.uint8]]:
    out = np.empty((stop - start, width), np.uint8)
    rest = np.arange(start, stop, dtype=np.int64)
    for k in range(width - 1, -1, -1):
        out[:, k] = 48 + rest % 10
        rest //= 10
    out.setflags(write=False)
    return out


def row_ids(prefix: bytes, start: int, stop: int, width: int) -> pa.Array:
    """The ids of rows ``start:stop``: ``prefix`` then the zero-padded row number."""
    n, size = stop - start, len(prefix) + width
    # Each row is a record of two byte strings, so both parts are copied a field at a
    # time rather than a byte at a time.
    chars = np.empty(n, [("prefix", f"S{len(prefix)}"), ("digits", f"S{width}")])
    chars["prefix"] = prefix
    chars["digits"] = _digits(start, stop, width).view(f"S{width}")[:, 0]
    offsets = np.arange(0, (n + 1) * size, size, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars.view(np.uint8))]
    )


class ChunkWriter:
    """Writes a call's chunks in the background, then places them; see the module doc."""

    def __init__(self, root: Path, model: str, n: int, build: Callable[[int, int], pa.Table]):
        self.bounds = [
            (start, min(start + logstore.CHUNK_ROWS, n))
            for start in range(0, n, logstore.CHUNK_ROWS)
        ]
        self._root, self._model, self._build = root, model, build
        self._jobs: list[Future[None]] = []
        self._staged: list[tuple[Path, int, datetime | None, datetime | None]] = []

    def start(self, i: int) -> pa.Schema:
        """Convert chunk ``i`` and queue its file (after chunk ``i - 1``'s file is written,
        so at most one chunk waits in memory); returns its schema, for the checks."""
        table = self._build(*self.bounds[i])
        low, high = pc.min_max(table.column("timestamp")).values()
        folder = self._root / f"model={self._model}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".log-{uuid.uuid4().hex}.parquet.tmp"
        if self._jobs:
            self._jobs[-1].result()
        self._staged.append((path, table.num_rows, low.as_py(), high.as_py()))
        # The writer is opened here: its setup is Python that would otherwise wait for the
        # GIL on the writer thread while this thread goes on converting and checking.
        writer = pq.ParquetWriter(path, table.schema, **_WRITER_OPTIONS)
        self._jobs.append(_POOL.submit(_write, writer, path, table))
        return table.schema

    def segments(self, version: int) -> list[Segment]:
        """What the catalog records for each file, once ``version`` is known."""
        return [
            logstore.segment(self._root, self._model, version, rows, low, high)
            for _path, rows, low, high in self._staged
        ]

    def place(self, segments: list[Segment]) -> None:
        """Wait for every file, then rename each into its partition."""
        for job in self._jobs:
            job.result()
        for (staged, *_), seg in zip(self._staged, segments, strict=True):
            final = Path(seg.path)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)

    def discard(self) -> None:
        """Remove the call's staged files (the call failed).

        Files already placed are left: they were placed just before the commit, and a
        failure reported after it (while the connection is released) would otherwise
        delete rows that are committed. If the commit did fail, they are files the catalog
        does not list, which :func:`.compact.compact` sweeps away.
        """
        for job in self._jobs:
            job.exception()  # every write has ended before its file is removed
        for path, *_ in self._staged:
            path.unlink(missing_ok=True)


# One writer thread for the process, kept between calls: a logging loop does not start
# and join a thread per call. Each call waits for its own files only.
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-nb-log")
_ROW_GROUP = int(logstore.WRITE_OPTIONS["row_group_size"])  # type: ignore[call-overload]
_WRITER_OPTIONS = {k: v for k, v in logstore.WRITE_OPTIONS.items() if k != "row_group_size"}


def _write(writer: pq.ParquetWriter, path: Path, table: pa.Table) -> None:
    """What ``pq.write_table(table, path, **WRITE_OPTIONS)`` does, the writer opened."""
    try:
        with writer:
            writer.write_table(table, row_group_size=_ROW_GROUP)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
