"""The workspace's tables and their migrations.

``meta.schema_version`` records which migrations a file has. Opening an older file runs
the missing ones in one transaction; a file newer than this code is refused.

Version 1 kept metrics only as JSON on the version row. Version 2 adds a typed
``version_metrics`` table (filled from that JSON) so metric conditions are plain SQL,
plus approvals, webhooks and webhook deliveries. Version 3 adds the monitoring catalog:
prediction log files, delayed labels and stored drift runs. Version 4 adds deployments,
their revisions and the guard's checks. Version 5 adds persisted rollouts (a
generation number changed by compare-and-set, the rollout's state and a watch on the
deployment, each revision's completion time, and the rollout each check belongs to) and
records the operating-system user beside the acting user in the audit log.

A file with tables but no ``meta.schema_version`` belongs to another application and is
refused untouched: migrations never add tables to it.
"""

from __future__ import annotations

from typing import NoReturn

import duckdb

from .errors import NotAWorkspace, SchemaTooNew

SCHEMA_VERSION = 5

_V1 = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    """CREATE TABLE IF NOT EXISTS models (
        name VARCHAR PRIMARY KEY,
        description VARCHAR,
        policy JSON,
        created_at TIMESTAMPTZ NOT NULL,
        created_by VARCHAR NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS versions (
        model VARCHAR NOT NULL,
        number INTEGER NOT NULL,
        label VARCHAR,
        stage VARCHAR NOT NULL,
        flavor VARCHAR NOT NULL,
        framework VARCHAR,
        algorithm VARCHAR,
        data_version VARCHAR,
        parent_version INTEGER,
        git_commit VARCHAR,
        metrics JSON NOT NULL,
        params JSON NOT NULL,
        resources JSON NOT NULL,
        tags VARCHAR[] NOT NULL,
        description VARCHAR,
        signature JSON,
        artifact_uri VARCHAR NOT NULL,
        digest VARCHAR NOT NULL,
        manifest JSON NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        created_by VARCHAR NOT NULL,
        PRIMARY KEY (model, number)
    )""",
    """CREATE TABLE IF NOT EXISTS aliases (
        model VARCHAR NOT NULL,
        alias VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (model, alias)
    )""",
    "CREATE SEQUENCE IF NOT EXISTS audit_seq",
    """CREATE TABLE IF NOT EXISTS audit (
        id BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
        happened_at TIMESTAMPTZ NOT NULL,
        actor VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        model VARCHAR,
        version INTEGER,
        from_value VARCHAR,
        to_value VARCHAR,
        reason VARCHAR,
        details JSON
    )""",
]

