"""The emulator's kubelet: runs a pod's ``python`` containers as local processes.

A container whose command starts with ``python`` runs as ``sys.executable`` with the
same arguments, its volume mounts mapped onto folders of the pod (``emptyDir``,
``configMap`` and ``secret`` volumes are written out), ``--host`` bound to 127.0.0.1 and
``--port <containerPort>`` moved to a free local port, so this package's model server
serves for real and the API server's proxies reach it. Init containers run first, in
order. A process that exits is restarted with a growing back-off, counted in
``restartCount`` and reported in ``lastState.terminated``. Containers of other images
are simulated: running and ready (or as the Deployment's outcome says).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ... import loopback
from .controller import POD, RS, Controller
from .resources import KINDS_BY_KIND
from .store import ApiError, Store, now

CONFIGMAP = KINDS_BY_KIND[("v1", "ConfigMap")]
SECRET = KINDS_BY_KIND[("v1", "Secret")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runnable(container: dict[str, Any]) -> bool:
    cmd = [*(container.get("command") or [])]
    return bool(cmd) and Path(cmd[0]).name.startswith("python")


@dataclass
class Run:
    """One pod's processes and what the kubelet reports about them."""

    root: Path
    mounts: dict[str, Path]
    ports: dict[int, int] = field(default_factory=dict)
    init_done: int = 0
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: str | None = None
    last: dict[str, Any] | None = None
    ready: bool = False
    waiting: str | None = "ContainerCreating"


