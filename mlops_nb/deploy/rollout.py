"""Rollouts: creating a deployment and moving traffic between its revisions.

Every function here changes the router's configuration through a :class:`Deployment`
handle and records the change (revisions, audit log, events) in the workspace. Canary
rollouts run on a background thread and keep their progress in a :class:`RolloutState`
that the handle's ``status()``, ``pause()``, ``resume()`` and ``promote()`` read and steer.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DeploymentError
from ..serve.spec import ServeSpec
from .guard import Check, analyse
from .local import LocalRouter
from .strategies import ABTest, BlueGreen, Canary, Guard, Rolling, describe

if TYPE_CHECKING:
    import duckdb

    from ..registry import ModelVersion
    from ..workspace import Workspace
    from .core import Deployment


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
ROLLOUTS: dict[tuple[str, str], RolloutState] = {}


WATCHERS: dict[tuple[str, str], threading.Event] = {}


def _entry(revision: int, version: int, spec: Path, replicas: int, weight: int) -> dict[str, Any]:
    return {"revision": revision, "version": version, "spec": str(spec), "replicas": replicas,
            "weight": weight}  # fmt: skip


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


def create(dep: Deployment, v: ModelVersion, replicas: int, timeout: float) -> Deployment:
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
    record_deploy(dep, v.number, revision, "create")
    return dep


def record_deploy(dep: Deployment, version: int, revision: int, strategy: str) -> None:
    ws = dep._ws
    ws._store.write(lambda con: ws._audit(
        con, "deploy", dep.model, version, None, f"r{revision}", None,
        {"deployment": dep.name, "strategy": strategy}))  # fmt: skip
    ws._emit("deployed", dep.model, version,
             {"deployment": dep.name, "revision": revision, "strategy": strategy})  # fmt: skip


def switch(
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


def ab_test(dep: Deployment, ab: ABTest, replicas: int, timeout: float) -> Deployment:
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


def start_canary(
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
    ROLLOUTS[dep._key()] = state
    record_deploy(dep, v.number, revision, "canary")
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