_V2 = [
    """CREATE TABLE IF NOT EXISTS version_metrics (
        model VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        value DOUBLE NOT NULL,
        PRIMARY KEY (model, version, name)
    )""",
    """INSERT INTO version_metrics
        SELECT v.model, v.number, m.key, CAST(m.value AS DOUBLE)
        FROM versions v, json_each(v.metrics) m""",
    """CREATE TABLE IF NOT EXISTS approvals (
        model VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        approver VARCHAR NOT NULL,
        approved_at TIMESTAMPTZ NOT NULL,
        comment VARCHAR,
        PRIMARY KEY (model, version, approver)
    )""",
    "CREATE SEQUENCE IF NOT EXISTS webhook_seq",
    """CREATE TABLE IF NOT EXISTS webhooks (
        id BIGINT PRIMARY KEY DEFAULT nextval('webhook_seq'),
        url VARCHAR NOT NULL,
        secret VARCHAR NOT NULL,
        events VARCHAR[] NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE SEQUENCE IF NOT EXISTS delivery_seq",
    """CREATE TABLE IF NOT EXISTS deliveries (
        id BIGINT PRIMARY KEY DEFAULT nextval('delivery_seq'),
        webhook_id BIGINT NOT NULL,
        event VARCHAR NOT NULL,
        delivered_at TIMESTAMPTZ NOT NULL,
        attempts INTEGER NOT NULL,
        status_code INTEGER,
        ok BOOLEAN NOT NULL,
        error VARCHAR
    )""",
]

_V3 = [
    """CREATE TABLE IF NOT EXISTS log_files (
        model VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        path VARCHAR PRIMARY KEY,
        content_key VARCHAR NOT NULL,
        rows BIGINT NOT NULL,
        min_ts TIMESTAMPTZ,
        max_ts TIMESTAMPTZ,
        source VARCHAR NOT NULL,
        added_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS log_files_content ON log_files (model, content_key)",
    """CREATE TABLE IF NOT EXISTS labels (
        model VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        label VARCHAR NOT NULL,
        label_num DOUBLE,
        labeled_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (model, id)
    )""",
    "CREATE SEQUENCE IF NOT EXISTS drift_seq",
    """CREATE TABLE IF NOT EXISTS drift_runs (
        id BIGINT PRIMARY KEY DEFAULT nextval('drift_seq'),
        model VARCHAR NOT NULL,
        ran_at TIMESTAMPTZ NOT NULL,
        reference VARCHAR NOT NULL,
        current VARCHAR NOT NULL,
        n_ref BIGINT NOT NULL,
        n_cur BIGINT NOT NULL,
        drifted BOOLEAN,
        share_drifted DOUBLE,
        verdict VARCHAR NOT NULL,
        summary JSON NOT NULL
    )""",
]

_V4 = [
    """CREATE TABLE IF NOT EXISTS deployments (
        name VARCHAR PRIMARY KEY,
        model VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        endpoint VARCHAR,
        pid INTEGER,
        admin JSON,
        replicas INTEGER NOT NULL,
        status VARCHAR NOT NULL,
        config JSON NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS revisions (
        deployment VARCHAR NOT NULL,
        revision INTEGER NOT NULL,
        version INTEGER NOT NULL,
        strategy VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        created_by VARCHAR NOT NULL,
        note VARCHAR,
        PRIMARY KEY (deployment, revision)
    )""",
    "CREATE SEQUENCE IF NOT EXISTS guard_seq",
    """CREATE TABLE IF NOT EXISTS guard_checks (
        id BIGINT PRIMARY KEY DEFAULT nextval('guard_seq'),
        deployment VARCHAR NOT NULL,
        revision INTEGER,
        version INTEGER,
        checked_at TIMESTAMPTZ NOT NULL,
        verdict VARCHAR NOT NULL,
        decision VARCHAR NOT NULL,
        evidence JSON NOT NULL
    )""",
]

# Persisted rollouts (deployment core).
_V5_DEPLOYMENTS = [
    "ALTER TABLE deployments ADD COLUMN generation BIGINT DEFAULT 0",
    "ALTER TABLE deployments ADD COLUMN rollout JSON",
    "ALTER TABLE deployments ADD COLUMN watch JSON",
    "ALTER TABLE deployments ADD COLUMN changed VARCHAR",
    "ALTER TABLE revisions ADD COLUMN completed_at TIMESTAMPTZ",
    "ALTER TABLE revisions ADD COLUMN digest VARCHAR",
    "ALTER TABLE guard_checks ADD COLUMN rollout INTEGER",
]


def _registry_v5() -> list[str]:
    """Registry: who was logged in beside who was acting (``MLOPS_NB_USER`` may differ)."""
    return ["ALTER TABLE audit ADD COLUMN IF NOT EXISTS os_user VARCHAR"]


MIGRATIONS: dict[int, list[str]] = {
    1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: [*_V5_DEPLOYMENTS, *_registry_v5()],
}  # fmt: skip


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version recorded in the file; 0 for a fresh database."""
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name = 'meta' AND table_schema = 'main'"
    ).fetchone()
    if not has_meta or has_meta[0] == 0:
        foreign = [
            str(r[0])
            for r in con.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                "WHERE table_catalog = current_database() ORDER BY 1 LIMIT 5"
            ).fetchall()
        ]
        return _foreign(foreign) if foreign else 0
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else _foreign(["main.meta"])
    except (duckdb.BinderException, duckdb.CatalogException, ValueError):
        # Another application's ``meta`` table (other columns, or values not ours).
        return _foreign(["main.meta"])


def _foreign(tables: list[str]) -> NoReturn:
    raise NotAWorkspace(
        f"this DuckDB file belongs to another application (it holds {', '.join(tables)} and "
        "no mlops_nb schema); it was left unchanged. Pass the path of an mlops_nb "
        "workspace, or a new file name to create one"
    )


def migrate(con: duckdb.DuckDBPyConnection, path: str, target: int = SCHEMA_VERSION) -> int:
    """Bring the file up to ``target``; returns the version found before migrating."""
    found = current_version(con)
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"workspace {path!r} has schema version {found}, but this mlops_nb knows "
            f"versions up to {SCHEMA_VERSION}: upgrade with `pip install -U mlops-nb`"
        )
    if found >= target:
        return found
    con.execute("BEGIN TRANSACTION")
    try:
        for number in range(found + 1, target + 1):
            for statement in MIGRATIONS[number]:
                con.execute(statement)
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(target)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return found


# The monitor's growth tables, kept out of the numbered migrations so they merge apart from
# other schema work: the stored type of every logged column, and the spool files already
# read (by path, size and mtime, so a second ingest neither reads nor hashes them again).
MONITORING = [
    """CREATE TABLE IF NOT EXISTS log_columns (
        model VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        arrow_type VARCHAR NOT NULL,
        PRIMARY KEY (model, name)
    )""",
    """CREATE TABLE IF NOT EXISTS spool_files (
        model VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        size BIGINT NOT NULL,
        mtime_ns BIGINT NOT NULL,
        sha256 VARCHAR NOT NULL,
        rows BIGINT NOT NULL,
        version INTEGER NOT NULL,
        ingested_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (model, path)
    )""",
    # Every redaction rule a version's spool files said they applied to a feature ("none":
    # some files applied none; feature "*": some files carried no rules at all; a version
    # never redacted has no rows), so drift
    # can honour them, and refuse to judge a feature redacted differently over a window.
    """CREATE TABLE IF NOT EXISTS log_redaction (
        model VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        feature VARCHAR NOT NULL,
        rule VARCHAR NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (model, version, feature, rule)
    )""",
]


def migrate_monitoring(con: duckdb.DuckDBPyConnection) -> None:
    """Create the monitor's growth tables if missing (idempotent; run inside its writes)."""
    for statement in MONITORING:
        con.execute(statement)
