"""The workspace: one DuckDB file (or memory) plus an artifact store.

>>> import mlops_nb as mnb
>>> ws = mnb.open(":memory:")
>>> ws
<Workspace :memory:>
>>> ws.models().columns.tolist()
['name', 'versions', 'production', 'latest', 'aliases', 'created_at']
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import os
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import query, render, search
from .artifacts import ArtifactStore, open_store
from .deliveries import record_delivery
from .errors import InvalidArgument
from .events import (
    Callback,
    Event,
    EventBus,
    check_event_name,
    check_webhook_url,
    now,
    post_signed,
)
from .policy import Policy
from .registry import Model
from .staging import sweep_staging
from .store import Store

if TYPE_CHECKING:
    import duckdb

    from .deploy.core import Deployment
    from .monitor.core import Monitor
    from .pipelines.notify import Notifier
    from .pipelines.run import Run as PipelineRun
    from .widgets.registry import RegistryView

log = logging.getLogger("mlops_nb")


class Workspace:
    """A registry of models and their versions. Create one with :func:`mlops_nb.open`."""

    def __init__(
        self,
        path: str | Path = "mlops.duckdb",
        *,
        artifacts: str | None = None,
        logs: str | Path | None = None,
        s3_options: dict[str, Any] | None = None,
        busy_timeout: float = 30.0,
        linger: float = 0.2,
        create: bool | None = None,
    ) -> None:
        if not isinstance(path, str | Path):
            raise InvalidArgument(f"path must be a str or Path, got {type(path).__name__}")
        if artifacts is not None and not isinstance(artifacts, str | Path):
            raise InvalidArgument(
                f"artifacts must be a str or Path, got {type(artifacts).__name__}"
            )
        self.path = str(path)
        self._s3_options = s3_options
        self._tmp: weakref.finalize[Any, Any] | None = None
        self._tmp_logs: weakref.finalize[Any, Any] | None = None
        if create is not None and not isinstance(create, bool):
            raise InvalidArgument(f"create must be True, False or None, got {create!r}")
        self._store = Store(path, busy_timeout=busy_timeout, linger=linger, create=create)
        if self._store.created and create is None:
            # A typo in the path would otherwise go unnoticed until the models are missing.
            log.warning(
                "created a new workspace at %s; pass create=True to create one quietly, "
                "create=False to refuse a path that does not exist",
                self._store.path,
            )
        sweep_staging()
        self.events = EventBus()
        self._stores: dict[str, ArtifactStore] = {}
        self.artifacts = self._artifact_store(self._artifact_root(artifacts))
        self.logs_root = self._logs_root(logs)
        self.spool_root = self._sibling("spool")
        self.deploy_root = self._sibling("deployments")

    def _artifact_root(self, given: str | Path | None) -> str:
        if given is not None:
            return str(given)
        if self._store.memory:
            # Removed when the workspace is closed or garbage-collected, silently (a
            # TemporaryDirectory would warn about implicit cleanup in notebooks).
            root = tempfile.mkdtemp(prefix="mlops-nb-artifacts-")
            self._tmp = weakref.finalize(self, shutil.rmtree, root, ignore_errors=True)
            return root
        db = Path(self._store.path)
        return str(db.with_name(db.stem + "-artifacts"))

    def _logs_root(self, given: str | Path | None) -> Path:
        if given is not None:
            root = Path(given).expanduser().resolve()
        elif self._store.memory:
            root = Path(tempfile.mkdtemp(prefix="mlops-nb-logs-"))
            self._tmp_logs = weakref.finalize(self, shutil.rmtree, str(root), ignore_errors=True)
        else:
            db = Path(self._store.path)
            root = db.with_name(db.stem + "-logs")
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _sibling(self, what: str) -> Path:
        """A folder of this workspace: ``<stem>-<what>`` beside the file, or with the logs."""
        if self._store.memory:
            root = self.logs_root / f".{what}"
        else:
            db = Path(self._store.path)
            root = db.with_name(f"{db.stem}-{what}")
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _artifact_store(self, uri: str) -> ArtifactStore:
        if uri not in self._stores:
            self._stores[uri] = open_store(uri, self._s3_options)
        return self._stores[uri]

    # -- identity and time ---------------------------------------------------------------

    @staticmethod
    def actor() -> str:
        """Who acts: ``MLOPS_NB_USER``, else the OS user."""
        user = os.environ.get("MLOPS_NB_USER")
        if user:
            return user
        return Workspace.os_user()

    @staticmethod
    def os_user() -> str:
        """The login name of this process, kept in the audit log beside :meth:`actor`."""
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"

    @staticmethod
    def now() -> datetime:
        return now()

    @staticmethod
    def git_commit() -> str | None:
        """HEAD of the git repository around the working directory, ``+dirty`` if changed."""
        try:
            # One process for both answers: the commit and whether tracked files changed.
            out = subprocess.run(
                ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode != 0:
            return None
        commit = None
        dirty = False
        for line in out.stdout.splitlines():
            if line.startswith("# branch.oid "):
                commit = line.split()[2]
            elif not line.startswith("#"):
                dirty = True
        if commit is None or commit == "(initial)":
            return None
        return commit + ("+dirty" if dirty else "")

    # -- handles and queries -------------------------------------------------------------

    def monitor(self, model: str) -> Monitor:
        """Prediction logs, labels, drift and metrics of one model (a lazy handle)."""
        from .monitor.core import Monitor

        return Monitor(self, model)

    def deployment(self, name: str) -> Deployment:
        """A handle on a deployment (re-attaches to one started by another process)."""
        from .deploy.core import Deployment

        return Deployment(self, name)

    def pipeline_runs(self, pipeline: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Pipeline runs, newest first (see :mod:`mlops_nb.pipelines`)."""
        from .pipelines.history import runs

        return runs(self, pipeline, limit)

    def pipeline_run(self, run_id: str) -> PipelineRun:
        """A handle on a pipeline run, also one started by another process."""
        from .pipelines.history import run

        return run(self, run_id)

    def notify(self, notifier: Notifier, events: str | Sequence[str] = ("*",)) -> int:
        """Send registry events (promoted, rolled_back, drift ...) to a pipeline notifier
        (:class:`mlops_nb.Webhook`, :class:`mlops_nb.Email`) from every process that opens
        this workspace, such as a deployment's rollout controller; returns the
        subscription's id (see :meth:`notifiers`, :meth:`remove_notifier`).

        The subscription is stored in the workspace (see
        :mod:`mlops_nb.pipelines.subscriptions`): ``ws.on`` callbacks, by contrast, see
        this process's events only.
        """
        from .pipelines.subscriptions import subscribe

        return subscribe(self, notifier, events)

    def notifiers(self) -> pd.DataFrame:
        """The stored :meth:`notify` subscriptions: id, notifier, events, created_at."""
        from .pipelines.subscriptions import listed

        return listed(self)

    def remove_notifier(self, subscription: int) -> None:
        """Stop sending events to the notifier subscribed under ``subscription``."""
        from .pipelines.subscriptions import unsubscribe

        unsubscribe(self, subscription)

    def deployments(self) -> pd.DataFrame:
        """Every deployment with its serving versions and live state (stale when its
        router process is gone)."""
        from .deploy.core import deployments

        return deployments(self)

    def model(self, name: str) -> Model:
        """A handle on a model (no I/O; the model is created by its first register)."""
        return Model(self, name)

    def models(self) -> pd.DataFrame:
        """One row per model: version count, production version, latest, aliases."""
        return self._store.query_df(
            """
            SELECT m.name,
                   count(v.number)::INTEGER AS versions,
                   max(v.number) FILTER (WHERE v.stage = 'production') AS production,
                   max(v.number) AS latest,
                   coalesce((SELECT list(a.alias || '=v' || a.version ORDER BY a.alias)
                             FROM aliases a WHERE a.model = m.name), []) AS aliases,
                   m.created_at
            FROM models m LEFT JOIN versions v ON v.model = m.name
            GROUP BY m.name, m.created_at ORDER BY m.name
            """
        )

    def search(
        self,
        *,
        model: str | None = None,
        stage: str | Sequence[str] | None = None,
        tags: str | Sequence[str] | None = None,
        alias: str | None = None,
        metrics: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Versions matching every filter: ``metrics="accuracy >= 0.9"`` or a list of such."""
        return self._store.read(
            lambda con: search.search(
                con, model=model, stage=stage, tags=tags, alias=alias, metrics=metrics, limit=limit
            )
        )

    def audit(self, model: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """The audit log, oldest first: who did what to which version, when and why.

        ``details`` holds the rest as JSON text (for a rollback: its deployment,
        ``from_version`` and ``to_version``).
        """
        sql = (
            "SELECT id, happened_at, actor, os_user, action, model, version, from_value, "
            "to_value, reason, details FROM audit"
        )
        params: list[Any] = []
        if model is not None:
            sql += " WHERE model = ?"
            params.append(query.check_name(model))
        sql += " ORDER BY id"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise InvalidArgument(f"limit must be a non-negative integer, got {limit!r}")
            sql = f"SELECT * FROM ({sql} DESC LIMIT {limit}) ORDER BY id"
        return self._store.query_df(sql, params)

    def remove_orphan_blobs(
        self, *, older_than: float = 3600.0, dry_run: bool = False
    ) -> list[str]:
        """Delete artifact blobs no version uses that are older than ``older_than`` seconds
        (left by registrations killed before they were recorded); returns their digests.

        The age keeps blobs of registrations still running in other processes; pass
        ``dry_run=True`` to see what would go.
        """
        from .registry import used_blobs

        if (
            isinstance(older_than, bool)
            or not isinstance(older_than, int | float)
            or not (older_than >= 0)
        ):
            raise InvalidArgument(f"older_than must be seconds >= 0, got {older_than!r}")
        used = self._store.read(lambda con: used_blobs(con, self.artifacts.uri))
        doomed = self.artifacts.orphans(used, float(older_than))
        if not dry_run:
            self.artifacts.discard(doomed)
        return doomed

    # -- policy --------------------------------------------------------------------------

    def set_policy(self, policy: Policy | None) -> Workspace:
        """The default promotion policy for models that have none of their own."""
        if policy is not None and not isinstance(policy, Policy):
            raise InvalidArgument(f"expected mlops_nb.Policy or None, got {type(policy).__name__}")

        def write(con: duckdb.DuckDBPyConnection) -> None:
            if policy is None:
                con.execute("DELETE FROM meta WHERE key = 'policy'")
            else:
                con.execute("INSERT OR REPLACE INTO meta VALUES ('policy', ?)", [policy.to_json()])
            self._audit(
                con, "policy", None, None, None, policy.to_json() if policy else None, None, None
            )

        self._store.write(write)
        return self

    @property
    def policy(self) -> Policy | None:
        row = self._store.read(
            lambda con: con.execute("SELECT value FROM meta WHERE key = 'policy'").fetchone()
        )
        return Policy.from_json(row[0]) if row else None

    def _policy_for(self, con: duckdb.DuckDBPyConnection, model: str) -> Policy | None:
        row = con.execute("SELECT policy FROM models WHERE name = ?", [model]).fetchone()
        if row and row[0]:
            return Policy.from_json(row[0])
        ws_row = con.execute("SELECT value FROM meta WHERE key = 'policy'").fetchone()
        return Policy.from_json(ws_row[0]) if ws_row else None

    # -- events --------------------------------------------------------------------------

    def on(self, event: str, fn: Callback) -> Callback:
        """Call ``fn(event)`` after each ``event`` in this process ('*' for all)."""
        return self.events.on(event, fn)

    def off(self, event: str, fn: Callback) -> None:
        self.events.off(event, fn)

    def add_webhook(self, url: str, *, secret: str, events: Sequence[str] = ("*",)) -> int:
        """POST signed JSON to ``url`` for ``events``; returns the webhook id."""
        check_webhook_url(url)
        if not isinstance(secret, str) or len(secret) < 8:
            raise InvalidArgument("webhook secret must be a string of at least 8 characters")
        names = [events] if isinstance(events, str) else list(events)
        for name in names:
            check_event_name(name)

        def write(con: duckdb.DuckDBPyConnection) -> int:
            row = con.execute(
                "INSERT INTO webhooks (url, secret, events, created_at) VALUES (?, ?, ?, ?) "
                "RETURNING id",
                [url, secret, names, self.now()],
            ).fetchone()
            assert row is not None
            self._audit(con, "webhook_added", None, None, None, url, None, {"events": names})
            return int(row[0])

        return self._store.write(write)

    def remove_webhook(self, webhook_id: int) -> None:
        def write(con: duckdb.DuckDBPyConnection) -> None:
            row = con.execute(
                "DELETE FROM webhooks WHERE id = ? RETURNING url", [webhook_id]
            ).fetchone()
            if row is None:
                raise InvalidArgument(f"no webhook with id {webhook_id}; see ws.webhooks()")
            self._audit(con, "webhook_removed", None, None, row[0], None, None, None)

        self._store.write(write)

    def webhooks(self) -> pd.DataFrame:
        return self._store.query_df("SELECT id, url, events, created_at FROM webhooks ORDER BY id")

    def webhook_deliveries(self) -> pd.DataFrame:
        return self._store.query_df(
            "SELECT d.id, d.webhook_id, w.url, d.event, d.delivered_at, d.attempts, "
            "d.status_code, d.ok, d.error FROM deliveries d "
            "LEFT JOIN webhooks w ON w.id = d.webhook_id ORDER BY d.id"
        )

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait for pending webhook deliveries; True when all finished."""
        return self.events.flush(timeout)

    def _emit(
        self, name: str, model: str | None, version: int | None, data: dict[str, Any]
    ) -> None:
        event = Event(name, model, version, self.actor(), self.now(), data)
        self.events.run_callbacks(event)

        def due(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], list[tuple[str, str]]]:
            hooks = con.execute(
                "SELECT id, url, secret FROM webhooks WHERE list_contains(events, ?) "
                "OR list_contains(events, '*') ORDER BY id",
                [name],
            ).fetchall()
            return hooks, _subscribed(con, name)

        hooks, subscribed = self._store.read(due)
        for hook_id, url, secret in hooks:
            self.events.submit(functools.partial(self._deliver, hook_id, url, secret, event))
        if subscribed:
            from .pipelines.subscriptions import deliver

            deliver(self, event, subscribed)

    def _deliver(self, hook_id: int, url: str, secret: str, event: Event) -> None:
        result = post_signed(url, secret, event)
        row = [hook_id, event.name, self.now(), result.attempts, result.status_code, result.ok,
               result.error]  # fmt: skip
        record_delivery(self._store, row, self._pending_deliveries)

    @property
    def _pending_deliveries(self) -> Path | None:
        return None if self._store.memory else Path(f"{self._store.path}.deliveries-pending.jsonl")

    def _audit(
        self,
        con: duckdb.DuckDBPyConnection,
        action: str,
        model: str | None,
        version: int | None,
        from_value: str | None,
        to_value: str | None,
        reason: str | None,
        details: dict[str, Any] | None,
    ) -> None:
        # Inside a pipeline stage every registry action names the run as its lineage.
        pipeline_run = os.environ.get("MLOPS_NB_PIPELINE_RUN")
        if pipeline_run:
            details = {**(details or {}), "pipeline_run": pipeline_run}
        con.execute(
            "INSERT INTO audit (happened_at, actor, os_user, action, model, version, "
            "from_value, to_value, reason, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                self.now(),
                self.actor(),
                self.os_user(),
                action,
                model,
                version,
                from_value,
                to_value,
                reason,
                json.dumps(details) if details else None,
            ],
        )

    # -- lifetime and display ------------------------------------------------------------

    def close(self) -> None:
        """Deliver pending webhooks and release the database file."""
        self.events.close()
        self._store.close()
        for cleanup in (self._tmp, self._tmp_logs):
            if cleanup is not None:
                cleanup()
        self._tmp = self._tmp_logs = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workspace {self.path}>"

    def view(self) -> RegistryView:
        """A live registry view of every model: stages, aliases, metrics, actions."""
        from .widgets.registry import RegistryView

        return RegistryView(self)

    def _repr_html_(self) -> str:
        return f"<div><b>Workspace</b> {render._fmt(self.path)}{render.models_table(self.models())}</div>"


