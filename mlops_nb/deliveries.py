"""Recording webhook deliveries, so none is lost without trace.

When the workspace cannot take a delivery's record (busy past its timeout, disk full),
the record is retried, then appended to ``<workspace>.deliveries-pending.jsonl`` (one
JSON line) with an error logged, and moved into the ``deliveries`` table by the next
delivery that can write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MlopsError

if TYPE_CHECKING:
    import duckdb

    from .store import Store

log = logging.getLogger("mlops_nb.events")

_DELIVERY_COLUMNS = (
    "webhook_id",
    "event",
    "delivered_at",
    "attempts",
    "status_code",
    "ok",
    "error",
)
_RECORD_LOCK = threading.Lock()


def _insert_deliveries(con: duckdb.DuckDBPyConnection, rows: list[list[Any]]) -> None:
    con.executemany(
        f"INSERT INTO deliveries ({', '.join(_DELIVERY_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _take_pending(spool: Path) -> tuple[Path | None, list[list[Any]]]:
    """Move the pending file aside (so other writers start a new one) and read it."""
    taken = spool.with_name(f"{spool.name}.{os.getpid()}-{threading.get_ident()}")
    try:
        os.replace(spool, taken)
    except FileNotFoundError:
        return None, []
    rows = []
    for line in taken.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            record = json.loads(line)
            rows.append([record[c] for c in _DELIVERY_COLUMNS])
    return taken, rows


def _append_pending(spool: Path, rows: list[list[Any]]) -> None:
    lines = "".join(
        json.dumps(dict(zip(_DELIVERY_COLUMNS, row, strict=True)), default=str) + "\n"
        for row in rows
    )
    with open(spool, "a") as fh:
        fh.write(lines)


def record_delivery(
    store: Store, row: list[Any], spool: Path | None, *, tries: int = 3, pause: float = 0.5
) -> bool:
    """Store one delivery outcome (and any pending ones); True when it reached the table.

    On repeated failure the row goes to ``spool`` (one JSON line) and an error is logged.
    """
    with _RECORD_LOCK:
        taken, pending = _take_pending(spool) if spool is not None else (None, [])
        rows = [*pending, row]
        error: Exception | None = None
        for attempt in range(tries):
            try:
                store.write(lambda con: _insert_deliveries(con, rows))
            except MlopsError as e:
                error = e
                if attempt + 1 < tries:
                    time.sleep(pause * 2**attempt)
                continue
            if taken is not None:
                taken.unlink(missing_ok=True)
            return True
        if spool is not None:
            with contextlib.suppress(OSError):
                _append_pending(spool, rows)
                if taken is not None:
                    taken.unlink(missing_ok=True)
        log.error(
            "could not record webhook delivery %s (kept in %s): %s",
            dict(zip(_DELIVERY_COLUMNS, row, strict=True)),
            spool,
            error,
        )
        return False
