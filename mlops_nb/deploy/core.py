"""Deployments and their revisions, on any target.

A deployment is a named endpoint serving one model. Each ``deploy()`` of a version makes
a new *revision* (numbered per deployment, like ``deployment.kubernetes.io/revision``);
``rollback()`` makes a new revision from the last one that completed, as ``kubectl
rollout undo`` does. The desired state, the rollout and its analysis live in the
workspace (see :mod:`.state`) and one controller (:mod:`.controller`), in a process of
its own, advances them: a rollout does not depend on the kernel that started it, and
``wait()``, ``pause()``, ``resume()``, ``promote()``, ``rollback()``, ``status()`` and
``checks()`` work the same from any process that opens the workspace.

Strategies (see :mod:`.strategies`): ``Rolling`` (default) replaces replicas one at a time,
a new one ready before an old one stops; ``BlueGreen`` starts a full new set and switches
all traffic in one step; ``Canary`` shifts traffic in steps judged by a guard; ``ABTest``
splits traffic between versions by weight, sticky on a request header.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import progress, query, validation
from ..errors import DeploymentConflict, DeploymentError, InvalidArgument
from ..serve.records import log_features
from ..serve.redact import REDACT_PARAM, merge_rules
from . import controller, rollout
from . import state as st
from .local import Local
from .options import check_server
from .strategies import ABTest, BlueGreen, Canary, Guard, Rolling, Strategy
from .target import Backend, DesiredState, RevisionSpec, Target, backend_for

if TYPE_CHECKING:
    import duckdb

    from ..registry import ModelVersion
    from ..workspace import Workspace


@dataclass(frozen=True)
class Status(Mapping[str, Any]):
    """A deployment's state; also reads as a mapping (``status()["traffic"]``).

    ``state`` is ``healthy``, ``progressing`` (a rollout runs), ``paused``, ``degraded``
    (fewer ready replicas than desired, or a crash loop), ``stale`` (the endpoint is gone)
    or ``deleted``.
    """

    name: str
    model: str
    target: str
    endpoint: str | None
    state: str
    generation: int
    revision: int | None = None
    version: int | None = None
    replicas: dict[str, int] = field(default_factory=dict)
    traffic: dict[int, float] = field(default_factory=dict)
    revisions: list[dict[str, Any]] = field(default_factory=list)
    rollout: dict[str, Any] | None = None
    watch: dict[str, Any] | None = None
    message: str | None = None
    stats: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)


log = logging.getLogger("mlops_nb.deploy")

# Longer than the store's linger, so a waiting kernel leaves the file to the controller.
POLL = 0.3
READY_POLL = 0.05  # replicas coming up: see the first ready one at once
LOAD_CHECK_EVERY = 0.5
ROLLOUT_KEYS = ("id", "kind", "phase", "revision", "version", "step", "weight", "paused",
                "message", "reason")  # fmt: skip


class Deployment:
    """A handle on a named deployment (lazy: nothing is read until used)."""

    def __init__(self, ws: Workspace, name: str) -> None:
        self._ws = ws
        self.name = query.check_name(name, "deployment")
        self._backend: Backend | None = None

    # -- records -------------------------------------------------------------------------

    def _record(self) -> st.Record:
        return st.read(self._ws, self.name)

    def _backend_of(self, rec: st.Record) -> Backend:
        if rec.status == "deleted":
            raise DeploymentError(f"deployment {self.name!r} was deleted; deploy it again")
        if rec.admin is None:
            raise DeploymentError(f"deployment {self.name!r} is still starting; try again soon")
        if self._backend is None:
            self._backend = backend_for(self._ws, rec.target, rec.admin or {})
        return self._backend

    @property
    def model(self) -> str:
        return self._record().model

    @property
    def endpoint(self) -> str:
        return str(self._record().endpoint)

    def revisions(self) -> pd.DataFrame:
        """Every revision, oldest first, with its version, strategy and outcome."""
        return self._ws._store.query_df(
            "SELECT revision, version, strategy, status, created_at, created_by, completed_at, "
            "note FROM revisions WHERE deployment = ? ORDER BY revision",
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

    def status(self) -> Status:
        """Revision, replicas ready/desired, traffic per version, rollout progress, health."""
        rec = self._record()
        rollout_view = None
        if rec.rollout:
            rollout_view = {k: rec.rollout.get(k) for k in ROLLOUT_KEYS}
            rollout_view["strategy"] = rec.rollout.get("kind")
        base: dict[str, Any] = {"name": self.name, "model": rec.model, "target": rec.target,
                                "endpoint": rec.endpoint, "generation": rec.generation,
                                "rollout": rollout_view, "watch": rec.watch}  # fmt: skip
        if rec.status == "deleted":
            return Status(**base, state="deleted")
        if rec.admin is None:
            return Status(**base, state="starting", message=rec.changed)
        if rec.active is not None:
            controller.ensure(self._ws, self.name)  # a kernel that died took no controller
        backend = self._backend_of(rec)
        observed = backend.observe()
        if not observed.alive:
            return Status(**base, state="stale",
                          message=f"{observed.message}; delete() and deploy again")  # fmt: skip
        desired = {s.revision: s for s in rec.desired.revisions}
        revs: list[dict[str, Any]] = []
        for o in observed.revisions:
            spec = desired.get(o.revision)
            revs.append({"revision": o.revision, "version": o.version,
                         "weight": spec.weight if spec else 0, "ready": o.ready,
                         "desired": o.desired, "restarts": o.restarts,
                         "crash_loop": o.crash_loop, "backoff_s": o.backoff_s,
                         "message": o.message,
                         "replicas": [{"id": p.id, "ready": p.ready, "alive": p.alive,
                                       "cpu_seconds": p.cpu_seconds, "rss_bytes": p.rss_bytes,
                                       **p.detail} for p in o.replicas]})  # fmt: skip
        served = [r for r in revs if r["weight"] > 0 and r["ready"] > 0]
        total = sum(r["weight"] for r in served) or 1
        traffic: dict[int, float] = {}
        for r in served:
            traffic[r["version"]] = traffic.get(r["version"], 0.0) + 100.0 * r["weight"] / total
        main = max(served or revs, key=lambda r: (r["weight"], r["revision"])) if revs else None
        ready = sum(r["ready"] for r in revs)
        wanted = sum(r["desired"] for r in revs)
        active = rec.active
        if active is not None:
            state = "paused" if active.get("phase") == "paused" else "progressing"
        elif ready < wanted or any(r["crash_loop"] for r in revs):
            state = "degraded"
        else:
            state = "healthy"
        return Status(
            **base, stats=_stats(backend), resources=_resources(backend, observed),
            state=state, revision=main["revision"] if main else None,
            version=main["version"] if main else None,
            replicas={"ready": ready, "desired": wanted},
            traffic={v: round(p, 1) for v, p in sorted(traffic.items())}, revisions=revs,
            message=(active or rec.rollout or {}).get("message"),
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<Deployment {self.name}>"

    def view(self, **options: Any) -> Any:
        """A live view: state, traffic, replicas, guard checks; promote, pause, resume,
        roll back and scale from it (see :mod:`mlops_nb.widgets.deployment`)."""
        from ..widgets.deployment import DeploymentView

        return DeploymentView(self, **options)

    def _repr_html_(self) -> str:
        s = self.status()
        rows = "".join(
            f"<tr><td>r{r['revision']}</td><td>v{r['version']}</td><td>{r['weight']}</td>"
            f"<td>{r['ready']}/{r['desired']}</td><td>{r['restarts']}</td></tr>"
            for r in s.revisions
        )
        return (
            f"<div><b>Deployment {escape(self.name)}</b> · {escape(s.state)} · "
            f"<code>{escape(str(s.endpoint))}</code><table><tr><th>revision</th>"
            f"<th>version</th><th>weight</th><th>ready</th><th>restarts</th></tr>{rows}</table></div>"
        )

    # -- rollout control -----------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> Deployment:
        """Block until the rollout in progress ends (from any process); raise if it failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # A bar of the new revision's traffic weight, in notebooks and terminals.
        bar = progress.Bar(total=100, desc=f"rollout {self.name}")
        try:
            while True:
                rec = self._record()
                r = rec.rollout
                if r is None or r.get("phase") in st.TERMINAL or rec.status == "deleted":
                    if r is not None and r.get("phase") == "failed":
                        raise DeploymentError(
                            f"rollout r{r.get('revision')} of {self.name} {r['message']}"
                        )
                    return self
                bar.move(float(r.get("weight") or 0), str(r.get("phase")))
                controller.ensure(self._ws, self.name)
                if deadline is not None and time.monotonic() > deadline:
                    raise DeploymentError(
                        f"rollout of {self.name} still {r.get('phase')} after {timeout}s: "
                        f"{r.get('message')}"
                    )
                time.sleep(POLL)
        finally:
            bar.close()

    def _steer(
        self, why: str, edit: dict[str, Any], *, audit_as: str | None = None,
        reason: str | None = None,
    ) -> Deployment:  # fmt: skip
        """Change the rollout in progress; re-read and retry when the controller wrote first.
        With ``audit_as``, the change gets an audit row of that action (with ``reason``)."""
        validation.optional_str(reason, "reason")
        for _ in range(20):
            rec = self._record()
            active = rec.active
            if active is None:
                raise DeploymentError(f"deployment {self.name} has no rollout in progress")
            change = st.Change(why, rollout={**active, **edit})
            if audit_as is not None:
                at = f"r{active.get('revision')} at {active.get('weight') or 0:g}%"
                change.audit.append((audit_as, active.get("version"), at, None, reason, {}))
            try:
                st.commit(self._ws, rec, change)
            except DeploymentConflict:
                continue
            controller.ensure(self._ws, self.name)
            return self
        raise DeploymentConflict(f"deployment {self.name} keeps changing; try {why} again")

    def pause(self, *, reason: str | None = None) -> Deployment:
        """Hold the running canary at its current step (analysis goes on); audited with
        ``reason``: ``dep.pause(reason="checking the p95 by hand")``."""
        why = f"paused by request: {reason}" if reason else "paused by request"
        return self._steer(
            "pause", {"paused": True, "pause_reason": why}, audit_as="pause", reason=reason
        )

    def resume(self, *, reason: str | None = None) -> Deployment:
        """Let a paused canary go on; audited with ``reason``."""
        edit = {"paused": False, "pause_reason": None, "step_started": time.time()}
        return self._steer("resume", edit, audit_as="resume", reason=reason)

    def promote(self, *, reason: str | None = None) -> Deployment:
        """Move a canary on to its next step now; audited (as ``promote_step``) with
        ``reason``."""
        edit = {"paused": False, "request": "promote"}
        return self._steer("promote", edit, audit_as="promote_step", reason=reason)

    # -- actions -------------------------------------------------------------------------

    def scale(
        self, replicas: int, timeout: float = 120.0, *, reason: str | None = None
    ) -> Deployment:
        """Change the replica count of the serving revision(s); ``reason`` goes into the
        audit log: ``dep.scale(3, reason="launch traffic")``."""
        _check_replicas(replicas)
        validation.optional_str(reason, "reason")
        rec = self._record()
        if rec.active is not None:
            raise DeploymentError(f"a {rec.active['kind']} rollout of {self.name} is in progress; "
                                  "scale once it has ended (dep.wait())")  # fmt: skip
        revisions = [RevisionSpec(**{**s.to_dict(), "replicas": replicas}) if s.weight > 0
                     else s for s in rec.desired.revisions]  # fmt: skip
        desired = rec.desired.with_revisions(revisions)
        change = st.Change(f"scale to {replicas} by {self._ws.actor()}", desired=desired,
                           replicas=replicas)  # fmt: skip
        change.audit.append(("scale", None, str(rec.replicas), str(replicas), reason, {}))
        new = st.commit(self._ws, rec, change)
        backend = self._backend_of(new)
        backend.apply(new.desired, new.generation)
        _wait_ready(backend, [s.revision for s in revisions if s.weight > 0], replicas, timeout)
        return self

    def rollback(self, to: int | None = None, *, reason: str | None = None, force: bool = False,
                 timeout: float = 120.0) -> Deployment:  # fmt: skip
        """Back to the last revision that completed before the serving one (or revision
        ``to``), as a new revision. A rollout in progress is aborted instead: its traffic
        returns to the stable revision at once."""
        rec = self._record()
        if rec.active is not None:
            if to is not None:
                raise DeploymentError(f"a {rec.active['kind']} rollout of {self.name} is in "
                                      "progress: rollback() without `to` aborts it first")  # fmt: skip
            self._steer(
                "rollback",
                {"request": "abort", "request_reason": reason or "rolled back by request"},
            )
            return self.wait(timeout)
        change = rollout.plan_rollback(self._ws, rec, to, reason, force, timeout)
        new = st.commit(self._ws, rec, change)
        self._backend_of(new).apply(new.desired, new.generation)
        controller.ensure(self._ws, self.name)
        return self.wait(timeout + 30)

    def watch(self, guard: Guard) -> Deployment:
        """Keep ``guard`` on the serving revision (in the controller, which outlives this
        kernel); on a breach roll back to the last healthy revision. ``unwatch()`` stops it."""
        self.watch_only(guard)
        controller.ensure(self._ws, self.name)
        return self

    def watch_only(self, guard: Guard) -> None:
        """Record the watch without starting a controller (``mlops-nb guard`` drives it)."""
        if not isinstance(guard, Guard):
            raise InvalidArgument(f"expected mlops_nb.Guard, got {type(guard).__name__}")
        for _ in range(20):
            rec = self._record()
            if rec.status == "deleted":
                raise DeploymentError(f"deployment {self.name!r} was deleted; deploy it again")
            change = st.Change(f"watch by {self._ws.actor()}",
                               watch={"guard": guard.to_dict(), "verdicts": []})  # fmt: skip
            try:
                st.commit(self._ws, rec, change)
                return
            except DeploymentConflict:
                continue
        raise DeploymentConflict(f"deployment {self.name} keeps changing; try watch() again")

    def unwatch(self) -> None:
        for _ in range(20):
            rec = self._record()
            if rec.watch is None:
                return
            try:
                st.commit(self._ws, rec, st.Change(f"unwatch by {self._ws.actor()}", watch=None))
                return
            except DeploymentConflict:
                continue

    def delete(self) -> None:
        """Stop the endpoint and its replicas; the records stay, marked deleted."""
        for _ in range(20):
            rec = self._record()
            if rec.status == "deleted":
                return
            change = st.Change(f"delete by {self._ws.actor()}", status="deleted", watch=None)
            if rec.active is not None:
                change.rollout = {**rec.active, "phase": "aborted", "message": "deployment deleted"}
            for spec in rec.desired.revisions:
                change.revisions.append((spec.revision, "stopped", None, False))
            change.audit.append(("delete_deployment", None, None, None, None, {}))
            try:
                st.commit(self._ws, rec, change)
            except DeploymentConflict:
                continue
            if rec.admin:
                backend_for(self._ws, rec.target, rec.admin).stop()
            # Its controller, a process of its own, exits once it reads the deletion: wait
            # for that, so nothing touches the workspace's folders after delete() returns.
            if not controller.wait_stopped(self._ws, self.name):
                log.warning("the controller of %s is still running 30 s after delete()",
                            self.name)  # fmt: skip
            return

    def flush_logs(self) -> pd.DataFrame:
        """Ingest what the replicas have spooled so far into the model's prediction log."""
        return self._ws.monitor(self.model).ingest(self._ws.spool_root)