class Kubelet:
    def __init__(self, store: Store, controller: Controller, processes: bool, root: Path) -> None:
        self.store, self.controller, self.processes = store, controller, processes
        self.root = root
        self.runs: dict[str, Run] = {}
        self.http = loopback.client(timeout=1.0)
        self.crash_started: dict[str, float] = {}

    # -- lifecycle -----------------------------------------------------------------------

    def step(self) -> None:
        pods = self.store.list(POD, None)
        alive = {p["metadata"]["uid"] for p in pods}
        for uid in [u for u in self.runs if u not in alive]:
            self._kill(self.runs.pop(uid))
        for pod in pods:
            spec = pod["spec"]
            if self.processes and any(runnable(c) for c in spec.get("containers", [])):
                self._run(pod)
            else:
                self._simulate(pod)

    def close(self) -> None:
        for run in self.runs.values():
            if run.proc is not None and run.proc.poll() is None:
                os.killpg(run.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for run in self.runs.values():
            self._kill(run, max(0.1, deadline - time.monotonic()))
        self.runs.clear()
        self.http.close()

    def _kill(self, run: Run, grace: float = 10.0) -> None:
        proc = run.proc
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(run.root, ignore_errors=True)

    def port_of(self, pod: dict[str, Any], port: int | str | None) -> int | None:
        """The local port serving ``port`` (number or name) of a pod, None if simulated."""
        run = self.runs.get(pod["metadata"]["uid"])
        if run is None:
            return None
        for c in pod["spec"].get("containers", []):
            for p in c.get("ports", []):
                if port in (None, p["containerPort"], p.get("name"), str(p["containerPort"])):
                    return run.ports.get(int(p["containerPort"]))
        return None

    def log(self, pod: dict[str, Any], container: str | None) -> str:
        run = self.runs.get(pod["metadata"]["uid"])
        name = container or pod["spec"]["containers"][0]["name"]
        path = run.root / f"{name}.log" if run else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    # -- simulated pods ------------------------------------------------------------------

    def _outcome(self, pod: dict[str, Any]) -> str:
        refs = pod["metadata"].get("ownerReferences") or []
        if not refs:
            return "succeed"
        try:
            rs = self.store.get(RS, pod["metadata"]["namespace"], refs[0]["name"])
        except ApiError:
            return "succeed"
        return self.controller.outcome_of_rs(rs)

    def _simulate(self, pod: dict[str, Any]) -> None:
        outcome = self._outcome(pod)
        uid = pod["metadata"]["uid"]
        statuses = []
        for c in pod["spec"].get("containers", []):
            st: dict[str, Any] = {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                                  "ready": outcome == "succeed", "restartCount": 0,
                                  "started": outcome == "succeed"}  # fmt: skip
            if outcome == "succeed":
                st["state"] = {"running": {"startedAt": pod["metadata"]["creationTimestamp"]}}
            elif outcome == "crash":
                start = self.crash_started.setdefault(uid, time.monotonic())
                st["restartCount"] = 1 + int(time.monotonic() - start)
                st["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                               f"back-off restarting failed container {c['name']}"}}  # fmt: skip
                st["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error",
                                                  "finishedAt": now()}}  # fmt: skip
            else:
                st["state"] = {"waiting": {"reason": "ContainerCreating"}}
            statuses.append(st)
        self._put(pod, outcome == "succeed", statuses, running=outcome in ("succeed", "crash"))

    def _put(self, pod: dict[str, Any], ready: bool, statuses: list[dict[str, Any]], *,
             running: bool, init: list[dict[str, Any]] | None = None) -> None:  # fmt: skip
        flag = "True" if ready else "False"
        status = {
            "phase": "Running" if running else "Pending", "podIP": "127.0.0.1", "hostIP": "127.0.0.1",
            "startTime": pod["metadata"]["creationTimestamp"],
            "conditions": [{"type": t, "status": s} for t, s in (
                ("PodScheduled", "True"), ("Initialized", "True" if running else "False"),
                ("ContainersReady", flag), ("Ready", flag))],
            "containerStatuses": statuses,
        }  # fmt: skip
        if init is not None:
            status["initContainerStatuses"] = init
        old = pod.get("status") or {}
        # Times of unchanged restarts would make every step a write: compare without them.
        if _strip(old) != _strip(status):
            self.store.put_status(
                POD, pod["metadata"]["namespace"], pod["metadata"]["name"], status
            )

    # -- real processes ------------------------------------------------------------------

    def _prepare(self, pod: dict[str, Any]) -> Run:
        root = Path(tempfile.mkdtemp(prefix=f"pod-{pod['metadata']['name']}-", dir=self.root))
        mounts: dict[str, Path] = {}
        ns = pod["metadata"]["namespace"]
        for vol in pod["spec"].get("volumes", []):
            where = root / "volumes" / vol["name"]
            where.mkdir(parents=True)
            mounts[vol["name"]] = where
            for kind, key in ((CONFIGMAP, "configMap"), (SECRET, "secret")):
                if key not in vol:
                    continue
                name = vol[key].get("name") or vol[key].get("secretName")
                try:
                    data = self.store.get(kind, ns, name).get("data") or {}
                except ApiError:
                    data = {}
                for k, v in data.items():
                    raw = base64.b64decode(v) if key == "secret" else str(v).encode()
                    (where / k).write_bytes(raw)
        return Run(root=root, mounts=mounts)

    def _argv(self, run: Run, container: dict[str, Any]) -> list[str]:
        mounts = sorted(((m["mountPath"], run.mounts[m["name"]]) for m in container.get("volumeMounts", [])
                         if m["name"] in run.mounts), key=lambda m: -len(m[0]))  # fmt: skip
        argv = [sys.executable, *container["command"][1:], *container.get("args", [])]
        out = []
        for i, arg in enumerate(argv):
            prev = argv[i - 1] if i else ""
            if prev == "--host":
                arg = "127.0.0.1"
            elif prev == "--port" and arg.isdigit():
                arg = str(run.ports.setdefault(int(arg), free_port()))
            for path, local in mounts:
                if arg == path or arg.startswith(path + "/"):
                    arg = str(local) + arg[len(path) :]
                    break
            out.append(arg)
        return out

    def _start(self, run: Run, container: dict[str, Any]) -> subprocess.Popen[bytes]:
        env = {**os.environ, **{e["name"]: str(e.get("value", "")) for e in container.get("env", [])
                                if "value" in e}}  # fmt: skip
        with open(run.root / f"{container['name']}.log", "ab") as out:
            return subprocess.Popen(self._argv(run, container), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=run.root,
                                    start_new_session=True)  # fmt: skip

    def _run(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        run = self.runs.get(uid)
        if run is None:
            run = self.runs[uid] = self._prepare(pod)
        inits = pod["spec"].get("initContainers", [])
        main = next(c for c in pod["spec"]["containers"] if runnable(c))
        current = inits[run.init_done] if run.init_done < len(inits) else main
        proc = run.proc
        if proc is not None and proc.poll() is not None:
            code = proc.returncode
            run.proc = None
            if current is not main and code == 0:
                run.init_done += 1
            else:
                run.restarts += 1
                run.last = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                           "startedAt": run.started_at, "finishedAt": now()}}  # fmt: skip
                run.next_start = time.monotonic() + min(10.0, 0.5 * 2 ** (run.restarts - 1))
                run.waiting = "CrashLoopBackOff"
            run.ready = False
            current = inits[run.init_done] if run.init_done < len(inits) else main
        if run.proc is None and time.monotonic() >= run.next_start:
            run.proc = self._start(run, current)
            run.started_at = now()
            run.waiting = None
        if current is main and run.proc is not None:
            run.ready = self._probe(run, main)
        self._report(pod, run, main, len(inits))

    def _probe(self, run: Run, container: dict[str, Any]) -> bool:
        probe = (container.get("readinessProbe") or {}).get("httpGet")
        if not probe:
            return True
        port = probe.get("port")
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        number = int(ports.get(port, port))
        local = run.ports.get(number)
        if local is None:
            return False
        try:
            return (
                self.http.get(f"http://127.0.0.1:{local}{probe.get('path', '/')}").status_code < 400
            )
        except httpx.HTTPError:
            return False

    def _report(self, pod: dict[str, Any], run: Run, main: dict[str, Any], n_init: int) -> None:
        in_init = run.init_done < n_init
        state: dict[str, Any]
        if run.waiting or run.proc is None:
            reason = ("PodInitializing" if in_init and run.waiting != "CrashLoopBackOff"
                      else run.waiting or "ContainerCreating")  # fmt: skip
            state = {"waiting": {"reason": reason}}
        else:
            state = {"running": {"startedAt": run.started_at}}
        st: dict[str, Any] = {"name": main["name"], "image": main.get("image", ""), "imageID": "",
                              "ready": run.ready, "started": not in_init and run.proc is not None,
                              "restartCount": 0 if in_init else run.restarts, "state": state}  # fmt: skip
        if run.last and not in_init:
            st["lastState"] = run.last
        init = [{"name": c["name"], "ready": i < run.init_done, "restartCount": run.restarts if i == run.init_done else 0,
                 "image": c.get("image", ""), "imageID": "",
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}} if i < run.init_done
                 else state, **({"lastState": run.last} if run.last and i == run.init_done else {})}
                for i, c in enumerate(pod["spec"].get("initContainers", []))]  # fmt: skip
        self._put(pod, run.ready, [st], running=not in_init, init=init or None)


def _strip(status: dict[str, Any]) -> Any:
    import json

    text = json.dumps(status, sort_keys=True)
    for key in ("finishedAt", "startedAt"):
        text = __import__("re").sub(rf'"{key}": "[^"]*"', f'"{key}": ""', text)
    return text
