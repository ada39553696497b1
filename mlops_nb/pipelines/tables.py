"""The pipelines' tables, created on first use (no registry schema version involved).

Keeping them out of :mod:`mlops_nb.schema` lets the registry's migrations move on their
own; ``CREATE ... IF NOT EXISTS`` makes the step idempotent and safe to race.
"""

from __future__ import annotations

import contextlib
import weakref

import duckdb

from ..store import Store

TABLES = [
    """CREATE TABLE IF NOT EXISTS pipeline_runs (
        id VARCHAR PRIMARY KEY,
        pipeline VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        reason VARCHAR,
        params JSON NOT NULL,
        trigger JSON,
        git_commit VARCHAR,
        branch VARCHAR,
        forced BOOLEAN NOT NULL,
        graph JSON NOT NULL,
        run_dir VARCHAR NOT NULL,
        host VARCHAR NOT NULL,
        pid INTEGER NOT NULL,
        pid_started DOUBLE,
        created_by VARCHAR NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        duration_s DOUBLE
    )""",
    """CREATE TABLE IF NOT EXISTS pipeline_stages (
        run_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        exit_code INTEGER,
        cache_key VARCHAR,
        cached_from VARCHAR,
        outputs JSON,
        error VARCHAR,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        duration_s DOUBLE,
        PRIMARY KEY (run_id, stage)
    )""",
    # Workspaces made before stages recorded why they were not cached gain the column.
    "ALTER TABLE pipeline_stages ADD COLUMN IF NOT EXISTS cache_note VARCHAR",
    """CREATE TABLE IF NOT EXISTS pipeline_attempts (
        run_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        verdict VARCHAR NOT NULL,
        exit_code INTEGER,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        duration_s DOUBLE,
        log_path VARCHAR NOT NULL,
        log_tail VARCHAR,
        log_bytes BIGINT,
        truncated BOOLEAN,
        error VARCHAR,
        PRIMARY KEY (run_id, stage, attempt)
    )""",
    # Where each attempt's process group runs, so that an abandoned run's can be killed.
    "ALTER TABLE pipeline_attempts ADD COLUMN IF NOT EXISTS pid INTEGER",
    "ALTER TABLE pipeline_attempts ADD COLUMN IF NOT EXISTS pid_started DOUBLE",
    """CREATE TABLE IF NOT EXISTS pipeline_cache (
        pipeline VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        run_id VARCHAR NOT NULL,
        output_dir VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (pipeline, stage, key)
    )""",
    "CREATE SEQUENCE IF NOT EXISTS pipeline_notification_seq",
    """CREATE TABLE IF NOT EXISTS pipeline_notifications (
        id BIGINT PRIMARY KEY DEFAULT nextval('pipeline_notification_seq'),
        run_id VARCHAR,
        event VARCHAR,
        notifier VARCHAR NOT NULL,
        ok BOOLEAN NOT NULL,
        error VARCHAR,
        sent_at TIMESTAMPTZ NOT NULL
    )""",
    # Registry events to notifiers, for every process that opens the workspace.
    "CREATE SEQUENCE IF NOT EXISTS event_notifier_seq",
    """CREATE TABLE IF NOT EXISTS event_notifiers (
        id BIGINT PRIMARY KEY DEFAULT nextval('event_notifier_seq'),
        kind VARCHAR NOT NULL,
        config JSON NOT NULL,
        events VARCHAR[] NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )""",
]

_READY: weakref.WeakSet[Store] = weakref.WeakSet()


def ensure(store: Store) -> Store:
    """Create the tables once per store object; returns the store."""
    if store not in _READY:

        def create(con: duckdb.DuckDBPyConnection) -> None:
            for statement in TABLES:
                con.execute(statement)

        # Another process creating them at the same moment is fine: they exist then.
        with contextlib.suppress(duckdb.TransactionException):
            store.write(create)
        _READY.add(store)
    return store