STATS_WINDOW = 60.0


def _stats(backend: Backend) -> list[dict[str, Any]]:
    """Live traffic per revision over the last minute, as the guard sees it."""
    try:
        traffic = backend.traffic(STATS_WINDOW)
    except DeploymentError:
        return []
    return [{"revision": r.revision, "version": r.version, "requests": r.requests,
             "rate_per_s": round(r.requests / STATS_WINDOW, 2), "error_rate": r.error_rate,
             "client_error_rate": r.client_error_rate,
             "no_replica": traffic.no_replica.get(r.revision, 0),
             "p50_ms": r.p50_ms, "p95_ms": r.p95_ms, "p99_ms": r.p99_ms}
            for r in traffic.revisions]  # fmt: skip


def _resources(backend: Backend, observed: Any) -> list[dict[str, Any]]:
    """CPU, memory and the payload log of every replica (what each reports of itself)."""
    out = []
    for rev in observed.revisions:
        for rep in rev.replicas:
            report = backend.replica_report(rep) or {}
            payload = report.get("payload") or {}
            process = report.get("process") or {}
            # The target's own figures (the local one reads the process tree), else the
            # replica's (a pod: its server and worker processes, from inside the pod).
            cpu = process.get("cpu_seconds") if rep.cpu_seconds is None else rep.cpu_seconds
            rss = process.get("rss_bytes") if rep.rss_bytes is None else rep.rss_bytes
            out.append({
                "revision": rev.revision, "replica": rep.id, "ready": rep.ready,
                "cpu_seconds": None if cpu is None else round(cpu, 2),
                "rss_mb": None if rss is None else round(rss / 2**20, 1),
                "open_connections": process.get("open_connections"),
                "inflight": report.get("inflight"), "queue": report.get("queue"),
                "stuck": report.get("stuck"), "logged": payload.get("written"),
                "dropped": payload.get("dropped") or {},
            })  # fmt: skip
    return out


