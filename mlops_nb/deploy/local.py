"""The local target: a router process (see :mod:`.router`) per deployment, on 127.0.0.1.

The router is started in its own session so it outlives the notebook kernel that started
it; a new kernel re-attaches through the port, pid and token recorded in the workspace.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from ..errors import DeploymentError
from .router import free_port

# Routers started by this process, so they are reaped (no zombies) once stopped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalRouter:
    """Client for one deployment's router: start, configure, inspect, stop."""

    def __init__(self, port: int, token: str, pid: int, state_dir: Path) -> None:
        self.port = port
        self.token = token
        self.pid = pid
        self.state_dir = state_dir
        self.endpoint = f"http://127.0.0.1:{port}"

    @classmethod
    def start(cls, state_dir: Path, timeout: float = 30.0) -> LocalRouter:
        state_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        token = secrets.token_hex(16)
        env = {**os.environ, "MLOPS_NB_ROUTER_TOKEN": token}
        with open(state_dir / "router.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlops_nb.deploy.router", "--port", str(port),
                 "--state-dir", str(state_dir)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
        _CHILDREN[proc.pid] = proc
        router = cls(port, token, proc.pid, state_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DeploymentError(
                    f"the router exited at start ({proc.returncode}); see {state_dir / 'router.log'}"
                )
            if router.alive():
                return router
            time.sleep(0.05)
        router.stop()
        raise DeploymentError(f"the router did not start within {timeout:g}s; see {state_dir}")

    @classmethod
    def attach(cls, admin: dict[str, Any]) -> LocalRouter:
        return cls(int(admin["port"]), str(admin["token"]), int(admin["pid"]),
                   Path(admin["state_dir"]))  # fmt: skip

    def admin(self) -> dict[str, Any]:
        return {"port": self.port, "token": self.token, "pid": self.pid,
                "state_dir": str(self.state_dir)}  # fmt: skip

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = httpx.request(method, self.endpoint + path, timeout=30.0,
                              headers={"X-Mlops-Token": self.token}, **kwargs)  # fmt: skip
        except httpx.HTTPError as e:
            raise DeploymentError(
                f"the deployment's router at {self.endpoint} does not answer ({e}); it is "
                "stale: delete the deployment and deploy again"
            ) from e
        if r.status_code != 200:
            raise DeploymentError(f"router refused {method} {path}: {r.status_code} {r.text}")
        return r.json()

    def alive(self) -> bool:
        if not psutil.pid_exists(self.pid):
            return False
        try:
            return httpx.get(self.endpoint + "/v2/health/live", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def configure(self, config: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("PUT", "/_mlops/config", json=config)
        return result

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/_mlops/state")
        return result

    def stats(self, window_s: float) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/_mlops/stats?window={window_s:g}")
        return result

    def wait_ready(self, revision: int, count: int, timeout: float) -> dict[str, Any]:
        """Block until ``count`` replicas of ``revision`` are ready; explain a failure."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.state()
            for rev in state["revisions"]:
                if rev["revision"] == revision and rev["ready"] >= count:
                    return state
            error = self._load_error(revision, state)
            if error:
                # A replica that failed to load (corrupt artifact, unloadable model) will
                # not get better by waiting: say why now.
                raise DeploymentError(
                    f"revision {revision} cannot become ready: the model server says: {error}"
                )
            time.sleep(0.1)
        raise DeploymentError(
            f"revision {revision} did not get {count} ready replica(s) within {timeout:g}s: "
            f"{self._why_not_ready(revision, state)}"
        )

    def _load_error(self, revision: int, state: dict[str, Any]) -> str | None:
        for rev in state.get("revisions", []):
            if rev["revision"] != revision:
                continue
            for rep in rev["replicas"]:
                if rep["ready"] or not rep["alive"]:
                    continue
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    r = httpx.get(f"http://127.0.0.1:{rep['port']}/v2/health/ready", timeout=0.5)
                    if r.status_code == 503 and r.json().get("error"):
                        return str(r.json()["error"])
        return None

    def _why_not_ready(self, revision: int, state: dict[str, Any]) -> str:
        error = self._load_error(revision, state)
        if error:
            return f"the model server says: {error}"
        logs = sorted(self.state_dir.glob(f"replica-r{revision}-*.log"))
        tail = logs[-1].read_text(errors="replace")[-600:] if logs else "(no replica log)"
        return f"replica log {logs[-1] if logs else ''}: {tail}"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the router (it stops its replicas), then kill what is left."""
        try:
            proc = psutil.Process(self.pid)
            group = os.getpgid(self.pid)
        except (psutil.NoSuchProcess, ProcessLookupError):
            _reap(self.pid)
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            children = proc.children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            _, alive = psutil.wait_procs([proc, *children], timeout=timeout)
            for p in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        _reap(self.pid)


def _reap(pid: int) -> None:
    """Collect the exit status of a router this process started (no zombie, no warning)."""
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
