"""Deployments and their revisions, and the rollouts that move traffic between them.

A deployment is a named endpoint serving one model. Each ``deploy()`` of a version makes
a new *revision* (numbered per deployment, like ``deployment.kubernetes.io/revision``);
``rollback()`` makes a new revision from an older one's version, as ``kubectl rollout
undo`` does. The router's configuration (revisions, replicas, traffic weights, routing
key) is recorded in the workspace with every change, so a new kernel re-attaches.

Strategies (see :mod:`.strategies`): ``Rolling`` (default) replaces replicas one at a time,
a new one ready before an old one stops; ``BlueGreen`` starts a full new set and switches
all traffic in one step; ``Canary`` shifts traffic in steps, a guard deciding at each
step to go on, hold or roll back (it runs on a background thread: ``dep.wait()``,
``dep.pause()``, ``dep.resume()``, ``dep.promote()``); ``ABTest`` splits traffic between
versions by weight, sticky on a request header.
"""

from __future__ import annotations

import json
import threading
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import query
from ..errors import DeploymentError, DeploymentNotFound, InvalidArgument
from .guard import Check
from .local import LocalRouter
from .rollout import (
    ROLLOUTS,
    WATCHERS,
    RolloutState,
    ab_test,
    create,
    record_deploy,
    run_guard,
    start_canary,
    switch,
)
from .strategies import ABTest, BlueGreen, Canary, Guard, Rolling, Strategy, describe

if TYPE_CHECKING:
    import duckdb

    from ..registry import ModelVersion
    from ..workspace import Workspace

TARGETS = ("local",)


