"""Planning rollouts: the persisted change that starts one (the controller then drives it).

Every function here returns a :class:`~.state.Change` for :func:`~.state.commit`; nothing
touches the target. A rollout keeps what it needs to go on in any process: the desired
state before it began (``before``, restored at once on abort or failure), the stable
revisions and their weights, the strategy, the step, the analysis verdicts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import DeploymentError, InvalidArgument
from . import state as st
from .strategies import ABTest, BlueGreen, Canary, Rolling, Strategy, describe, to_dict
from .target import RevisionSpec

if TYPE_CHECKING:
    from ..registry import ModelVersion
    from ..workspace import Workspace


def spec_of(v: ModelVersion, revision: int, replicas: int, weight: int) -> RevisionSpec:
    row = v.info()
    return RevisionSpec(revision=revision, version=int(row["version"]),
                        artifact_uri=str(row["artifact_uri"]), digest=str(row["digest"]),
                        replicas=replicas, weight=weight)  # fmt: skip


def start(
    ws: Workspace, rec: st.Record, v: ModelVersion, strategy: Strategy, replicas: int,
    timeout: float, *, note: str | None = None, rollback_from: int | None = None,
    reason: str | None = None,
) -> st.Change:  # fmt: skip
    """The change that starts moving ``rec`` to version ``v`` by ``strategy``."""
    if isinstance(strategy, ABTest):
        return _ab(ws, rec, strategy, replicas, timeout)
    revision = st.next_revision(ws, rec.name)
    kind = describe(strategy)
    now = time.time()
    first = 1 if isinstance(strategy, Rolling) else replicas
    new = spec_of(v, revision, first, 0)
    serving = [s for s in rec.desired.revisions if s.weight > 0]
    steps = list(strategy.steps) if isinstance(strategy, Canary) else [100]
    guard = getattr(strategy, "guard", None)
    bake = strategy.bake_s if isinstance(strategy, Canary) else (guard.window_s if guard else 0)
    rollout: dict[str, Any] = {
        "id": revision, "kind": kind, "strategy": to_dict(strategy),
        "phase": "progressing" if kind == "rolling" else "starting",
        "revision": revision, "version": new.version, "replicas": replicas,
        "stable": [s.revision for s in serving],
        "stable_weights": {str(s.revision): s.weight for s in serving},
        "before": rec.desired.to_dict(), "new": [revision], "starting": [revision],
        "started": now, "step_started": now, "deadline": now + timeout, "timeout": timeout,
        "steps": steps, "step": 0, "weight": 0,
        "pause_s": strategy.pause_s if isinstance(strategy, Canary) else 0.0,
        "deadline_s": strategy.deadline_s if isinstance(strategy, Canary) else 600.0,
        "on_inconclusive": strategy.on_inconclusive if isinstance(strategy, Canary) else "pause",
        "bake_s": bake or None, "verdicts": [], "request": None, "paused": False,
        "note": note, "rollback_from": rollback_from, "reason": reason,
        "message": f"starting r{revision} (v{new.version})",
    }  # fmt: skip
    if rollback_from is not None:
        frm = rec.desired.revision(rollback_from)
        rollout["rollback_from_version"] = frm.version if frm else None
    change = st.Change(f"{kind} of v{new.version} started by {ws.actor()}", rollout=rollout,
                       desired=rec.desired.with_revisions([*rec.desired.revisions, new]))  # fmt: skip
    change.new_revisions.append((revision, new.version, new.digest, kind,
                                 "canary" if kind == "canary" else "starting", note))  # fmt: skip
    if rollback_from is None:  # a rollback is audited when it completes
        change.audit.append(("deploy", new.version, None, f"r{revision}", reason,
                             {"strategy": kind}))  # fmt: skip
        change.events.append(("deployed", new.version, {"revision": revision, "strategy": kind}))
    return change


def _ab(ws: Workspace, rec: st.Record, ab: ABTest, replicas: int, timeout: float) -> st.Change:
    now = time.time()
    by_version = {s.version: s for s in rec.desired.revisions}
    revision = st.next_revision(ws, rec.name)
    specs = list(rec.desired.revisions)
    split: dict[str, int] = {}
    new: list[int] = []
    change = st.Change(f"abtest {ab.weights()} started by {ws.actor()}")
    for version, weight in ab.weights().items():
        v = ws.model(rec.model).version(version)
        existing = by_version.get(v.number)
        if existing is None:
            existing = spec_of(v, revision, replicas, 0)
            specs.append(existing)
            new.append(revision)
            change.new_revisions.append((revision, v.number, existing.digest, "abtest",
                                         "starting", None))  # fmt: skip
            revision += 1
        split[str(existing.revision)] = weight
    change.desired = rec.desired.with_revisions(specs)
    change.rollout = {
        "id": new[0] if new else revision, "kind": "abtest", "strategy": to_dict(ab),
        "phase": "starting", "split": split, "key": ab.key, "replicas": replicas,
        "before": rec.desired.to_dict(), "new": new, "starting": new, "started": now,
        "deadline": now + timeout, "timeout": timeout, "revision": new[0] if new else None,
        "message": "starting " + ", ".join(f"r{n}" for n in new),
    }  # fmt: skip
    change.audit.append(("deploy", None, None, str(ab.weights()), None,
                         {"strategy": "abtest", "key": ab.key}))  # fmt: skip
    change.events.append(("deployed", None, {"strategy": "abtest", "split": ab.weights()}))
    return change


def plan_rollback(ws: Workspace, rec: st.Record, to: int | None, why: str | None,
                  force: bool = False, timeout: float = 120.0) -> st.Change:  # fmt: skip
    """Start going back to the last revision that completed before the serving one (or to
    revision ``to``), as a new revision, switched blue-green."""
    serving = [s for s in rec.desired.revisions if s.weight > 0]
    if not serving:
        raise DeploymentError(f"deployment {rec.name} serves nothing to roll back from")
    current = max(serving, key=lambda s: (s.weight, s.revision))
    rows = ws._store.read(lambda con: con.execute(
        "SELECT revision, version, status, completed_at FROM revisions WHERE deployment = ? "
        "ORDER BY revision", [rec.name]).fetchall())  # fmt: skip
    if to is None:
        healthy = [r for r in rows if r[3] is not None and r[2] not in ("rolled_back", "failed")
                   and r[0] < current.revision and r[1] != current.version]  # fmt: skip
        if not healthy:
            raise DeploymentError(
                f"deployment {rec.name} has no earlier healthy revision to go back to (one that "
                "took all traffic and was not rolled back); see dep.revisions(), and name one "
                "with dep.rollback(to=N, force=True) if you are sure"
            )
        target = healthy[-1]
    else:
        if isinstance(to, bool) or not isinstance(to, int):
            raise InvalidArgument(f"to must be a revision number, got {to!r}")
        match = [r for r in rows if r[0] == to]
        if not match:
            raise InvalidArgument(
                f"deployment {rec.name} has no revision {to}; see dep.revisions()"
            )
        target = match[0]
        if target[3] is None and not force:
            raise DeploymentError(
                f"revision {to} never became healthy (status {target[2]}): roll back to it with "
                "force=True only if you are sure"
            )
    v = ws.model(rec.model).version(int(target[1]))
    return start(ws, rec, v, BlueGreen(), rec.replicas, timeout, note=f"rollback to r{target[0]}",
                 rollback_from=current.revision, reason=why)  # fmt: skip