def _check_replicas(replicas: object) -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 32:
        raise InvalidArgument(f"replicas must be an integer from 1 to 32, got {replicas!r}")
    return replicas


def _wait_ready(backend: Backend, revisions: list[int], count: int, timeout: float) -> None:
    """Until every revision has ``count`` ready replicas; a crash loop or a load error
    (asked for less often: it costs the target more) fails at once."""
    deadline = time.monotonic() + timeout
    next_load_check = time.monotonic() + LOAD_CHECK_EVERY
    while time.monotonic() < deadline:
        observed = backend.observe()
        if all(observed.ready(r) >= count for r in revisions):
            return
        for r in revisions:
            status = observed.revision(r)
            if status is not None and status.crash_loop:
                raise DeploymentError(f"revision {r} cannot become ready: {status.message}")
        if time.monotonic() >= next_load_check:
            next_load_check = time.monotonic() + LOAD_CHECK_EVERY
            for r in revisions:
                error = backend.load_error(r)
                if error:
                    raise DeploymentError(f"revision {r} cannot become ready: {error}")
        time.sleep(READY_POLL)
    why = "; ".join(filter(None, (backend.explain(r) for r in revisions))) or "no ready replica"
    raise DeploymentError(f"revision(s) {revisions} did not get {count} ready replica(s) within "
                          f"{timeout:g}s: {why}")  # fmt: skip