class Deployment:
    """A handle on a named deployment (lazy: nothing is read until used)."""

    def __init__(self, ws: Workspace, name: str) -> None:
        self._ws = ws
        self.name = query.check_name(name, "deployment")

    # -- records -------------------------------------------------------------------------

    def _row(self) -> dict[str, Any]:
        def run(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            cur = con.execute("SELECT * FROM deployments WHERE name = ?", [self.name])
            row = cur.fetchone()
            if row is None:
                names = [
                    r[0]
                    for r in con.execute("SELECT name FROM deployments ORDER BY name").fetchall()
                ]
                raise DeploymentNotFound(
                    f"no deployment named {self.name!r} (deployments: {', '.join(names) or 'none'})"
                )
            out = dict(zip([d[0] for d in cur.description], row, strict=True))
            out["admin"] = json.loads(out["admin"]) if out["admin"] else None
            out["config"] = json.loads(out["config"])
            return out

        return self._ws._store.read(run)

    @property
    def model(self) -> str:
        return str(self._row()["model"])

    @property
    def endpoint(self) -> str:
        return str(self._row()["endpoint"])

    def _key(self) -> tuple[str, str]:
        return (self._ws._store.path, self.name)

    def _router(self) -> LocalRouter:
        row = self._row()
        if row["status"] == "deleted":
            raise DeploymentError(f"deployment {self.name!r} was deleted; deploy it again")
        return LocalRouter.attach(row["admin"])

    def _save(self, config: dict[str, Any], replicas: int | None = None) -> None:
        ws = self._ws

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(
                "UPDATE deployments SET config = ?, replicas = coalesce(?, replicas), "
                "updated_at = ? WHERE name = ?",
                [json.dumps(config), replicas, ws.now(), self.name],
            )

        ws._store.write(write)

    def _configure(self, config: dict[str, Any], replicas: int | None = None) -> None:
        self._router().configure(config)
        self._save(config, replicas)

    def _set_revision_status(self, revision: int, status: str, note: str | None = None) -> None:
        self._ws._store.write(
            lambda con: con.execute(
                "UPDATE revisions SET status = ?, note = coalesce(?, note) WHERE deployment = ? "
                "AND revision = ?",
                [status, note, self.name, revision],
            )
        )

    def revisions(self) -> pd.DataFrame:
        """Every revision, oldest first, with its version, strategy and outcome."""
        return self._ws._store.query_df(
            "SELECT revision, version, strategy, status, created_at, created_by, note "
            "FROM revisions WHERE deployment = ? ORDER BY revision",
            [self.name],
        )

    def checks(self) -> pd.DataFrame:
        """Every guard check with its verdict, decision and evidence."""
        return self._ws._store.query_df(
            "SELECT id, checked_at, revision, version, verdict, decision, evidence "
            "FROM guard_checks WHERE deployment = ? ORDER BY id",
            [self.name],
        )

    # -- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Revision, replicas ready/desired, traffic per version, rollout progress, health.

        ``state`` is ``healthy``, ``progressing`` (a rollout is running), ``degraded``
        (fewer ready replicas than desired), ``stale`` (the router process is gone) or
        ``deleted``.
        """
        row = self._row()
        rollout = ROLLOUTS.get(self._key())
        base = {"name": self.name, "model": row["model"], "endpoint": row["endpoint"],
                "rollout": rollout.public() if rollout else None}  # fmt: skip
        if row["status"] == "deleted":
            return {**base, "state": "deleted"}
        router = LocalRouter.attach(row["admin"])
        if not router.alive():
            return {**base, "state": "stale", "message": "router process is gone; redeploy"}
        state = router.state()
        revs = state["revisions"]
        served = [r for r in revs if r["weight"] > 0 and r["ready"] > 0]
        total = sum(r["weight"] for r in served) or 1
        traffic: dict[int, float] = {}
        for r in served:
            traffic[r["version"]] = traffic.get(r["version"], 0.0) + 100.0 * r["weight"] / total
        main = max(served or revs, key=lambda r: (r["weight"], r["revision"])) if revs else None
        ready = sum(r["ready"] for r in revs)
        desired = sum(r["desired"] for r in revs)
        if rollout and rollout.phase not in ("done", "rolled_back", "failed"):
            health = "progressing"
        elif ready < desired:
            health = "degraded"
        else:
            health = "healthy"
        return {
            **base, "state": health,
            "revision": main["revision"] if main else None,
            "version": main["version"] if main else None,
            "replicas": {"ready": ready, "desired": desired},
            "traffic": {v: round(p, 1) for v, p in sorted(traffic.items())},
            "revisions": [{k: r[k] for k in ("revision", "version", "weight", "ready", "desired",
                                             "restarts")} for r in revs],
        }  # fmt: skip

    def __repr__(self) -> str:
        return f"<Deployment {self.name}>"

    def _repr_html_(self) -> str:
        s = self.status()
        rows = "".join(
            f"<tr><td>r{r['revision']}</td><td>v{r['version']}</td><td>{r['weight']}</td>"
            f"<td>{r['ready']}/{r['desired']}</td><td>{r['restarts']}</td></tr>"
            for r in s.get("revisions", [])
        )
        return (
            f"<div><b>Deployment {escape(self.name)}</b> · {escape(str(s['state']))} · "
            f"<code>{escape(str(s['endpoint']))}</code><table><tr><th>revision</th>"
            f"<th>version</th><th>weight</th><th>ready</th><th>restarts</th></tr>{rows}</table></div>"
        )

    # -- rollout control -----------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> Deployment:
        """Block until a running rollout ends; re-raises its error."""
        rollout = ROLLOUTS.get(self._key())
        if rollout is None or rollout.thread is None:
            return self
        rollout.thread.join(timeout)
        if rollout.thread.is_alive():
            raise DeploymentError(f"rollout of {self.name} still running after {timeout}s")
        if rollout.error is not None:
            raise rollout.error
        return self

    def _rollout(self) -> RolloutState:
        rollout = ROLLOUTS.get(self._key())
        if rollout is None or rollout.phase in ("done", "rolled_back", "failed"):
            raise DeploymentError(f"deployment {self.name} has no rollout in progress")
        return rollout

    def pause(self) -> Deployment:
        """Hold the running canary at its current step."""
        self._rollout().paused.set()
        return self

    def resume(self) -> Deployment:
        self._rollout().paused.clear()
        return self

    def promote(self) -> Deployment:
        """Move a paused or pausing canary on to its next step now."""
        rollout = self._rollout()
        rollout.paused.clear()
        rollout.skip.set()
        return self

    # -- actions -------------------------------------------------------------------------

    def scale(self, replicas: int) -> Deployment:
        """Change the replica count of the serving revision(s)."""
        _check_replicas(replicas)
        config = self._row()["config"]
        for entry in config["revisions"]:
            if entry["weight"] > 0:
                entry["replicas"] = replicas
        self._configure(config, replicas)
        router = self._router()
        for entry in config["revisions"]:
            if entry["weight"] > 0:
                router.wait_ready(entry["revision"], replicas, timeout=120)
        self._ws._store.write(
            lambda con: self._ws._audit(
                con, "scale", self.model, None, None, str(replicas), None, {"deployment": self.name}
            )
        )
        return self

    def rollback(self, to: int | None = None, *, reason: str | None = None) -> Deployment:
        """Back to the previous revision's version (or revision ``to``), as a new revision.

        A canary in progress is aborted instead: its traffic returns to the stable
        revision at once.
        """
        rollout = ROLLOUTS.get(self._key())
        if rollout and rollout.phase not in ("done", "rolled_back", "failed") and to is None:
            rollout.abort.set()
            self.wait(timeout=120)
            return self
        revisions = self.revisions()
        if revisions.empty:
            raise DeploymentError(f"deployment {self.name} has no revisions")
        config = self._row()["config"]
        serving = {e["revision"] for e in config["revisions"] if e["weight"] > 0}
        if to is None:
            older = revisions[~revisions["revision"].isin(serving)]
            older = older[older["revision"] < max(serving)] if serving else older
            if older.empty:
                raise DeploymentError(
                    f"deployment {self.name} has no earlier revision to go back to"
                )
            target = older.iloc[-1]
        else:
            match = revisions[revisions["revision"] == to]
            if match.empty:
                raise InvalidArgument(
                    f"deployment {self.name} has no revision {to}; see dep.revisions()"
                )
            target = match.iloc[0]
        version = int(target["version"])
        v = self._ws.model(self.model).version(version)
        new_rev = switch(self, v, BlueGreen(), f"rollback to r{int(target['revision'])}",
                          self._row()["replicas"])  # fmt: skip
        self._ws._store.write(lambda con: self._ws._audit(
            con, "rollback", self.model, version, f"r{max(serving) if serving else '-'}",
            f"r{new_rev}", reason, {"deployment": self.name}))  # fmt: skip
        self._ws._emit("rolled_back", self.model, version,
                       {"deployment": self.name, "revision": new_rev, "reason": reason})  # fmt: skip
        return self

    def watch(self, guard: Guard) -> Deployment:
        """Run ``guard`` on a background thread; on a breach roll back to the previous
        revision. ``unwatch()`` stops it."""
        if not isinstance(guard, Guard):
            raise InvalidArgument(f"expected mlops_nb.Guard, got {type(guard).__name__}")
        self.unwatch()
        stop = threading.Event()
        WATCHERS[self._key()] = stop
        thread = threading.Thread(target=run_guard, args=(self, guard, stop), daemon=True,
                                  name=f"mlops-nb-guard-{self.name}")  # fmt: skip
        thread.start()
        return self

    def unwatch(self) -> None:
        stop = WATCHERS.pop(self._key(), None)
        if stop is not None:
            stop.set()

    def delete(self) -> None:
        """Stop the router and its replicas; the records stay, marked deleted."""
        rollout = ROLLOUTS.get(self._key())
        if rollout is not None:
            rollout.abort.set()
        self.unwatch()
        row = self._row()
        if row["status"] != "deleted" and row["admin"]:
            LocalRouter.attach(row["admin"]).stop()
        if rollout is not None and rollout.thread is not None:
            rollout.thread.join(timeout=30)
        ROLLOUTS.pop(self._key(), None)
        ws = self._ws

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("UPDATE deployments SET status = 'deleted', updated_at = ? WHERE name = ?",
                        [ws.now(), self.name])  # fmt: skip
            con.execute("UPDATE revisions SET status = 'stopped' WHERE deployment = ? AND "
                        "status IN ('active', 'canary', 'standby')", [self.name])  # fmt: skip
            ws._audit(con, "delete_deployment", row["model"], None, None, None, None,
                      {"deployment": self.name})  # fmt: skip

        ws._store.write(write)

    def flush_logs(self) -> pd.DataFrame:
        """Ingest what the replicas have spooled so far into the model's prediction log."""
        return self._ws.monitor(self.model).ingest(self._ws.spool_root)

    def record_check(self, revision: int | None, version: int, check: Check, decision: str) -> None:
        ws = self._ws
        evidence = {**check.evidence, "breaches": list(check.breaches)}
        ws._store.write(lambda con: con.execute(
            "INSERT INTO guard_checks (deployment, revision, version, checked_at, verdict, "
            "decision, evidence) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [self.name, revision, version, ws.now(), check.verdict, decision,
             json.dumps(evidence, default=str)],
        ))  # fmt: skip


