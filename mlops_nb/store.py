"""DuckDB connections, schema migrations and lock handling.

DuckDB lets one process at a time open a database file for writing. Opening costs
15-20 ms, so a :class:`Store` keeps its connection while operations keep coming and
releases the file after ``linger`` idle seconds. A process that finds the file locked
retries with jittered backoff for up to ``busy_timeout`` seconds, then raises
:class:`~mlops_nb.errors.WorkspaceBusy`; while it retries it keeps a ``<file>.waiting``
marker next to the database, and a busy process that has held the file for ``max_hold``
seconds in a row releases it when it sees the marker, so other processes (a CLI in a
terminal, a scheduled notebook) get their turn. Without a waiter the busy process keeps
the file: closing and reopening it costs 50 ms or more, and cold caches after.

``":memory:"`` keeps one connection for the life of the store.

Reads nested in a write (a callback that reads through the same store) reuse the open
transaction: the connection is released or handed over only when the outermost operation
ends. Once a file was opened, the store checks before each operation that it is still
there: a deleted workspace is reported, never recreated empty.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd

from . import schema
from .errors import (
    NotAWorkspace,
    WorkspaceBusy,
    WorkspaceCorrupt,
    WorkspaceError,
    WorkspaceFull,
    WorkspaceMissing,
)

T = TypeVar("T")

# How long a store that released the file for a waiting process gives it to get in: longer
# than the longest pause between a waiter's attempts (0.15 s, see Store._open).
_HANDOFF_WAIT = 0.25

# One lock per database file in this process: DuckDB connections to the same file in one
# process share an instance, and a per-path lock keeps read-modify-write sequences (such as
# allocating the next version number) serial across threads.
_PATH_LOCKS: dict[str, threading.RLock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def _lock_for(key: str) -> threading.RLock:
    with _PATH_LOCKS_GUARD:
        return _PATH_LOCKS.setdefault(key, threading.RLock())


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


_FULL_MARKERS = ("No space left", "File too large", "Disk quota", "disk is full")
_CORRUPT_MARKERS = ("Corrupt database", "corrupt database", "not a valid DuckDB")


def translate(exc: duckdb.Error, path: str) -> WorkspaceError | None:
    """The workspace error a DuckDB storage failure stands for, or None (a query error,
    such as a missing Parquet file in a monitoring query, stays as it is)."""
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    if any(m in text for m in _FULL_MARKERS):
        return WorkspaceFull(
            f"writing to workspace {path!r} failed: the disk is full ({first}). Nothing of "
            "this operation was kept; free space (or raise the file-size limit) and try again"
        )
    about_file = path in text or "database file" in text
    if _is_lock_conflict(exc):
        return None
    if any(m in text for m in _CORRUPT_MARKERS) or (
        about_file and isinstance(exc, duckdb.IOException | duckdb.SerializationException)
    ):
        return WorkspaceCorrupt(
            f"workspace {path!r} is damaged or truncated ({first}); restore it from a "
            "backup, or open a new file and register the models again"
        )
    if isinstance(exc, duckdb.FatalException) or "invalidated" in text:
        return WorkspaceCorrupt(
            f"workspace {path!r} hit a fatal storage error ({first}); close it and open it "
            "again; if that fails, restore it from a backup"
        )
    return None


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _touch(path: str) -> None:
    # Best effort: without the marker a waiter still gets in once the holder goes idle.
    with contextlib.suppress(OSError):
        Path(path).touch()


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


class Store:
    """A DuckDB database holding one workspace; connections last one operation or so.

    >>> s = Store(":memory:")
    >>> s.read(lambda con: con.execute("SELECT 41 + 1").fetchone()[0])
    42
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 30.0,
        linger: float = 0.2,
        max_hold: float = 1.0,
        create: bool | None = None,
    ) -> None:
        self.memory = str(path) == ":memory:"
        self.path = ":memory:" if self.memory else str(Path(path).expanduser().resolve())
        if busy_timeout < 0 or linger < 0 or max_hold <= 0:
            raise WorkspaceError("busy_timeout and linger must be >= 0 and max_hold > 0 (seconds)")
        self.busy_timeout = busy_timeout
        self.linger = linger
        self.max_hold = max_hold
        self._waiting = f"{self.path}.waiting"
        self._lock = threading.RLock() if self.memory else _lock_for(self.path)
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opened_at = 0.0
        self._last_used = 0.0
        self._timer: threading.Timer | None = None
        self._closed = False
        self._migrated = False
        self._depth = 0
        # (device, inode) of the file once opened: a later mismatch means it was deleted
        # or replaced behind this store's back.
        self._identity: tuple[int, int] | None = None
        #: Whether opening this store created the database file.
        self.created = False
        if not self.memory and not os.path.exists(self.path):
            if create is False:
                raise WorkspaceMissing(
                    f"no workspace at {self.path!r}; check the path, or pass create=True "
                    "(mlops-nb --create) to start a new one there"
                )
            self.created = True
        try:
            with self._connection():
                pass
        except BaseException as e:
            # A file this store created but could not make into a workspace goes again
            # (not when another process holds it: that one may have created it).
            if self.created and not self.memory and not isinstance(e, WorkspaceBusy):
                self._release()
                for leftover in (self.path, f"{self.path}.wal"):
                    _remove(leftover)
            raise

    # -- connection lifetime -------------------------------------------------------------

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self.memory:
            return duckdb.connect(":memory:")
        if not Path(self.path).parent.exists():
            raise NotAWorkspace(
                f"folder {str(Path(self.path).parent)!r} does not exist; create it first "
                "or pass a path in an existing folder"
            )
        if self._identity is not None and _identity(self.path) is None:
            raise self._gone()
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                con = duckdb.connect(self.path)
            except duckdb.IOException as e:
                if _is_lock_conflict(e):
                    if time.monotonic() >= deadline:
                        _remove(self._waiting)
                        raise WorkspaceBusy(
                            f"workspace {self.path!r} is locked by another process for "
                            f"more than {self.busy_timeout:g}s ({e}). DuckDB allows one "
                            "writing process at a time: finish or close the other process, "
                            "or pass a larger busy_timeout to mlops_nb.open()"
                        ) from e
                    # Touched on every attempt: another waiter that got in may have removed it.
                    _touch(self._waiting)
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 1.6, 0.1)
                    continue
                if "not a valid DuckDB database" in str(e) or "database file" in str(e):
                    raise NotAWorkspace(
                        f"{self.path!r} is not a DuckDB database ({e}); pass the path of "
                        "an mlops_nb workspace, or a new file name to create one (if it was "
                        "a workspace, its header is damaged: restore it from a backup)"
                    ) from e
                translated = translate(e, self.path)
                if translated is not None:
                    raise translated from e
                raise WorkspaceError(f"cannot open workspace {self.path!r}: {e}") from e
            except duckdb.Error as e:
                translated = translate(e, self.path)
                if translated is not None:
                    raise translated from e
                raise WorkspaceError(f"cannot open workspace {self.path!r}: {e}") from e
            # Whoever gets in clears the marker (a crashed waiter's too); those still
            # waiting touch it again on their next attempt.
            _remove(self._waiting)
            return con

    def _gone(self) -> WorkspaceMissing:
        return WorkspaceMissing(
            f"workspace file {self.path!r} was deleted or moved while open; restore it "
            "from a backup, or open a new workspace with mlops_nb.open(path, create=True)"
        )

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self._closed:
                raise WorkspaceError("this workspace is closed; open it again with mlops_nb.open()")
            if self._depth:
                # Nested in an operation of this thread: same connection, same transaction.
                self._depth += 1
                try:
                    assert self._con is not None
                    yield self._con
                finally:
                    self._depth -= 1
                return
            if self._con is not None and not self.memory:
                seen = _identity(self.path)
                if seen != self._identity:
                    # Deleted (or replaced by another file): the open connection writes to
                    # an unlinked inode, so it must not be used again.
                    self._release()
                    raise self._gone()
            if (
                self._con is not None
                and not self.memory
                and time.monotonic() - self._opened_at > self.max_hold
                and os.path.exists(self._waiting)
            ):
                # Held long enough and another process waits: let it in before taking the
                # file again (the waiter removes the marker once it has the file).
                self._release()
                handoff = time.monotonic() + _HANDOFF_WAIT
                while os.path.exists(self._waiting) and time.monotonic() < handoff:
                    time.sleep(0.005)
            if self._con is None:
                self._con = self._open()
                self._opened_at = time.monotonic()
                try:
                    # Timestamps come back in UTC whatever the machine's zone: outputs and
                    # audit records read the same everywhere.
                    self._con.execute("SET TimeZone = 'UTC'")
                    if not self._migrated:
                        schema.migrate(self._con, self.path)
                        self._migrated = True
                except duckdb.Error as e:
                    self._release()
                    translated = translate(e, self.path)
                    raise (
                        translated
                        or WorkspaceCorrupt(
                            f"workspace {self.path!r} cannot be read ({e}); restore it from a backup"
                        )
                    ) from e
                except BaseException:
                    self._release()
                    raise
                if not self.memory:
                    self._identity = _identity(self.path)
            self._depth = 1
            try:
                yield self._con
            except duckdb.Error as e:
                translated = translate(e, self.path)
                if translated is None:
                    raise
                # A storage failure can leave DuckDB's instance unusable: start afresh.
                self._release()
                raise translated from e
            finally:
                self._depth = 0
                self._last_used = time.monotonic()
                if not self.memory:
                    if self.linger == 0:
                        self._release()
                    else:
                        self._schedule_release()

    def _schedule_release(self) -> None:
        if self._timer is not None:
            return
        timer = threading.Timer(self.linger, self._release_if_idle)
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _release_if_idle(self) -> None:
        with self._lock:
            self._timer = None
            if self._con is None:
                return
            idle = time.monotonic() - self._last_used
            if idle >= self.linger:
                self._release()
            else:
                self._schedule_release()

    def _release(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            with contextlib.suppress(duckdb.Error):
                con.close()

    def close(self) -> None:
        """Close the connection now; the store cannot be used afterwards."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._release()
            self._closed = True

    # -- operations ----------------------------------------------------------------------

    def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``fn(connection)`` for a read."""
        with self._connection() as con:
            return fn(con)

    def write(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``fn(connection)`` in one transaction: all of it is committed, or none."""
        with self._connection() as con:
            if self._depth > 1:
                # Nested in another write of this thread: part of its transaction.
                return fn(con)
            con.execute("BEGIN TRANSACTION")
            try:
                result = fn(con)
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            return result

    def query_df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run a read query and return a pandas DataFrame."""
        frame: pd.DataFrame = self.read(lambda con: con.execute(sql, params or []).df())
        return frame

    def __repr__(self) -> str:
        return f"<Store {self.path}>"