def _target(target: str | Target) -> Target:
    if isinstance(target, Target):
        return target
    if target == "local":
        return Local()
    raise InvalidArgument(
        f"unknown target {target!r}; use 'local', mnb.Local() or mnb.Kubernetes(...)"
    )


def deploy(
    v: ModelVersion, *, target: str | Target = "local", replicas: int | None = None,
    strategy: Strategy | None = None, name: str | None = None, timeout: float = 120.0,
    server: dict[str, Any] | None = None,
) -> Deployment:  # fmt: skip
    """Serve a version: a new deployment, or a new revision of an existing one.

    Rolling, blue-green and A/B rollouts return once done (or raise, with everything they
    started stopped and the reason recorded); a canary returns once its first step serves,
    and goes on without this kernel (``dep.wait()`` to block).

    ``server`` sets the model server's options for the deployment's replicas from now on
    (``{"workers": 4, "timeout_s": 10, "stuck_after_s": 20}``; the list is
    ``mlops_nb.deploy.options.SERVER_OPTIONS``); without it a deployment keeps its own.
    Its ``redact`` rules are kept unless given again (``{"redact": {}}`` clears them).
    """
    if replicas is not None:
        _check_replicas(replicas)
    options = None if server is None else check_server(server)
    strategy = strategy if strategy is not None else Rolling()
    if not isinstance(strategy, Rolling | BlueGreen | Canary | ABTest):
        raise InvalidArgument(
            f"strategy must be mlops_nb.Rolling, BlueGreen, Canary or ABTest, got {strategy!r}"
        )
    ws = v._ws
    dep = Deployment(ws, name or v.model)
    _ = v.digest  # fails now, with a clear error, for an unknown version
    exists = ws._store.read(lambda con: con.execute(
        "SELECT status, model, target FROM deployments WHERE name = ?", [dep.name]).fetchone())  # fmt: skip
    if exists and exists[1] != v.model:
        raise InvalidArgument(
            f"deployment {dep.name!r} serves model {exists[1]!r}, not {v.model!r}"
        )
    if not exists or exists[0] == "deleted":
        if isinstance(strategy, ABTest):
            raise InvalidArgument(
                "an A/B test needs a running deployment; deploy one version first"
            )
        _check_version_rules(v, (options or {}).get("redact"))
        return _create(dep, v, _target(target), replicas or 1, timeout, options or {})
    rec = dep._record()
    kept = rec.desired.server.get("redact")
    if options is not None and "redact" not in options and kept:
        # New server options never drop the deployment's redaction silently; an explicit
        # server={"redact": {}} does.
        options = {**options, "redact": kept}
    _check_version_rules(v, (options if options is not None else rec.desired.server).get("redact"))
    if rec.status == "starting":
        raise DeploymentConflict(
            f"deployment {dep.name!r} is being created by another process; use "
            f"ws.deployment({dep.name!r}) once it is up (if that process died, "
            f"ws.deployment({dep.name!r}).delete() frees the name)"
        )
    if not isinstance(target, str) or target != "local":
        _same_target(dep.name, _target(target), rec)
    if rec.active is not None:
        raise DeploymentError(
            f"a {rec.active['kind']} rollout of {dep.name} is in progress "
            f"({rec.active.get('message')}); wait(), promote() or rollback() it first"
        )
    backend = dep._backend_of(rec)
    if not backend.alive():
        raise DeploymentError(
            f"deployment {dep.name!r} is stale (its endpoint is gone): "
            f"ws.deployment({dep.name!r}).delete(), then deploy again"
        )
    change = rollout.start(ws, rec, v, strategy, replicas or rec.replicas, timeout)
    if options is not None and change.desired is not None:
        change.desired = dataclasses.replace(change.desired, server=options)
    new = st.commit(ws, rec, change)
    backend.apply(new.desired, new.generation)
    controller.ensure(ws, dep.name)
    if isinstance(strategy, Canary):
        _wait_first_step(dep, timeout + 30)
        return dep
    return dep.wait(timeout + 30)


