"""The one controller: it advances a deployment's persisted rollout (and its watch) step
by step, in whatever process holds the deployment's controller lock.

Each :meth:`Controller.tick` reads the persisted :class:`~.state.Record`, observes the
target, decides the next step (start, wait for ready replicas, shift weights, check the
guard, hold, pause, abort, finish) and commits it by compare-and-set, then applies the
new desired state to the target. Nothing lives only in memory: a controller that dies is
replaced (``python -m mlops_nb.deploy.controller``, started detached by ``deploy()`` and
by any handle that finds a rollout without one) and carries on from the stored state.
The lock is an exclusive ``flock`` on ``<deployments>/<name>/controller.lock``, released
by the OS when its holder dies.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import detached
from ..errors import DeploymentConflict, DeploymentError, MlopsError
from . import state as st
from .analysis import Check, analyse, decide, same_value
from .strategies import Guard
from .target import Backend, DesiredState, Observed, RevisionSpec, backend_for

if TYPE_CHECKING:
    from ..workspace import Workspace

TICK = 0.25
GIVE_UP_AFTER = 120.0  # seconds of failing ticks in a row before the controller exits
log = logging.getLogger(__name__)
_LAUNCH = "import subprocess, sys; subprocess.Popen(sys.argv[1:], start_new_session=True)"


SPAWN_GRACE = 20.0  # a controller being started is not started again meanwhile


def folder_of(workspace: str, name: str) -> Path:
    """``<stem>-deployments/<name>`` beside the workspace file (see ``Workspace``)."""
    db = Path(workspace)
    folder = db.with_name(f"{db.stem}-deployments") / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lock_path(ws: Workspace, name: str) -> Path:
    return folder_of(ws._store.path, name) / "controller.lock"


def try_lock(ws: Workspace | str, name: str) -> IO[bytes] | None:
    """The controller lock, or None when another process holds it."""
    path = folder_of(ws if isinstance(ws, str) else ws._store.path, name) / "controller.lock"
    fh = open(path, "ab")  # noqa: SIM115 - held for the controller's life
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


def running(ws: Workspace, name: str) -> bool:
    fh = try_lock(ws, name)
    if fh is None:
        return True
    fh.close()
    return False


def wait_stopped(ws: Workspace, name: str, timeout: float = 30.0) -> bool:
    """Wait until no controller drives ``name`` (its lock is free); False at the timeout.

    A controller reads the workspace every tick and exits once it has nothing to drive
    (a deleted deployment), so this is how long that takes, not a signal."""
    if not lock_path(ws, name).parent.is_dir():
        return True
    deadline = time.monotonic() + timeout
    while running(ws, name):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def spawn(ws: Workspace, name: str) -> None:
    """Start a detached controller (its own session: it outlives this kernel)."""
    folder = lock_path(ws, name).parent
    marker = folder / "controller.spawned"
    with contextlib.suppress(OSError):
        if time.time() - marker.stat().st_mtime < SPAWN_GRACE:
            return  # one is starting up; it takes the lock first thing
    marker.touch()
    with open(folder / "controller.log", "ab") as out:
        # Through a launcher that exits at once: the controller is nobody's child here,
        # so it is neither a zombie of this kernel nor stopped with it.
        subprocess.run(
            [sys.executable, "-c", _LAUNCH, sys.executable, "-m", "mlops_nb.deploy.controller",
             "--workspace", ws.path, "--deployment", name],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True,
            timeout=60, env=detached.environment(),
        )  # fmt: skip


def ensure(ws: Workspace, name: str) -> None:
    """Make sure a controller drives ``name`` if it has anything to drive."""
    if not running(ws, name):
        spawn(ws, name)


def _spec(desired: DesiredState, revision: int) -> RevisionSpec:
    spec = desired.revision(revision)
    if spec is None:
        raise DeploymentError(f"revision {revision} is not in the desired state")
    return spec


def _weighted(spec: RevisionSpec, **changes: int) -> RevisionSpec:
    data = spec.to_dict()
    data.update(changes)
    return RevisionSpec(**data)


class Controller:
    def __init__(self, ws: Workspace, name: str) -> None:
        self.ws = ws
        self.name = name
        self._backend: Backend | None = None
        self._applied = -1

    def backend(self, record: st.Record) -> Backend:
        if self._backend is None:
            self._backend = backend_for(self.ws, record.target, record.admin or {})
        return self._backend

    # -- the loop ------------------------------------------------------------------------

    def run(self, *, forever: bool = False, max_seconds: float | None = None) -> None:
        """Tick until nothing is left to drive (or ``max_seconds``).

        A tick that fails (the workspace busy, the target not answering) is tried again,
        with a growing wait, for up to ``GIVE_UP_AFTER`` seconds of failures in a row: a
        rollout must not stall on one bad moment. After that the controller exits and the
        next handle that reads the deployment starts a new one.
        """
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        failing_since: float | None = None
        failures = 0
        while deadline is None or time.monotonic() < deadline:
            try:
                busy = self.tick()
            except DeploymentConflict:
                continue  # someone else wrote first: read again and decide again
            except MlopsError as e:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > GIVE_UP_AFTER:
                    raise
                failures += 1
                log.warning("deployment %s: tick failed, trying again: %s", self.name, e)
                time.sleep(min(5.0, TICK * 2 ** min(failures, 5)))
                continue
            failing_since, failures = None, 0
            if not busy and not forever:
                return
            time.sleep(TICK)

    def tick(self) -> bool:
        """One step; False when there is nothing to drive."""
        record = st.read(self.ws, self.name)
        if record.status == "deleted":
            return False
        backend = self.backend(record)
        if self._applied < record.generation:
            backend.apply(record.desired, record.generation)
            self._applied = record.generation
        if record.active is None and record.watch is None:
            return False
        observed = backend.observe()
        if not observed.alive:
            self._commit(
                record,
                st.Change(
                    "target gone",
                    rollout=self._ended(
                        record, "failed", f"the deployment's endpoint is gone: {observed.message}"
                    ),
                ),
            )
            return False
        now = time.time()
        change = None
        if record.active is not None:
            change = self._advance(record, record.active, observed, backend, now)
        elif record.watch is not None:
            change = self._watch(record, record.watch, observed, backend, now)
        if change is not None:
            self._commit(record, change)
        return True

    def _commit(self, record: st.Record, change: st.Change) -> None:
        new = st.commit(self.ws, record, change)
        if change.desired is not None:
            self.backend(new).apply(new.desired, new.generation)
            self._applied = new.generation

    @staticmethod
    def _ended(record: st.Record, phase: str, message: str) -> dict[str, Any] | None:
        if record.rollout is None:
            return None
        return {**record.rollout, "phase": phase, "message": message, "ended": time.time()}

    # -- rollouts ------------------------------------------------------------------------

    def _advance(self, rec: st.Record, r: dict[str, Any], obs: Observed, backend: Backend,
                 now: float) -> st.Change | None:  # fmt: skip
        if r.get("request") == "abort":
            return self._revert(
                rec, r, "aborted", r.get("request_reason") or "rolled back by request"
            )
        starting = [int(n) for n in r.get("starting", [])]
        for revision in starting:
            why = self._start_failure(r, obs, backend, revision, now)
            if why:
                return self._revert(rec, r, "failed", why)
        kind = r["kind"]
        if kind == "rolling":
            return self._rolling(rec, r, obs, now)
        if kind == "abtest":
            if all(obs.ready(n) >= _spec(rec.desired, n).replicas for n in starting):
                return self._finish_ab(rec, r)
            return None
        return self._progressive(rec, r, obs, backend, now)

    def _start_failure(self, r: dict[str, Any], obs: Observed, backend: Backend, revision: int,
                       now: float) -> str | None:  # fmt: skip
        status = obs.revision(revision)
        if status is not None and status.crash_loop:
            return f"revision {revision} cannot become ready: {status.message}"
        wanted = int(r["replicas"])
        if obs.ready(revision) >= min(wanted, 1):
            return None
        error = backend.load_error(revision)
        if error:
            return f"revision {revision} cannot become ready: {error}"
        if now > float(r["deadline"]):
            why = backend.explain(revision) or "no ready replica"
            return (f"revision {revision} did not get {wanted} ready replica(s) within "
                    f"{r['timeout']:g}s: {why}")  # fmt: skip
        return None

    def _rolling(self, rec: st.Record, r: dict[str, Any], obs: Observed,
                 now: float) -> st.Change | None:  # fmt: skip
        """maxSurge 1, maxUnavailable 0: one new replica ready, then one old one goes."""
        new = _spec(rec.desired, int(r["revision"]))
        target = int(r["replicas"])
        if obs.ready(new.revision) < new.replicas:
            return None
        if new.replicas >= target:
            return self._finish(rec, r)
        count = new.replicas + 1
        olds = [s for s in rec.desired.revisions if s.revision != new.revision]
        old_total = max(0, target - new.replicas)
        revisions = [_weighted(s, replicas=min(s.replicas, old_total), weight=min(s.replicas, old_total))
                     for s in olds]  # fmt: skip
        revisions.append(_weighted(new, replicas=count, weight=new.replicas))
        r2 = {**r, "step": count, "message": f"{new.replicas} of {target} new replica(s) ready",
              "deadline": now + float(r["timeout"])}  # fmt: skip
        return st.Change(f"rolling: replica {count} of {target}", desired=rec.desired.with_revisions(revisions),
                         rollout=r2)  # fmt: skip

    def _progressive(self, rec: st.Record, r: dict[str, Any], obs: Observed, backend: Backend,
                     now: float) -> st.Change | None:  # fmt: skip
        """Blue-green (one step to 100) and canary (weight steps), with the guard."""
        from .strategies import from_dict

        strategy = from_dict(r["strategy"])
        new = _spec(rec.desired, int(r["revision"]))
        guard: Guard | None = getattr(strategy, "guard", None)
        steps = [int(s) for s in r["steps"]]
        if r["phase"] == "starting":
            if obs.ready(new.revision) < int(r["replicas"]):
                return None
            return self._set_step(rec, r, 0, steps[0], now, "replicas ready")
        change = st.Change("analysis")
        r2 = dict(r)
        verdict = None
        if guard is not None and now - float(r.get("last_check", 0)) >= guard.interval_s:
            check = self._check(rec, guard, obs, backend, new.revision, r.get("stable", []))
            verdicts = [*r.get("verdicts", []), check.verdict][-guard.failure_window :]
            decision = decide(guard, verdicts)
            r2.update(verdicts=verdicts, last_check=now, last_verdict=check.verdict)
            recorded = "rollback" if decision == "abort" else decision
            change.checks.append((new.revision, new.version, check, recorded, int(r["id"])))
            verdict = check.verdict
            if decision == "abort":
                out = self._revert(rec, r2, "aborted", "guard: " + "; ".join(check.breaches))
                out.checks = change.checks
                return out
        last = r2.get("last_verdict")
        weight = int(r2["weight"])
        if r2["phase"] == "baking":
            if now < float(r2["bake_until"]):
                return self._keep(change, r2, verdict)
            if last == "fail":
                r2["message"] = f"100% on v{r2['version']}; baked, holding: the last check failed"
                return self._keep(change, r2, verdict, force=r.get("message") != r2["message"])
            out = self._finish(rec, r2)
            out.checks = change.checks
            return out
        request = r2.get("request")
        if request == "promote":
            r2["request"] = None
            return self._next(rec, r2, steps, now, "promoted by request", change)
        if r2.get("paused"):
            r2["phase"] = "paused"
            r2["message"] = r2.get("pause_reason") or f"paused at {weight}%"
            return self._keep(change, r2, verdict, force=r["phase"] != "paused")
        elapsed = now - float(r2["step_started"])
        pause = r2.get("pause_s")
        if pause is None:
            r2["phase"], r2["message"] = "paused", f"at {weight}%: waiting for dep.promote()"
            return self._keep(change, r2, verdict, force=r["phase"] != "paused")
        if elapsed < float(pause):
            return self._keep(change, r2, verdict)
        if guard is None or last == "pass":
            return self._next(rec, r2, steps, now, "analysis passed", change)
        if last == "fail":
            r2["phase"], r2["message"] = "holding", f"holding at {weight}%: the last check failed"
            return self._keep(change, r2, verdict, force=r["phase"] != "holding")
        deadline = float(r2["deadline_s"])
        if elapsed >= float(pause) + deadline:
            why = f"inconclusive analysis for {elapsed:.0f}s (progress deadline {deadline:g}s)"
            if r2.get("on_inconclusive") == "abort":
                out = self._revert(rec, r2, "aborted", why)
                out.checks = change.checks
                return out
            r2.update(
                paused=True, phase="paused", pause_reason=f"paused: {why}; resume() or promote()"
            )
            r2["message"] = r2["pause_reason"]
            return self._keep(change, r2, verdict, force=True)
        r2["phase"] = "holding"
        r2["message"] = (f"holding at {weight}%: waiting for the guard's first check at this step"
                         if last is None else
                         f"holding at {weight}%: not enough traffic for the guard to decide")  # fmt: skip
        return self._keep(change, r2, verdict, force=r["phase"] != "holding")

    @staticmethod
    def _keep(change: st.Change, r2: dict[str, Any], verdict: str | None,
              force: bool = False) -> st.Change | None:  # fmt: skip
        if verdict is None and not force:
            return None
        change.rollout = r2
        return change

    def _next(self, rec: st.Record, r: dict[str, Any], steps: list[int], now: float, why: str,
              change: st.Change) -> st.Change:  # fmt: skip
        step = int(r["step"]) + 1
        if step >= len(steps) or (steps[step] == 100 and not r.get("bake_s")):
            out = self._finish(rec, r)
        else:
            out = self._set_step(rec, r, step, steps[step], now, why)
        out.checks = change.checks
        return out

    def _set_step(self, rec: st.Record, r: dict[str, Any], step: int, weight: int, now: float,
                  why: str) -> st.Change:  # fmt: skip
        new = int(r["revision"])
        stable = {int(k): int(v) for k, v in r["stable_weights"].items()}
        total = sum(stable.values()) or 1
        revisions = []
        for spec in rec.desired.revisions:
            if spec.revision == new:
                revisions.append(_weighted(spec, weight=weight))
            elif spec.revision in stable:
                share = round((100 - weight) * stable[spec.revision] / total)
                revisions.append(_weighted(spec, weight=share))
            else:
                revisions.append(spec)
        # A step is judged on its own checks: the previous step's verdict does not carry over
        # (the failure count in ``verdicts`` does), and its first check comes one interval in.
        r2 = {**r, "phase": "progressing", "step": step, "weight": weight, "step_started": now,
              "paused": False, "pause_reason": None, "starting": [], "last_verdict": None,
              "last_check": now,
              "message": f"{weight}% of traffic on v{r['version']} ({why})"}  # fmt: skip
        if weight == 100 and r.get("bake_s"):
            r2.update(phase="baking", bake_until=now + float(r["bake_s"]),
                      message=f"100% on v{r['version']}; baking for {r['bake_s']:g}s")  # fmt: skip
        desired = rec.desired.with_revisions(revisions)
        return st.Change(f"{r['kind']}: step {step} at {weight}%", desired=desired, rollout=r2)

    def _finish(self, rec: st.Record, r: dict[str, Any]) -> st.Change:
        new = _spec(rec.desired, int(r["revision"]))
        keep = _weighted(new, weight=100, replicas=int(r["replicas"]))
        r2 = {**r, "phase": "succeeded", "weight": 100, "ended": time.time(), "starting": [],
              "message": f"v{new.version} takes all traffic"}  # fmt: skip
        change = st.Change(f"{r['kind']}: v{new.version} takes all traffic",
                           desired=rec.desired.with_revisions([keep]), rollout=r2,
                           replicas=int(r["replicas"]))  # fmt: skip
        old_status = "rolled_back" if r.get("rollback_from") is not None else "superseded"
        for spec in rec.desired.revisions:
            if spec.revision != new.revision:
                change.revisions.append((spec.revision, old_status, None, False))
        change.revisions.append((new.revision, "active", r.get("note"), True))
        if r.get("rollback_from") is not None:
            frm = r.get("rollback_from_version")
            change.audit.append(("rollback", new.version, f"r{r['rollback_from']} (v{frm})",
                                 f"r{new.revision} (v{new.version})", r.get("reason"),
                                 {"from_version": frm, "to_version": new.version}))  # fmt: skip
            change.events.append(("rolled_back", new.version, {
                "revision": new.revision, "from_revision": r["rollback_from"],
                "from_version": frm, "to_version": new.version, "reason": r.get("reason")}))  # fmt: skip
        return change

    def _finish_ab(self, rec: st.Record, r: dict[str, Any]) -> st.Change:
        split = {int(k): int(v) for k, v in r["split"].items()}  # revision -> weight
        revisions = [_weighted(s, weight=split[s.revision]) for s in rec.desired.revisions
                     if s.revision in split]  # fmt: skip
        r2 = {**r, "phase": "succeeded", "ended": time.time(), "starting": [],
              "message": "A/B split " + ", ".join(f"r{k}: {v}" for k, v in split.items())}  # fmt: skip
        change = st.Change("abtest: split applied", rollout=r2, replicas=int(r["replicas"]),
                           desired=rec.desired.with_revisions(
                               revisions, routing="ab" if r.get("key") else "weighted",
                               key=r.get("key")))  # fmt: skip
        for spec in rec.desired.revisions:
            if spec.revision in split:
                change.revisions.append((spec.revision, "active", None, True))
            else:
                change.revisions.append((spec.revision, "superseded", None, False))
        return change

    def _revert(self, rec: st.Record, r: dict[str, Any], phase: str, why: str) -> st.Change:
        """Back to the state before the rollout, at once; the new revisions stop."""
        before = DesiredState.from_dict(r["before"])
        r2 = {**r, "phase": phase, "request": None, "ended": time.time(), "message":
              f"{'rolled back' if phase == 'aborted' else 'failed'}: {why}", "reason": why,
              "starting": []}  # fmt: skip
        change = st.Change(f"{r['kind']} {phase}: {why}", desired=before, rollout=r2)
        status = "rolled_back" if phase == "aborted" else "failed"
        for revision in r.get("new", [r.get("revision")]):
            if revision is not None and before.revision(int(revision)) is None:
                change.revisions.append((int(revision), status, why[:500], False))
        if phase == "aborted":
            stable = [s.version for s in before.revisions]
            to_version = stable[0] if len(stable) == 1 else stable
            change.audit.append(("rollback", r.get("version"), f"r{r.get('revision')} (v{r.get('version')})",
                                 ", ".join(f"r{s.revision} (v{s.version})" for s in before.revisions),
                                 why, {"strategy": r["kind"], "from_version": r.get("version"),
                                       "to_version": to_version}))  # fmt: skip
            change.events.append(("rolled_back", r.get("version"), {
                "revision": r.get("revision"), "from_version": r.get("version"),
                "to_version": to_version, "reason": why}))  # fmt: skip
        return change

    # -- analysis ------------------------------------------------------------------------

    def _check(self, rec: st.Record, guard: Guard, obs: Observed, backend: Backend,
               candidate: int, baseline: list[int]) -> Check:  # fmt: skip
        try:
            traffic = backend.traffic(guard.window_s)
        except MlopsError as e:
            return Check("inconclusive", {"reason": f"traffic not readable: {e}"})
        return analyse(guard, traffic, obs, candidate=candidate, baseline=baseline,
                       quality=lambda g, rev, ev: self._quality(rec, g, rev, ev))  # fmt: skip

    def _quality(self, rec: st.Record, guard: Guard, revision: int,
                 evidence: dict[str, Any]) -> list[str]:  # fmt: skip
        from ..monitor.windows import Window

        spec = rec.desired.revision(revision)
        if spec is None:
            return []
        mon = self.ws.monitor(rec.model)
        with contextlib.suppress(MlopsError):
            mon.ingest(self.ws.spool_root)
        window = Window(last=f"{max(int(guard.window_s), 1)}s")
        breaches = []
        if guard.min_accuracy is not None:
            rows = mon.predictions(window, version=spec.version)
            labelled = rows[rows["label"].notna()]
            evidence["labelled"] = len(labelled)
            if len(labelled) >= guard.min_samples:
                hits = [same_value(p, t) for p, t in zip(labelled["prediction"], labelled["label"],
                                                         strict=True)]  # fmt: skip
                accuracy = sum(hits) / len(hits)
                evidence["accuracy"] = accuracy
                if accuracy < guard.min_accuracy:
                    breaches.append(
                        f"accuracy {accuracy:.4g} < min_accuracy {guard.min_accuracy:g}"
                    )
        if guard.max_drift_share is not None:
            try:
                report = mon.drift("training", window, version=spec.version, store=False)
            except MlopsError as e:  # no reference data: say so in the evidence, do not fail
                evidence["drift"] = f"not computed: {e}"
            else:
                share = report.share_drifted
                evidence["drift_share"] = share
                if share is not None and share > guard.max_drift_share:
                    breaches.append(
                        f"drift share {share:.2f} > max_drift_share {guard.max_drift_share:g}"
                    )
        return breaches

    def _watch(self, rec: st.Record, w: dict[str, Any], obs: Observed, backend: Backend,
               now: float) -> st.Change | None:  # fmt: skip
        guard = Guard(**w["guard"])
        if now - float(w.get("last_check", 0)) < guard.interval_s:
            return None
        serving = [s for s in rec.desired.revisions if s.weight > 0]
        if not serving:
            return None
        current = max(serving, key=lambda s: s.revision)
        check = self._check(rec, guard, obs, backend, current.revision, [])
        verdicts = [*w.get("verdicts", []), check.verdict][-guard.failure_window :]
        decision = decide(guard, verdicts)
        w2 = {**w, "verdicts": verdicts, "last_check": now}
        change = st.Change("watch: check", watch=w2)
        change.checks.append((current.revision, current.version, check,
                              "rollback" if decision == "abort" else decision, None))  # fmt: skip
        if decision == "abort":
            from .rollout import plan_rollback

            why = "guard: " + "; ".join(check.breaches)
            w2["verdicts"] = []
            try:
                started = plan_rollback(self.ws, rec, None, why, force=False)
            except DeploymentError as e:
                w2["note"] = f"wanted to roll back ({why}) but cannot: {e}"
                return change
            started.watch = w2
            started.checks = change.checks
            return started
        return change


def run_watch(ws: Workspace, name: str, guard: Guard, max_checks: int | None = None) -> int:
    """Watch ``name`` with ``guard`` in this process (headless ``mlops-nb guard``) until
    interrupted or ``max_checks`` checks are done; any rollback it starts is finished
    before it returns. The number of checks made."""
    from .core import Deployment

    lock = try_lock(ws, name)
    if lock is None:
        raise DeploymentError(
            f"another process drives deployment {name!r} (a rollout or a watch): stop it, or "
            "use dep.watch(guard) to change what it watches"
        )
    dep = Deployment(ws, name)
    try:
        dep.watch_only(guard)
        ctl = Controller(ws, name)
        checks = 0
        try:
            while max_checks is None or checks < max_checks:
                before = ws._store.read(lambda con: con.execute(
                    "SELECT count(*) FROM guard_checks WHERE deployment = ?", [name]).fetchone())  # fmt: skip
                with contextlib.suppress(DeploymentConflict):
                    ctl.tick()
                after = ws._store.read(lambda con: con.execute(
                    "SELECT count(*) FROM guard_checks WHERE deployment = ?", [name]).fetchone())  # fmt: skip
                checks += int(after[0] if after else 0) - int(before[0] if before else 0)
                time.sleep(TICK)
        finally:
            dep.unwatch()
            while st.read(ws, name).active is not None:  # finish a rollback it started
                with contextlib.suppress(DeploymentConflict):
                    ctl.tick()
                time.sleep(TICK)
        return checks
    finally:
        lock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops_nb.deploy.controller")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--deployment", required=True)
    args = parser.parse_args(argv)
    from ..workspace import open as open_workspace

    if not os.path.exists(args.workspace):
        sys.exit(f"workspace {args.workspace} does not exist")
    path = str(Path(args.workspace).expanduser().resolve())
    lock = try_lock(path, args.deployment)
    if lock is None:
        return  # another controller drives this deployment
    with contextlib.suppress(OSError):
        (folder_of(path, args.deployment) / "controller.spawned").unlink()
    # Hold the file only while reading or writing: kernels share it (see store.py).
    ws = open_workspace(path, linger=0.05)
    try:
        Controller(ws, args.deployment).run()
    finally:
        ws.close()
        lock.close()


if __name__ == "__main__":
    main()
