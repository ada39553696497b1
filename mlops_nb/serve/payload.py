"""Payload logging: request/response pairs buffered in memory, flushed as Parquet spool files.

``add`` only appends one request's chunk (column name -> array, list, or a per-request
scalar) to a list under a lock; a background thread turns the buffer into one Arrow table
(see :mod:`.records`), redacts it (:mod:`.redact`) and writes it to the spool
(:mod:`.spool`) when ``flush_rows`` rows are waiting or every ``flush_seconds``.

Nothing answered is lost quietly: a write that fails keeps its table and is retried with
exponential backoff (up to ``retry_max`` seconds apart). Only when ``max_rows`` rows are
waiting are new payloads dropped, counted per reason in :attr:`PayloadLog.dropped`:

- ``spool_failing``: the buffer is full because writes keep failing;
- ``buffer_full``: the buffer is full while writes succeed (the spool is too slow);
- ``encode_error``: a chunk could not become a table (a bug; the rest are kept);
- ``shutdown``: the server stopped while the spool still could not be written.

A server with ``log_required`` asks :meth:`PayloadLog.accepting` before it answers, and
reports not ready while :attr:`failing`, instead of dropping.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pyarrow as pa

from .records import table_of
from .redact import Redactor
from .spool import Spool

log = logging.getLogger("mlops_nb.serve")

REASONS = ("spool_failing", "buffer_full", "encode_error", "shutdown")


class PayloadLog:
    def __init__(
        self,
        spool: Spool,
        model: str,
        version: int,
        *,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        max_rows: int = 200_000,
        types: dict[str, pa.DataType] | None = None,
        redactor: Redactor | None = None,
        retry_max: float = 30.0,
    ) -> None:
        self.spool = spool
        self.model = model
        self.version = version
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self.retry_max = retry_max
        # Arrow types per column: from the signature, then learned from the first flush
        # that had the column, so every spool file of a version agrees on them.
        self.types = dict(types or {})
        self.redactor = redactor or Redactor({}, None)
        self.logged = 0
        self.files = 0
        self.dropped: Counter[str] = Counter()
        self.failing = False
        self.last_error: str | None = None
        self._chunks: list[dict[str, Any]] = []
        self._rows = 0
        # Tables waiting to be written, with their rows and the token naming their files.
        self._retry: list[tuple[pa.Table, int, str]] = []
        self._retry_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlops-nb-spool", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Rows waiting to be written (buffered, or in a write being retried)."""
        return self._rows + self._retry_rows

    def accepting(self, rows: int) -> bool:
        return self.pending + rows <= self.max_rows

    def add(self, chunk: dict[str, Any], rows: int, admitted: bool = False) -> bool:
        """Queue one response's rows; never raises, never blocks on I/O. ``admitted`` rows
        were let in by :meth:`accepting` before their prediction (``log_required``): they
        are kept even past ``max_rows``, by at most what was in flight, never dropped."""
        with self._lock:
            if not admitted and self._rows + self._retry_rows + rows > self.max_rows:
                self.dropped["spool_failing" if self.failing else "buffer_full"] += rows
                return False
            self._chunks.append(chunk)
            self._rows += rows
            full = self._rows >= self.flush_rows
        if full and not self.failing:
            self._wake.set()
        return True

    def _loop(self) -> None:
        delay = 0.25
        while not self._stop.is_set():
            if self.failing:
                self._stop.wait(delay)
            else:
                self._wake.wait(self.flush_seconds)
                self._wake.clear()
            ok = self.flush()
            delay = 0.25 if ok else min(delay * 2, self.retry_max)

    def _build(self, chunks: list[dict[str, Any]], rows: int) -> None:
        try:
            tables = [(table_of(chunks, self.types, self.redactor), rows)]
        except Exception:
            # One odd chunk must not cost the others their log: build them one by one.
            log.exception("payload chunks could not be combined; retrying one by one")
            tables = []
            for chunk in chunks:
                n = len(chunk["id"])
                try:
                    tables.append((table_of([chunk], self.types, self.redactor), n))
                except Exception:
                    log.exception("payload chunk of %d rows could not be encoded", n)
                    with self._lock:
                        self.dropped["encode_error"] += n
        for table, _ in tables:
            for f in table.schema:
                if f.name not in self.types and not pa.types.is_null(f.type):
                    self.types[f.name] = f.type
        with self._lock:
            self._retry.extend((table, n, uuid.uuid4().hex) for table, n in tables)
            self._retry_rows += sum(n for _, n in tables)
            self._rows -= rows

    def flush(self) -> bool:
        """Build what is buffered and write everything pending; False if a write failed."""
        with self._lock:
            chunks, rows = self._chunks, self._rows
            self._chunks = []
        if chunks:
            self._build(chunks, rows)
        while self._retry:
            table, n, token = self._retry[0]
            try:
                files = self.spool.write(self.model, self.version, table, token)
            except Exception as e:
                if not self.failing:
                    log.warning("payload spool write failed (%d rows kept, retrying): %s",
                                self.pending, e)  # fmt: skip
                self.failing = True
                self.last_error = f"{type(e).__name__}: {e}"
                return False
            with self._lock:
                self._retry.pop(0)
                self._retry_rows -= n
                self.files += files
                self.logged += n
        if self.failing:
            log.warning("payload spool writable again")
        self.failing = False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and write what is buffered, retrying until ``timeout``."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        deadline = time.monotonic() + timeout
        delay = 0.1
        while not self.flush() and time.monotonic() + delay < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        if self.pending:
            log.error("payload spool still failing at shutdown; %d rows dropped", self.pending)
            with self._lock:
                self.dropped["shutdown"] += self.pending
                self._retry, self._retry_rows, self._chunks, self._rows = [], 0, [], 0