def _check_version_rules(v: ModelVersion, given: dict[str, Any] | None) -> None:
    """A version's redaction rules, with the deployment's (``given``) over them, are
    checked before anything starts (not when a replica loads)."""
    row = v.info()
    own = (row.get("params") or {}).get(REDACT_PARAM)
    merge_rules(own, given, f"{v.model} v{v.number}", log_features(row.get("signature")))


def _same_target(name: str, wanted: Target, rec: st.Record) -> None:
    """A target is fixed when its deployment is created: a redeploy may name it again, but
    not another one, nor the same kind with other settings (they would be ignored)."""
    if wanted.kind != rec.target:
        raise InvalidArgument(f"deployment {name!r} runs on {rec.target!r}; delete it "
                              "first to move it to another target")  # fmt: skip
    current = type(wanted).from_record(rec.admin or {})
    changed = [f"{f.name}={getattr(current, f.name)!r} (asked {getattr(wanted, f.name)!r})"
               for f in dataclasses.fields(wanted)  # type: ignore[arg-type]
               if f.compare and getattr(wanted, f.name) != getattr(current, f.name)]  # fmt: skip
    if changed:
        raise InvalidArgument(
            f"deployment {name!r} runs with {', '.join(changed)}: a target's settings are "
            "fixed when the deployment is created; deploy without target= to keep them, or "
            f"ws.deployment({name!r}).delete() and deploy again to change them"
        )