def _check_replicas(replicas: object) -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 32:
        raise InvalidArgument(f"replicas must be an integer from 1 to 32, got {replicas!r}")
    return replicas


def deploy(
    v: ModelVersion, *, target: str = "local", replicas: int = 1, strategy: Strategy | None = None,
    name: str | None = None, timeout: float = 120.0,
) -> Deployment:  # fmt: skip
    """Serve a version: a new deployment, or a new revision of an existing one."""
    if target not in TARGETS:
        raise InvalidArgument(f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    _check_replicas(replicas)
    strategy = strategy if strategy is not None else Rolling()
    if not isinstance(strategy, Rolling | BlueGreen | Canary | ABTest):
        raise InvalidArgument(
            f"strategy must be mlops_nb.Rolling, BlueGreen, Canary or ABTest, got {strategy!r}"
        )
    ws = v._ws
    dep = Deployment(ws, name or v.model)
    number = v.number
    _ = v.digest  # fails now, with a clear error, for an unknown version
    exists = ws._store.read(lambda con: con.execute(
        "SELECT status, model FROM deployments WHERE name = ?", [dep.name]).fetchone())  # fmt: skip
    if exists and exists[1] != v.model:
        raise InvalidArgument(
            f"deployment {dep.name!r} serves model {exists[1]!r}, not {v.model!r}"
        )
    running = ROLLOUTS.get(dep._key())
    if running and running.phase not in ("done", "rolled_back", "failed"):
        raise DeploymentError(
            f"a {running.strategy} rollout of {dep.name} is in progress; wait(), promote() or "
            "rollback() it first"
        )
    if not exists or exists[0] == "deleted":
        if isinstance(strategy, ABTest):
            raise InvalidArgument(
                "an A/B test needs a running deployment; deploy one version first"
            )
        return create(dep, v, replicas, timeout)
    if not dep._router().alive():
        raise DeploymentError(
            f"deployment {dep.name!r} is stale (its router process is gone): "
            f"ws.deployment({dep.name!r}).delete(), then deploy again"
        )
    if isinstance(strategy, ABTest):
        return ab_test(dep, strategy, replicas, timeout)
    if isinstance(strategy, Canary):
        return start_canary(dep, v, strategy, replicas, timeout)
    rev = switch(dep, v, strategy, None, replicas, timeout=timeout)
    record_deploy(dep, number, rev, describe(strategy))
    return dep


def deployments(ws: Workspace) -> pd.DataFrame:
    rows = ws._store.query_df(
        "SELECT name, model, target, endpoint, replicas, status, config, updated_at "
        "FROM deployments ORDER BY name"
    )
    states: list[str] = []
    versions: list[str] = []
    for rec in rows.to_dict("records"):
        config = json.loads(rec["config"])
        serving = sorted({e["version"] for e in config["revisions"] if e["weight"] > 0})
        versions.append(", ".join(f"v{n}" for n in serving))
        states.append("deleted" if rec["status"] == "deleted" else
                      Deployment(ws, rec["name"]).status()["state"])  # fmt: skip
    return rows.drop(columns=["config", "status"]).assign(versions=versions, state=states)
