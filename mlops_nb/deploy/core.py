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
import tempfile
import threading
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import query
from ..errors import DeploymentError, DeploymentNotFound, InvalidArgument
from ..serve.spec import ServeSpec
from .guard import Check, analyse
from .local import LocalRouter
from .strategies import ABTest, BlueGreen, Canary, Guard, Rolling, Strategy, describe

if TYPE_CHECKING:
    import duckdb

    from ..registry import ModelVersion
    from ..workspace import Workspace

TARGETS = ("local",)


@dataclass
class RolloutState:
    """Progress of a canary (or a blue-green standby) running on a background thread."""

    strategy: str
    revision: int
    version: int
    stable: list[int]
    step: int = 0
    weight: int = 0
    phase: str = "starting"  # starting, progressing, paused, holding, done, rolled_back, failed
    message: str = ""
    paused: threading.Event = field(default_factory=threading.Event)
    skip: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: BaseException | None = None

    def public(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "revision": self.revision, "version": self.version,
                "step": self.step, "weight": self.weight, "phase": self.phase,
                "paused": self.paused.is_set(), "message": self.message}  # fmt: skip


# Rollouts running in this process, by (workspace path, deployment name).
_ROLLOUTS: dict[tuple[str, str], RolloutState] = {}
_WATCHERS: dict[tuple[str, str], threading.Event] = {}


