"""Payload logging: request/response pairs buffered in memory, flushed as Parquet spool files.

``add`` only appends one request's chunk (column name -> array, list, or a per-request
scalar) to a list under a lock; a background thread turns the buffer
into one Arrow table and writes it (see :mod:`mlops_nb.monitor.logstore` for the layout)
when ``flush_rows`` rows are waiting or every ``flush_seconds``. When the buffer holds
``max_rows`` rows (the spool is slow or broken) new payloads are dropped and counted: a
full or broken spool never fails or slows a request.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..monitor import logstore

log = logging.getLogger("mlops_nb.serve")


class PayloadLog:
    def __init__(
        self,
        root: str | Path,
        model: str,
        version: int,
        *,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        max_rows: int = 200_000,
        types: dict[str, pa.DataType] | None = None,
    ) -> None:
        self.root = Path(root)
        self.model = model
        self.version = version
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        # Arrow types for columns that may be all-null in a flush (the prediction of a
        # flush of failed requests), so every spool file of a version agrees on them.
        self.types = dict(types or {})
        self.logged = 0
        self.dropped = 0
        self.files = 0
        self._chunks: list[dict[str, Any]] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlops-nb-spool", daemon=True)
        self._thread.start()

    def add(self, chunk: dict[str, Any], rows: int) -> None:
        """Queue one response's rows; never raises, never blocks on I/O."""
        with self._lock:
            if self._rows + rows > self.max_rows:
                self.dropped += rows
                return
            self._chunks.append(chunk)
            self._rows += rows
            full = self._rows >= self.flush_rows
        if full:
            self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            chunks, rows = self._chunks, self._rows
            self._chunks, self._rows = [], 0
        if not chunks:
            return
        try:
            table = _table(chunks, self.types)
            self.root.mkdir(parents=True, exist_ok=True)
            written = logstore.write(self.root, self.model, self.version, table)
            with self._lock:
                self.files += len(written)
                self.logged += rows
        except Exception:
            log.exception("payload log flush failed; %d rows dropped", rows)
            # add() counts drops on the request thread: count under the same lock.
            with self._lock:
                self.dropped += rows

    def close(self) -> None:
        """Stop the thread and write what is buffered."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


# The spool format's own columns keep their types even in a flush where all are missing.
_FIXED_TYPES = {
    "id": pa.string(),
    "confidence": pa.float64(),
    "latency_ms": pa.float64(),
    "error": pa.string(),
}


def _table(chunks: list[dict[str, Any]], types: dict[str, pa.DataType]) -> pa.Table:
    """One Arrow table from many small chunks, built from flat Python lists.

    Requests are mostly a row or a few: per-chunk numpy calls would cost more than the
    rows themselves, so each column is gathered into one list and converted by Arrow in a
    single call. Per-request scalars (timestamp, latency, error) are broadcast here, off
    the request path. NaN becomes null (a missing confidence is missing, not a number).
    """
    names: list[str] = []
    for chunk in chunks:
        names.extend(n for n in chunk if n not in names)
    counts = [len(chunk["id"]) for chunk in chunks]
    columns = {}
    for name in names:
        flat: list[Any] = []
        for chunk, n in zip(chunks, counts, strict=True):
            value = chunk.get(name)
            if isinstance(value, list):
                flat.extend(value)
            elif isinstance(value, np.ndarray):
                flat.extend(value.tolist())
            else:
                flat.extend([value] * n)
        if name == "timestamp":
            columns[name] = pa.array(flat, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
            continue
        arr = pa.array(flat, from_pandas=True)
        want = types.get(name, _FIXED_TYPES.get(name))
        if pa.types.is_null(arr.type):
            arr = arr.cast(want or pa.string())
        elif want is not None and arr.type != want:
            arr = arr.cast(want)
        columns[name] = arr
    return pa.table(columns)
