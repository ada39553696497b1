"""The local target: a router process (see :mod:`.router`) per deployment, on 127.0.0.1.

The router is started in its own session so it outlives the notebook kernel that started
it; a new kernel re-attaches through the port, pid, start time and token recorded in the
workspace. Before any signal the router is identified by all of these: after a crash or a
reboot the recorded pid may belong to a stranger, who is then left alone.

>>> Local()
Local(flush_seconds=2.0)
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import psutil

from .. import detached, loopback
from ..errors import DeploymentError, InvalidArgument
from ..serve.resources import cpu_and_rss
from ..serve.spec import ServeSpec
from .options import REPLACE_UNREADY_AFTER, spec_options
from .router import free_port
from .target import (
    Backend,
    DesiredState,
    Observed,
    ReplicaStatus,
    RevisionStatus,
    RevisionTraffic,
    Target,
    Traffic,
)

if TYPE_CHECKING:
    from ..workspace import Workspace


class _Superseded(DeploymentError):
    """The router holds a newer configuration than the one offered."""


TOKEN_ENV = "MLOPS_NB_ROUTER_TOKEN"
# Routers started by this process, so they are reaped (no zombies) once stopped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@atexit.register
def _sweep() -> None:
    """At exit, collect routers that stopped by themselves (their workspace was removed)
    or were reaped elsewhere; routers still serving are left running, as intended."""
    for proc in list(_CHILDREN.values()):
        proc.poll()


@dataclass(frozen=True)
class Local(Target):
    """Deployments as processes on this machine: a router and model-server replicas."""

    kind: ClassVar[str] = "local"
    flush_seconds: float = 2.0

    def check(self, ws: Workspace) -> None:
        if ws._store.memory:
            raise InvalidArgument(
                "a deployment outlives the kernel, but an in-memory workspace does not: "
                "open a file instead, e.g. ws = mnb.open('mlops.duckdb')"
            )

    def provision(self, ws: Workspace, name: str) -> LocalBackend:
        state_dir = Path(ws.deploy_root) / name
        return LocalBackend.start(ws, self, state_dir)

    def attach(self, ws: Workspace, record: dict[str, Any]) -> LocalBackend:
        return LocalBackend(ws, self, record)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Local:
        return cls(flush_seconds=float(record.get("flush_seconds", 2.0)))


class LocalBackend(Backend):
    """Client for one deployment's router: start, configure, inspect, stop."""

    kind = "local"

    def __init__(self, ws: Workspace, target: Local, record: dict[str, Any]) -> None:
        self._ws = ws
        self.target = target
        self._record = dict(record)
        self.port = int(record["port"])
        self.token = str(record["token"])
        self.pid = int(record["pid"])
        self.state_dir = Path(record["state_dir"])
        self._endpoint = f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @classmethod
    def start(cls, ws: Workspace, target: Local, state_dir: Path,
              timeout: float = 30.0) -> LocalBackend:  # fmt: skip
        state_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        token = secrets.token_hex(16)
        # Detached: a pipeline stage that deploys leaves the router (and its replicas) up.
        env = {**detached.environment(), TOKEN_ENV: token}
        with open(state_dir / "router.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlops_nb.deploy.router", "--port", str(port),
                 "--state-dir", str(state_dir), "--workspace", str(Path(ws.path).resolve())],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
        _CHILDREN[proc.pid] = proc
        created = psutil.Process(proc.pid).create_time()
        record = {"port": port, "token": token, "pid": proc.pid, "create_time": created,
                  "state_dir": str(state_dir), "flush_seconds": target.flush_seconds}  # fmt: skip
        backend = cls(ws, target, record)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DeploymentError(
                    f"the router exited at start ({proc.returncode}); see {state_dir / 'router.log'}"
                )
            if backend._answers():
                return backend
            time.sleep(0.02)
        backend.stop()
        raise DeploymentError(f"the router did not start within {timeout:g}s; see {state_dir}")

    def record(self) -> dict[str, Any]:
        return dict(self._record)

    # -- identity ------------------------------------------------------------------------

    def _process(self) -> psutil.Process | None:
        """The router process, only if it verifiably is ours: pid, start time, command and
        the token it was started with, read from its environment or, where the system
        hides other processes' environments (macOS), proven by the router itself: it
        answers the token on the recorded port and names the recorded pid."""
        try:
            proc = psutil.Process(self.pid)
            created = proc.create_time()
            cmdline = proc.cmdline()
        except psutil.Error:
            return None
        recorded = self._record.get("create_time")
        if recorded is None or abs(created - float(recorded)) > 0.05:
            return None
        if "mlops_nb.deploy.router" not in cmdline or str(self.state_dir) not in cmdline:
            return None
        try:
            token = proc.environ().get(TOKEN_ENV)
        except psutil.AccessDenied:
            token = None
        except psutil.Error:
            return None
        if token is None:
            state = self._state()
            return proc if state is not None and state.get("pid") == self.pid else None
        return proc if secrets.compare_digest(token, self.token) else None

    def _state(self) -> dict[str, Any] | None:
        """What the router on the recorded port says of itself, if it takes our token."""
        try:
            r = loopback.shared().get(self._endpoint + "/_mlops/state", timeout=2.0,
                                 headers={"X-Mlops-Token": self.token})  # fmt: skip
            state = r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _answers(self) -> bool:
        return self._state() is not None

    def alive(self) -> bool:
        return self._process() is not None and self._answers()

    # -- admin ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = loopback.shared().request(method, self._endpoint + path, timeout=30.0,
                                     headers={"X-Mlops-Token": self.token}, **kwargs)  # fmt: skip
        except httpx.HTTPError as e:
            raise DeploymentError(
                f"the deployment's router at {self._endpoint} does not answer ({e}); it is "
                "stale: delete the deployment and deploy again"
            ) from e
        if r.status_code == 409:
            raise _Superseded(r.text)
        if r.status_code != 200:
            raise DeploymentError(f"router refused {method} {path}: {r.status_code} {r.text}")
        return r.json()

    def _spec_path(self, model: str, version: int, server: dict[str, Any]) -> Path:
        options = {"flush_seconds": self.target.flush_seconds, **spec_options(server)}
        # One file per version and options: replicas started later keep theirs.
        tag = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
        path = self.state_dir / f"spec-v{version}-{tag}.json"
        if not path.exists():
            v = self._ws.model(model).version(version)
            ServeSpec.of(v, spool=str(self._ws.spool_root), **options).write(path)
        return path

    def apply(self, desired: DesiredState, generation: int = 0) -> None:
        revisions = [
            {"revision": r.revision, "version": r.version, "replicas": r.replicas,
             "weight": r.weight, "digest": r.digest,
             "spec": str(self._spec_path(desired.model, r.version, desired.server))}
            for r in desired.revisions
        ]  # fmt: skip
        server = desired.server
        config = {"model": desired.model, "generation": generation, "revisions": revisions,
                  "routing": {"mode": desired.routing, "key": desired.key},
                  "replace_unready_after_s": server.get("replace_unready_after_s",
                                                        REPLACE_UNREADY_AFTER),
                  "max_body_bytes": server.get("max_body_bytes", ServeSpec.max_body_bytes)}  # fmt: skip
        # A newer state applied already must not be replaced by an older one.
        with contextlib.suppress(_Superseded):
            self._request("PUT", "/_mlops/config", content=json.dumps(config))

    def observe(self) -> Observed:
        if self._process() is None:
            return Observed(alive=False, message="router process is gone")
        try:
            state = self._request("GET", "/_mlops/state")
        except DeploymentError as e:
            return Observed(alive=False, message=str(e))
        revisions = tuple(
            RevisionStatus(
                revision=r["revision"], version=r["version"], desired=r["desired"],
                ready=r["ready"], restarts=r["restarts"], crash_loop=r["crash_loop"],
                message=(f"crash loop: replicas exit ({r['last_exit']}) before ready"
                         if r["crash_loop"] else None),
                replicas=tuple(_replica(p) for p in r["replicas"]),
                backoff_s=r.get("backoff_s"),
            )
            for r in state["revisions"]
        )  # fmt: skip
        return Observed(alive=True, revisions=revisions)

    def traffic(self, window_s: float) -> Traffic:
        stats = self._request("GET", f"/_mlops/stats?window={window_s:g}")
        revisions = tuple(
            RevisionTraffic(revision=s["revision"], version=s["version"], requests=s["count"],
                            errors_5xx=s["errors_5xx"], errors_4xx=s["errors_4xx"],
                            p50_ms=s["p50_ms"], p95_ms=s["p95_ms"], p99_ms=s["p99_ms"])
            for s in stats["revisions"].values() if s["revision"] >= 0
        )  # fmt: skip
        misses = {int(k): int(n) for k, n in stats["no_replica"].items()}
        return Traffic(window_s=window_s, revisions=revisions, no_replica=misses)

    def explain(self, revision: int) -> str | None:
        """What a not-ready replica's last probe said, or the tail of its log."""
        reasons = self._probe_says(revision)
        if reasons:
            return f"the model server says: {reasons[0][0]}"
        logs = sorted(self.state_dir.glob(f"replica-r{revision}-*.log"))
        if not logs:
            return None
        tail = logs[-1].read_text(errors="replace")[-600:]
        return f"replica log {logs[-1]}: {tail}"

    def _probe_says(self, revision: int) -> list[tuple[str, str | None]]:
        """(reason, load error) of the revision's alive, not-ready replicas, from the
        router's last ready probe of each."""
        try:
            state = self._request("GET", "/_mlops/state")
        except DeploymentError:
            return []
        return [(rep["reason"], rep.get("load_error"))
                for rev in state["revisions"] if rev["revision"] == revision
                for rep in rev["replicas"]
                if rep.get("reason") and rep["alive"] and not rep["ready"]]  # fmt: skip

    def replica_report(self, replica: ReplicaStatus) -> dict[str, Any] | None:
        """The replica's ``/v2/health/stats``: payload log counts and drops, queue, process."""
        try:
            url = f"http://127.0.0.1:{replica.detail['port']}/v2/health/stats"
            r = loopback.shared().get(url, timeout=1.0)
            return dict(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def load_error(self, revision: int) -> str | None:
        """A definite load failure (not just "still starting")."""
        errors = [load for _, load in self._probe_says(revision) if load]
        return f"the model server says: {errors[0]}" if errors else None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the router (it stops its replicas), then kill what is left: only if the
        process is verifiably this deployment's router."""
        proc = self._process()
        if proc is None:
            _reap(self.pid)
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            children = proc.children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            _, alive = psutil.wait_procs([proc, *children], timeout=timeout)
            for p in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
        _reap(self.pid)


def _replica(data: dict[str, Any]) -> ReplicaStatus:
    """A replica with its CPU seconds and resident memory (psutil), worker processes
    (``pool="processes"``) included."""
    cpu: float | None = None
    rss: int | None = None
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(int(data["pid"]))
        proc.cpu_times()  # gone: no figures rather than zeros
        cpu, rss = cpu_and_rss([proc, *proc.children(recursive=True)])
    return ReplicaStatus(id=str(data["port"]), ready=bool(data["ready"]), alive=bool(data["alive"]),
                         cpu_seconds=cpu, rss_bytes=rss,
                         detail={"pid": data["pid"], "port": data["port"],
                                 "inflight": data.get("inflight", 0)})  # fmt: skip


def _reap(pid: int) -> None:
    """Collect the exit status of a router this process started (no zombie, no warning),
    and of any other it started that has exited meanwhile (killed, or crashed)."""
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    for other, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            _CHILDREN.pop(other, None)