def _wait_first_step(dep: Deployment, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = dep._record().rollout or {}
        if r.get("phase") == "failed":
            raise DeploymentError(f"canary of {dep.name} {r.get('message')}")
        if r.get("phase") != "starting":
            return
        controller.ensure(dep._ws, dep.name)
        time.sleep(POLL)
    raise DeploymentError(f"the canary of {dep.name} did not start within {timeout:g}s")


def _create(dep: Deployment, v: ModelVersion, target: Target, replicas: int,
            timeout: float, server: dict[str, Any]) -> Deployment:  # fmt: skip
    """A new deployment: claim the name, start the endpoint, serve revision 1."""
    ws = dep._ws
    target.check(ws)
    now = ws.now()
    empty = DesiredState(dep.name, v.model)

    def claim(con: duckdb.DuckDBPyConnection) -> None:
        row = con.execute("SELECT status, generation FROM deployments WHERE name = ?",
                          [dep.name]).fetchone()  # fmt: skip
        if row is not None and row[0] != "deleted":
            raise DeploymentConflict(f"deployment {dep.name!r} is being created by another "
                                     "process; use ws.deployment(name) once it is up")  # fmt: skip
        generation = int(row[1] or 0) + 1 if row else 0
        con.execute("DELETE FROM deployments WHERE name = ?", [dep.name])
        con.execute(
            "INSERT INTO deployments (name, model, target, endpoint, pid, admin, replicas, status, "
            "config, created_at, updated_at, generation, changed) VALUES "
            "(?, ?, ?, NULL, NULL, NULL, ?, 'starting', ?, ?, ?, ?, ?)",
            [dep.name, v.model, target.kind, replicas, json.dumps(empty.to_dict()), now, now,
             generation, f"created by {ws.actor()}"],
        )  # fmt: skip

    ws._store.write(claim)
    backend: Backend | None = None
    try:
        backend = target.provision(ws, dep.name)
        rec = dep._record()
        revision = st.next_revision(ws, dep.name)
        spec = rollout.spec_of(v, revision, replicas, 100)
        desired = DesiredState(dep.name, v.model, (spec,), server=server)
        change = st.Change("create", desired=desired, endpoint=backend.endpoint,
                           admin=backend.record())  # fmt: skip
        change.new_revisions.append(
            (revision, spec.version, spec.digest, "create", "starting", None)
        )
        rec = st.commit(ws, rec, change)
        backend.apply(rec.desired, rec.generation)
        _wait_ready(backend, [revision], replicas, timeout)
        done = st.Change("created", status="active", rollout=None)
        done.revisions.append((revision, "active", None, True))
        done.audit.append(
            ("deploy", spec.version, None, f"r{revision}", None, {"strategy": "create"})
        )
        done.events.append(("deployed", spec.version, {"revision": revision, "strategy": "create"}))
        st.commit(ws, rec, done)
    except BaseException as e:
        if backend is not None:
            backend.stop()
        why = f"{type(e).__name__}: {e}"[:500]

        def failed(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("UPDATE deployments SET status = 'deleted', changed = ?, "
                        "generation = generation + 1 WHERE name = ?",
                        [f"failed to start: {why}", dep.name])  # fmt: skip
            con.execute("UPDATE revisions SET status = 'failed', note = ? WHERE deployment = ? "
                        "AND status = 'starting'", [why, dep.name])  # fmt: skip

        ws._store.write(failed)
        raise
    dep._backend = backend
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
        serving = sorted({e["version"] for e in config.get("revisions", []) if e["weight"] > 0})
        versions.append(", ".join(f"v{n}" for n in serving))
        states.append(rec["status"] if rec["status"] in ("deleted", "starting") else
                      Deployment(ws, rec["name"]).status().state)  # fmt: skip
    return rows.drop(columns=["config", "status"]).assign(versions=versions, state=states)