def open(
    path: str | Path = "mlops.duckdb",
    *,
    artifacts: str | None = None,
    logs: str | Path | None = None,
    s3_options: dict[str, Any] | None = None,
    busy_timeout: float = 30.0,
    linger: float = 0.2,
    create: bool | None = None,
) -> Workspace:
    """Open (or create) a workspace.

    ``path`` is a DuckDB file or ``":memory:"``. A path that does not exist becomes a new
    workspace (logged as a warning, so a typo shows) unless ``create=False``, which
    refuses it with :class:`~mlops_nb.errors.WorkspaceMissing`; ``create=True`` creates
    quietly. A DuckDB file of another application is refused unchanged
    (:class:`~mlops_nb.errors.NotAWorkspace`).
    ``artifacts`` is a folder or ``s3://bucket/prefix``; by default a folder beside the
    file, named ``<stem>-artifacts``. ``logs`` is the folder of prediction logs (Parquet),
    by default ``<stem>-logs`` beside the file. ``s3_options`` go to ``boto3.client("s3", ...)``
    (``endpoint_url``, credentials). A writer blocked by another process retries for up to
    ``busy_timeout`` seconds; the file is released after ``linger`` idle seconds.
    """
    return Workspace(
        path,
        artifacts=artifacts,
        logs=logs,
        s3_options=s3_options,
        busy_timeout=busy_timeout,
        linger=linger,
        create=create,
    )


def _subscribed(con: duckdb.DuckDBPyConnection, event: str) -> list[tuple[str, str]]:
    """(kind, config) of the stored notifier subscriptions to ``event``; checked for the
    table first, since a failed statement would abort a caller's transaction."""
    # fetchall: a result left unfinished would block the connection's next statement.
    (exists,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'event_notifiers' "
        "AND database_name = current_database() AND schema_name = current_schema()"
    ).fetchall()
    if not exists[0]:
        return []
    rows = con.execute(
        "SELECT kind, config FROM event_notifiers WHERE list_contains(events, ?) "
        "OR list_contains(events, '*') ORDER BY id",
        [event],
    ).fetchall()
    return [(str(k), str(c)) for k, c in rows]
