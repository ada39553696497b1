"""A deployment's persisted state and the one way it changes: compare-and-set.

The ``deployments`` row holds the desired state (``config``), the rollout in progress or
last finished (``rollout``), a standing ``watch`` and a ``generation`` number. Every
writer (``deploy()``, ``scale()``, ``rollback()``, ``pause()``, the controller) reads a
:class:`Record`, computes a :class:`Change` and commits it with :func:`commit`, which
applies it only if the generation is still the one read. A writer that lost the race gets
:class:`~mlops_nb.errors.DeploymentConflict` naming what changed, and nothing of its
change is written (the revision statuses, checks and audit rows of a change go in the same
transaction).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import DeploymentConflict, DeploymentNotFound
from .analysis import Check
from .target import DesiredState

if TYPE_CHECKING:
    import duckdb

    from ..workspace import Workspace

TERMINAL = ("succeeded", "aborted", "failed")


@dataclass(frozen=True)
class Record:
    name: str
    model: str
    target: str
    endpoint: str | None
    admin: dict[str, Any] | None
    replicas: int
    status: str
    desired: DesiredState
    generation: int
    rollout: dict[str, Any] | None
    watch: dict[str, Any] | None
    changed: str | None

    @property
    def active(self) -> dict[str, Any] | None:
        """The rollout in progress, if any."""
        r = self.rollout
        return r if r is not None and r.get("phase") not in TERMINAL else None


@dataclass
class Change:
    """Everything one step writes, in one transaction."""

    why: str
    desired: DesiredState | None = None
    rollout: dict[str, Any] | bool | None = False  # False: unchanged
    watch: dict[str, Any] | bool | None = False
    replicas: int | None = None
    status: str | None = None
    endpoint: str | None = None
    admin: dict[str, Any] | None = None
    # (revision, version, digest, strategy, status, note): inserted in the same transaction.
    new_revisions: list[tuple[int, int, str, str, str, str | None]] = field(default_factory=list)
    revisions: list[tuple[int, str, str | None, bool]] = field(default_factory=list)
    checks: list[tuple[int | None, int | None, Check, str, int | None]] = field(
        default_factory=list
    )
    audit: list[tuple[str, int | None, str | None, str | None, str | None, dict[str, Any]]] = field(
        default_factory=list
    )
    events: list[tuple[str, int | None, dict[str, Any]]] = field(default_factory=list)


def read(ws: Workspace, name: str) -> Record:
    def run(con: duckdb.DuckDBPyConnection) -> Record:
        row = con.execute(
            "SELECT name, model, target, endpoint, admin, replicas, status, config, generation, "
            "rollout, watch, changed FROM deployments WHERE name = ?", [name]).fetchone()  # fmt: skip
        if row is None:
            names = [
                r[0] for r in con.execute("SELECT name FROM deployments ORDER BY name").fetchall()
            ]
            raise DeploymentNotFound(
                f"no deployment named {name!r} (deployments: {', '.join(names) or 'none'}); "
                "deploy one with ws.model(name).version(n).deploy()"
            )
        config = json.loads(row[7])
        desired = DesiredState.from_dict(config) if "name" in config else DesiredState(name, row[1])
        return Record(
            name=row[0], model=row[1], target=row[2], endpoint=row[3],
            admin=json.loads(row[4]) if row[4] else None, replicas=int(row[5]), status=row[6],
            desired=desired, generation=int(row[8] or 0),
            rollout=json.loads(row[9]) if row[9] else None,
            watch=json.loads(row[10]) if row[10] else None, changed=row[11],
        )  # fmt: skip

    return ws._store.read(run)


def commit(ws: Workspace, record: Record, change: Change) -> Record:
    """Apply ``change`` if ``record.generation`` is still current; the new record."""
    now = ws.now()

    def write(con: duckdb.DuckDBPyConnection) -> int:
        row = con.execute("SELECT generation, changed FROM deployments WHERE name = ?",
                          [record.name]).fetchone()  # fmt: skip
        if row is None:
            raise DeploymentNotFound(f"deployment {record.name!r} was removed meanwhile")
        if int(row[0] or 0) != record.generation:
            raise DeploymentConflict(
                f"deployment {record.name!r} changed meanwhile (generation {record.generation} "
                f"-> {row[0]}: {row[1]}); nothing of '{change.why}' was applied. Look at "
                "dep.status() and try again if it still makes sense"
            )
        sets = ["generation = generation + 1", "changed = ?", "updated_at = ?"]
        params: list[Any] = [change.why, now]
        if change.desired is not None:
            sets.append("config = ?")
            params.append(json.dumps(change.desired.to_dict()))
        for column, value in (("rollout", change.rollout), ("watch", change.watch)):
            if value is not False:
                sets.append(f"{column} = ?")
                params.append(None if value is None else json.dumps(value, default=str))
        for column, value2 in (("replicas", change.replicas), ("status", change.status),
                               ("endpoint", change.endpoint)):  # fmt: skip
            if value2 is not None:
                sets.append(f"{column} = ?")
                params.append(value2)
        if change.admin is not None:
            sets.append("admin = ?")
            params.append(json.dumps(change.admin))
        con.execute(f"UPDATE deployments SET {', '.join(sets)} WHERE name = ?",
                    [*params, record.name])  # fmt: skip
        for revision, version, digest, strategy, status, note in change.new_revisions:
            con.execute(
                "INSERT INTO revisions (deployment, revision, version, strategy, status, "
                "created_at, created_by, note, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [record.name, revision, version, strategy, status, now, ws.actor(), note, digest],
            )
        for revision, status, note, completed in change.revisions:
            con.execute(
                "UPDATE revisions SET status = ?, note = coalesce(?, note), completed_at = "
                "CASE WHEN ? THEN coalesce(completed_at, ?) ELSE completed_at END "
                "WHERE deployment = ? AND revision = ?",
                [status, note, completed, now, record.name, revision],
            )
        for checked, checked_version, check, decision, rollout in change.checks:
            evidence = {**check.evidence, "breaches": list(check.breaches)}
            con.execute(
                "INSERT INTO guard_checks (deployment, revision, version, checked_at, verdict, "
                "decision, evidence, rollout) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [record.name, checked, checked_version, now, check.verdict, decision,
                 json.dumps(evidence, default=str), rollout],
            )  # fmt: skip
        for action, audited, from_value, to_value, reason, details in change.audit:
            ws._audit(con, action, record.model, audited, from_value, to_value, reason,
                      {"deployment": record.name, **details})  # fmt: skip
        return record.generation + 1

    generation = ws._store.write(write)
    for event, version, data in change.events:
        ws._emit(event, record.model, version, {"deployment": record.name, **data})
    new = replace(record, generation=generation, changed=change.why)
    if change.desired is not None:
        new = replace(new, desired=change.desired)
    if change.rollout is not False:
        new = replace(new, rollout=change.rollout if isinstance(change.rollout, dict) else None)
    if change.watch is not False:
        new = replace(new, watch=change.watch if isinstance(change.watch, dict) else None)
    if change.status is not None:
        new = replace(new, status=change.status)
    if change.replicas is not None:
        new = replace(new, replicas=change.replicas)
    return new


def next_revision(ws: Workspace, name: str) -> int:
    """The number the next revision of ``name`` gets (checked again at commit)."""
    row = ws._store.read(lambda con: con.execute(
        "SELECT coalesce(max(revision), 0) + 1 FROM revisions WHERE deployment = ?", [name]
    ).fetchone())  # fmt: skip
    return int(row[0]) if row else 1