def _entry(revision: int, version: int, spec: Path, replicas: int, weight: int) -> dict[str, Any]:
    return {"revision": revision, "version": version, "spec": str(spec), "replicas": replicas,
            "weight": weight}  # fmt: skip


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
        rollout = _ROLLOUTS.get(self._key())
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
        rollout = _ROLLOUTS.get(self._key())
        if rollout is None or rollout.thread is None:
            return self
        rollout.thread.join(timeout)
        if rollout.thread.is_alive():
            raise DeploymentError(f"rollout of {self.name} still running after {timeout}s")
        if rollout.error is not None:
            raise rollout.error
        return self

    def _rollout(self) -> RolloutState:
        rollout = _ROLLOUTS.get(self._key())
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
        rollout = _ROLLOUTS.get(self._key())
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
        new_rev = _switch(self, v, BlueGreen(), f"rollback to r{int(target['revision'])}",
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
        _WATCHERS[self._key()] = stop
        thread = threading.Thread(target=run_guard, args=(self, guard, stop), daemon=True,
                                  name=f"mlops-nb-guard-{self.name}")  # fmt: skip
        thread.start()
        return self

    def unwatch(self) -> None:
        stop = _WATCHERS.pop(self._key(), None)
        if stop is not None:
            stop.set()

    def delete(self) -> None:
        """Stop the router and its replicas; the records stay, marked deleted."""
        rollout = _ROLLOUTS.get(self._key())
        if rollout is not None:
            rollout.abort.set()
        self.unwatch()
        row = self._row()
        if row["status"] != "deleted" and row["admin"]:
            LocalRouter.attach(row["admin"]).stop()
        if rollout is not None and rollout.thread is not None:
            rollout.thread.join(timeout=30)
        _ROLLOUTS.pop(self._key(), None)
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


def _state_dir(ws: Workspace, name: str) -> Path:
    return Path(ws.deploy_root) / name


def _spec(ws: Workspace, v: ModelVersion, state_dir: Path) -> Path:
    spec = ServeSpec.of(v, spool=str(ws.spool_root), flush_seconds=2.0)
    state_dir.mkdir(parents=True, exist_ok=True)
    return spec.write(state_dir / f"spec-v{spec.version}.json")


def _new_revision(dep: Deployment, version: int, strategy: str, status: str) -> int:
    ws = dep._ws

    def write(con: duckdb.DuckDBPyConnection) -> int:
        row = con.execute("SELECT coalesce(max(revision), 0) + 1 FROM revisions WHERE deployment = ?",
                          [dep.name]).fetchone()  # fmt: skip
        revision = int(row[0]) if row else 1
        con.execute("INSERT INTO revisions VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                    [dep.name, revision, version, strategy, status, ws.now(), ws.actor()])  # fmt: skip
        return revision

    return ws._store.write(write)


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
    running = _ROLLOUTS.get(dep._key())
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
        return _create(dep, v, replicas, timeout)
    if not dep._router().alive():
        raise DeploymentError(
            f"deployment {dep.name!r} is stale (its router process is gone): "
            f"ws.deployment({dep.name!r}).delete(), then deploy again"
        )
    if isinstance(strategy, ABTest):
        return _ab_test(dep, strategy, replicas, timeout)
    if isinstance(strategy, Canary):
        return _start_canary(dep, v, strategy, replicas, timeout)
    rev = _switch(dep, v, strategy, None, replicas, timeout=timeout)
    _record_deploy(dep, number, rev, describe(strategy))
    return dep


def _create(dep: Deployment, v: ModelVersion, replicas: int, timeout: float) -> Deployment:
    ws = dep._ws
    state_dir = _state_dir(ws, dep.name)
    spec = _spec(ws, v, state_dir)
    router = LocalRouter.start(state_dir)
    try:
        entry = _entry(0, v.number, spec, replicas, 100)
        config: dict[str, Any] = {"model": v.model, "routing": {"mode": "weighted"},
                                  "revisions": [entry]}  # fmt: skip
        now = ws.now()

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("DELETE FROM deployments WHERE name = ?", [dep.name])
            con.execute(
                "INSERT INTO deployments VALUES (?, ?, 'local', ?, ?, ?, ?, 'active', ?, ?, ?)",
                [dep.name, v.model, router.endpoint, router.pid, json.dumps(router.admin()),
                 replicas, json.dumps(config), now, now],
            )  # fmt: skip

        ws._store.write(write)
        revision = _new_revision(dep, v.number, "create", "active")
        entry["revision"] = revision
        dep._configure(config)
        router.wait_ready(revision, replicas, timeout)
    except BaseException:
        router.stop()

        def failed(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("UPDATE deployments SET status = 'deleted' WHERE name = ?", [dep.name])
            con.execute(
                "UPDATE revisions SET status = 'failed' WHERE deployment = ? AND status = 'active'",
                [dep.name],
            )

        ws._store.write(failed)
        raise
    _record_deploy(dep, v.number, revision, "create")
    return dep


def _record_deploy(dep: Deployment, version: int, revision: int, strategy: str) -> None:
    ws = dep._ws
    ws._store.write(lambda con: ws._audit(
        con, "deploy", dep.model, version, None, f"r{revision}", None,
        {"deployment": dep.name, "strategy": strategy}))  # fmt: skip
    ws._emit("deployed", dep.model, version,
             {"deployment": dep.name, "revision": revision, "strategy": strategy})  # fmt: skip


def _switch(
    dep: Deployment, v: ModelVersion, strategy: Rolling | BlueGreen, note: str | None,
    replicas: int, timeout: float = 120.0,
) -> int:  # fmt: skip
    """Replace every serving revision with a new revision of ``v`` (rolling or blue-green)."""
    ws = dep._ws
    router = dep._router()
    spec = _spec(ws, v, _state_dir(ws, dep.name))
    revision = _new_revision(dep, v.number, describe(strategy), "starting")
    config = dep._row()["config"]
    old = [e for e in config["revisions"]]
    try:
        if isinstance(strategy, Rolling) and len(old) == 1:
            _rolling(dep, router, config, old[0], _entry(revision, v.number, spec, 0, 0),
                     replicas, timeout)  # fmt: skip
        else:
            new = _entry(revision, v.number, spec, replicas, 0)
            config["revisions"].append(new)
            dep._configure(config)
            router.wait_ready(revision, replicas, timeout)
            for e in old:
                e["weight"] = 0
            new["weight"] = 100
            dep._configure(config)  # the switch: one assignment in the router
            config["revisions"] = [new]
            dep._configure(config, replicas)
    except BaseException:
        config["revisions"] = [e for e in config["revisions"] if e["revision"] != revision]
        for e in config["revisions"]:
            e["weight"] = e["weight"] or 100
        dep._configure(config)
        dep._set_revision_status(revision, "failed")
        raise
    for e in old:
        dep._set_revision_status(e["revision"], "superseded")
    dep._set_revision_status(revision, "active", note)
    return revision


def _rolling(
    dep: Deployment, router: LocalRouter, config: dict[str, Any], old: dict[str, Any],
    new: dict[str, Any], replicas: int, timeout: float,
) -> None:  # fmt: skip
    """maxSurge 1, maxUnavailable 0: start one new replica, wait for it, stop one old one."""
    config["revisions"].append(new)
    old_count = int(old["replicas"])
    for k in range(1, replicas + 1):
        new["replicas"] = k
        dep._configure(config)
        router.wait_ready(new["revision"], k, timeout)
        old_count = max(0, min(old_count, replicas - k))
        old["replicas"], old["weight"] = old_count, old_count
        new["weight"] = k
        if old_count == 0:
            config["revisions"] = [new]
            new["weight"] = 100
        dep._configure(config, replicas)


def _ab_test(dep: Deployment, ab: ABTest, replicas: int, timeout: float) -> Deployment:
    ws = dep._ws
    router = dep._router()
    config = dep._row()["config"]
    by_version = {e["version"]: e for e in config["revisions"]}
    entries = []
    for version, weight in ab.weights().items():
        v = ws.model(dep.model).version(version)
        entry = by_version.get(v.number)
        if entry is None:
            spec = _spec(ws, v, _state_dir(ws, dep.name))
            revision = _new_revision(dep, v.number, "abtest", "starting")
            entry = _entry(revision, v.number, spec, replicas, 0)
        entry["weight"] = weight
        entries.append(entry)
    starting = [e for e in entries if e["version"] not in by_version]
    pending = dict(config)
    pending["revisions"] = [*config["revisions"], *starting]
    dep._configure(pending)
    for e in starting:
        router.wait_ready(e["revision"], e["replicas"], timeout)
    config = {"model": dep.model, "routing": {"mode": "ab", "key": ab.key}, "revisions": entries}
    dep._configure(config)
    kept = {e["revision"] for e in entries}
    for e in pending["revisions"]:
        dep._set_revision_status(e["revision"], "active" if e["revision"] in kept else "superseded")
    ws._store.write(lambda con: ws._audit(
        con, "deploy", dep.model, None, None, json.dumps(ab.weights()), None,
        {"deployment": dep.name, "strategy": "abtest", "key": ab.key}))  # fmt: skip
    ws._emit("deployed", dep.model, None,
             {"deployment": dep.name, "strategy": "abtest", "split": ab.weights()})  # fmt: skip
    return dep


def _start_canary(
    dep: Deployment, v: ModelVersion, canary: Canary, replicas: int, timeout: float
) -> Deployment:
    ws = dep._ws
    router = dep._router()
    config = dep._row()["config"]
    stable = [e["revision"] for e in config["revisions"]]
    spec = _spec(ws, v, _state_dir(ws, dep.name))
    revision = _new_revision(dep, v.number, "canary", "canary")
    new = _entry(revision, v.number, spec, replicas, 0)
    config["revisions"].append(new)
    try:
        dep._configure(config)
        router.wait_ready(revision, replicas, timeout)
    except BaseException:
        config["revisions"].remove(new)
        dep._configure(config)
        dep._set_revision_status(revision, "failed")
        raise
    state = RolloutState("canary", revision, v.number, stable)
    _ROLLOUTS[dep._key()] = state
    _record_deploy(dep, v.number, revision, "canary")
    thread = threading.Thread(target=_run_canary, args=(dep, canary, state, replicas),
                              name=f"mlops-nb-canary-{dep.name}", daemon=True)  # fmt: skip
    state.thread = thread
    _set_weight(dep, state, canary.steps[0])
    thread.start()
    return dep


def _set_weight(dep: Deployment, state: RolloutState, weight: int) -> None:
    config = dep._row()["config"]
    stable = [e for e in config["revisions"] if e["revision"] in state.stable]
    for e in config["revisions"]:
        if e["revision"] == state.revision:
            e["weight"] = weight
    share = 100 - weight
    total = sum(max(e["weight"], 1) for e in stable) or 1
    for e in stable:
        e["weight"] = round(share * max(e["weight"], 1) / total) if share else 0
    if weight == 100:
        config["revisions"] = [e for e in config["revisions"] if e["revision"] == state.revision]
    dep._configure(config)
    state.weight = weight


def _run_canary(dep: Deployment, canary: Canary, state: RolloutState, replicas: int) -> None:
    guard = canary.guard
    try:
        for index, weight in enumerate(canary.steps):
            state.step = index
            if weight != state.weight:
                _set_weight(dep, state, weight)
            state.phase = "progressing"
            state.message = f"{weight}% of traffic on v{state.version}"
            if weight == 100:
                break
            if not _pause_step(dep, canary, guard, state):
                return
        dep._set_revision_status(state.revision, "active")
        for r in state.stable:
            dep._set_revision_status(r, "superseded")
        state.phase = "done"
        state.message = f"v{state.version} takes all traffic"
    except BaseException as e:  # keep the error for wait(); traffic stays where it was
        state.error = e
        state.phase = "failed"
        state.message = f"{type(e).__name__}: {e}"


def _pause_step(dep: Deployment, canary: Canary, guard: Guard | None, state: RolloutState) -> bool:
    """Wait out one step: True to go on, False when the canary was rolled back."""
    pause = canary.pause_s
    interval = guard.interval_s if guard else 0.2
    started = time.monotonic()
    failures = 0
    last = "pass" if guard is None else "inconclusive"
    while True:
        if state.abort.is_set():
            _abort_canary(dep, state, "rolled back by request", None)
            return False
        if guard is not None:
            check = analyse(guard, dep, state.version)
            last = check.verdict
            failures = failures + 1 if check.verdict == "fail" else 0
            decision = "rollback" if failures >= guard.failure_limit else (
                "hold" if check.verdict != "pass" else "continue")  # fmt: skip
            dep.record_check(state.revision, state.version, check, decision)
            if decision == "rollback":
                _abort_canary(dep, state, "; ".join(check.breaches), check)
                return False
        if state.skip.is_set():
            state.skip.clear()
            return True
        elapsed = time.monotonic() - started
        done = pause is not None and elapsed >= pause
        if state.paused.is_set() or pause is None:
            state.phase = "paused"
        elif done and last == "inconclusive":
            state.phase = "holding"
            state.message = "holding: not enough traffic for the guard to decide"
        elif done:
            return True
        state.abort.wait(interval if guard else 0.2)


def _abort_canary(dep: Deployment, state: RolloutState, why: str, check: Check | None) -> None:
    config = dep._row()["config"]
    config["revisions"] = [e for e in config["revisions"] if e["revision"] != state.revision]
    for e in config["revisions"]:
        e["weight"] = e["weight"] or 100
    dep._configure(config)
    state.phase = "rolled_back"
    state.message = f"rolled back: {why}"
    dep._set_revision_status(state.revision, "rolled_back", why)
    ws = dep._ws
    ws._store.write(lambda con: ws._audit(
        con, "rollback", dep.model, state.version, f"r{state.revision}",
        ",".join(f"r{r}" for r in state.stable), why, {"deployment": dep.name}))  # fmt: skip
    ws._emit("rolled_back", dep.model, state.version,
             {"deployment": dep.name, "revision": state.revision, "reason": why,
              "evidence": check.evidence if check else None})  # fmt: skip


def run_guard(
    dep: Deployment, guard: Guard, stop: threading.Event, max_checks: int | None = None
) -> None:
    """Watch the serving revision; roll back after ``failure_limit`` failed checks."""
    failures = 0
    checks = 0
    while not stop.is_set() and (max_checks is None or checks < max_checks):
        try:
            config = dep._row()["config"]
            serving = [e for e in config["revisions"] if e["weight"] > 0]
            if not serving:
                stop.wait(guard.interval_s)
                continue
            current = max(serving, key=lambda e: e["revision"])
            check = analyse(guard, dep, int(current["version"]))
            failures = failures + 1 if check.verdict == "fail" else 0
            decision = "rollback" if failures >= guard.failure_limit else (
                "hold" if check.verdict == "inconclusive" else "continue")  # fmt: skip
            dep.record_check(int(current["revision"]), int(current["version"]), check, decision)
            checks += 1
            if decision == "rollback":
                dep.rollback(reason="guard: " + "; ".join(check.breaches))
                failures = 0
        except DeploymentError:
            return
        stop.wait(guard.interval_s)


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


def temp_root(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
