"""The local deployment's router: a reverse proxy that also supervises its replicas.

One router process per deployment listens on 127.0.0.1. It starts the replica processes
(``python -m mlops_nb.serve``) that its configuration asks for, health-checks them every
``CHECK_EVERY`` seconds, restarts any that die, and routes ``/v2/...`` requests:

- by weight across revisions (canary, rolling, blue-green: a switch is one assignment);
- or, with a routing key (``header:x-user-id``), by a stable hash of the key (A/B);
- round-robin across a revision's ready replicas; a replica that refuses a connection is
  marked unready and the request is retried on another one, so a dying replica loses at
  most its in-flight requests.

A revision removed from the configuration stops receiving new requests at once; its
replicas are stopped once their in-flight requests finish. Admin endpoints under
``/_mlops/`` (config, state, stats, shutdown) need the token given at start.
Every response carries ``X-Mlops-Version`` and ``X-Mlops-Revision`` headers.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import hashlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("mlops_nb.router")
CHECK_EVERY = 0.25
DRAIN_TIMEOUT = 15.0
STATS_KEEP = 200_000
_HOP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Replica:
    revision: int
    version: int
    port: int
    proc: subprocess.Popen[bytes]
    ready: bool = False
    inflight: int = 0
    started_at: float = field(default_factory=time.monotonic)
    draining_since: float | None = None

    def describe(self) -> dict[str, Any]:
        return {"port": self.port, "pid": self.proc.pid, "ready": self.ready,
                "alive": self.proc.poll() is None, "inflight": self.inflight}  # fmt: skip


class Router:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.config: dict[str, Any] = {"revisions": [], "routing": {"mode": "weighted"}}
        self.replicas: dict[int, list[Replica]] = {}
        self.draining: list[Replica] = []
        self.restarts: dict[int, int] = {}
        self.stats: deque[tuple[float, int, int, float, int]] = deque(maxlen=STATS_KEEP)
        self._rr = 0
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=1.0),
                                        limits=httpx.Limits(max_connections=256))  # fmt: skip
        self.started = time.time()
        self._tick_lock = asyncio.Lock()

    # -- configuration -------------------------------------------------------------------

    def apply(self, config: dict[str, Any]) -> None:
        """Adopt a new desired state; replicas follow within one supervision tick."""
        wanted = {int(r["revision"]) for r in config["revisions"]}
        for revision in list(self.replicas):
            if revision not in wanted:
                for rep in self.replicas.pop(revision):
                    self._drain(rep)
        self.config = config
        for spec in config["revisions"]:
            current = self.replicas.setdefault(int(spec["revision"]), [])
            while len(current) > int(spec["replicas"]):
                self._drain(current.pop())

    def _drain(self, rep: Replica) -> None:
        rep.ready = False
        rep.draining_since = time.monotonic()
        self.draining.append(rep)

    def _spec(self, revision: int) -> dict[str, Any] | None:
        for spec in self.config["revisions"]:
            if int(spec["revision"]) == revision:
                return dict(spec)
        return None

    # -- supervision ---------------------------------------------------------------------

    def _spawn(self, spec: dict[str, Any]) -> Replica:
        port = free_port()
        log_path = self.state_dir / f"replica-r{spec['revision']}-{port}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlops_nb.serve", "--spec", str(spec["spec"]), "--port",
                 str(port), "--parent-pid", str(os.getpid())],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        return Replica(int(spec["revision"]), int(spec["version"]), port, proc)

    async def supervise(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception:
                log.exception("supervision tick failed")
            await asyncio.sleep(CHECK_EVERY)

    async def _tick(self) -> None:
        # The supervision loop and a config change may both tick: one at a time.
        async with self._tick_lock:
            await self._tick_locked()

    async def _tick_locked(self) -> None:
        for spec in self.config["revisions"]:
            revision = int(spec["revision"])
            current = self.replicas.setdefault(revision, [])
            for rep in list(current):
                if rep.proc.poll() is not None:
                    log.warning("replica r%s port %s exited (%s); restarting", revision, rep.port,
                                rep.proc.returncode)  # fmt: skip
                    current.remove(rep)
                    self.restarts[revision] = self.restarts.get(revision, 0) + 1
            while len(current) < int(spec["replicas"]):
                current.append(self._spawn(spec))
        checks = [rep for reps in self.replicas.values() for rep in reps]
        results = await asyncio.gather(*(self._ready(rep) for rep in checks))
        for rep, ok in zip(checks, results, strict=True):
            rep.ready = ok
        now = time.monotonic()
        for rep in list(self.draining):
            if rep.inflight == 0 or now - (rep.draining_since or now) > DRAIN_TIMEOUT:
                self.draining.remove(rep)
                await asyncio.get_running_loop().run_in_executor(None, _stop, rep.proc)

    async def _ready(self, rep: Replica) -> bool:
        if rep.proc.poll() is not None:
            return False
        try:
            r = await self.client.get(f"http://127.0.0.1:{rep.port}/v2/health/ready", timeout=1.0)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def stop_all(self) -> None:
        everyone = [rep for reps in self.replicas.values() for rep in reps] + self.draining
        for rep in everyone:
            with contextlib.suppress(ProcessLookupError):
                rep.proc.send_signal(signal.SIGTERM)
        for rep in everyone:
            _stop(rep.proc)

    # -- routing -------------------------------------------------------------------------

    def _choose(self, request: Request) -> list[int]:
        """Revisions to try, most preferred first."""
        live = [s for s in self.config["revisions"]
                if int(s.get("weight", 0)) > 0 and any(r.ready for r in self.replicas.get(int(s["revision"]), []))]  # fmt: skip
        if not live:
            live = [s for s in self.config["revisions"]
                    if any(r.ready for r in self.replicas.get(int(s["revision"]), []))]  # fmt: skip
            if not live:
                return []
            weights = [1] * len(live)
        else:
            weights = [int(s["weight"]) for s in live]
        routing = self.config.get("routing", {})
        key = routing.get("key")
        point: float | None = None
        if key and key.startswith("header:"):
            value = request.headers.get(key[7:])
            if value is not None:
                digest = hashlib.sha256(value.encode()).digest()
                point = int.from_bytes(digest[:8], "big") / 2**64
        if point is None:
            point = random.random()
        total = sum(weights)
        bounds = list(np.cumsum(weights) / total)
        first = min(bisect.bisect_right(bounds, point), len(live) - 1)
        order = [live[first]] + [s for i, s in enumerate(live) if i != first]
        return [int(s["revision"]) for s in order]

    def _replicas_for(self, revision: int) -> list[Replica]:
        ready = [r for r in self.replicas.get(revision, []) if r.ready]
        if not ready:
            return []
        self._rr = (self._rr + 1) % len(ready)
        return ready[self._rr :] + ready[: self._rr]

    async def proxy(self, request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        url_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        start = time.perf_counter()
        for revision in self._choose(request):
            for rep in self._replicas_for(revision):
                rep.inflight += 1
                try:
                    r = await self.client.request(request.method, f"http://127.0.0.1:{rep.port}{url_path}",
                                                  content=body, headers=headers)  # fmt: skip
                except httpx.TransportError:
                    # Refused or reset: this replica is going away; try the next one.
                    rep.ready = False
                    continue
                finally:
                    rep.inflight -= 1
                elapsed = (time.perf_counter() - start) * 1000.0
                if request.url.path.endswith("/infer"):
                    self.stats.append(
                        (time.time(), rep.version, rep.revision, elapsed, r.status_code)
                    )
                out = {"content-type": r.headers.get("content-type", "application/json"),
                       "x-mlops-version": str(rep.version), "x-mlops-revision": str(rep.revision)}  # fmt: skip
                return Response(r.content, status_code=r.status_code, headers=out)
        if request.url.path.endswith("/infer"):
            self.stats.append((time.time(), -1, -1, (time.perf_counter() - start) * 1000.0, 503))
        return JSONResponse({"error": "no ready replica; the deployment is starting or down"},
                            status_code=503)  # fmt: skip

    # -- admin ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        revisions = []
        for spec in self.config["revisions"]:
            revision = int(spec["revision"])
            reps = self.replicas.get(revision, [])
            revisions.append({
                "revision": revision, "version": int(spec["version"]),
                "weight": int(spec.get("weight", 0)), "desired": int(spec["replicas"]),
                "ready": sum(r.ready for r in reps), "restarts": self.restarts.get(revision, 0),
                "replicas": [r.describe() for r in reps],
            })  # fmt: skip
        return {"pid": os.getpid(), "started": self.started, "revisions": revisions,
                "routing": self.config.get("routing", {}), "draining": len(self.draining)}  # fmt: skip

    def window_stats(self, seconds: float) -> dict[str, Any]:
        since = time.time() - seconds
        rows = [s for s in self.stats if s[0] >= since]
        out: dict[str, Any] = {}
        for version in sorted({r[1] for r in rows}):
            mine = [r for r in rows if r[1] == version]
            lat = np.array([r[3] for r in mine])
            errors = sum(1 for r in mine if r[4] >= 500)
            out[str(version)] = {
                "count": len(mine), "errors": errors, "error_rate": errors / len(mine),
                "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                "p99_ms": float(np.percentile(lat, 99)),
            }  # fmt: skip
        return {"window_s": seconds, "versions": out}


def _stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def create_app(token: str, state_dir: Path) -> Starlette:
    router = Router(state_dir)

    def authorized(request: Request) -> bool:
        return request.headers.get("x-mlops-token") == token

    async def config(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "bad or missing X-Mlops-Token"}, status_code=403)
        router.apply(await request.json())
        await router._tick()
        return JSONResponse(router.state())

    async def state(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "bad or missing X-Mlops-Token"}, status_code=403)
        return JSONResponse(router.state())

    async def stats(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "bad or missing X-Mlops-Token"}, status_code=403)
        return JSONResponse(router.window_stats(float(request.query_params.get("window", "60"))))

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        ok = any(r.ready for reps in router.replicas.values() for r in reps)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(router.supervise())
        yield
        task.cancel()
        await asyncio.get_running_loop().run_in_executor(None, router.stop_all)
        await router.client.aclose()

    routes = [
        Route("/_mlops/config", config, methods=["PUT"]),
        Route("/_mlops/state", state),
        Route("/_mlops/stats", stats),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/{path:path}", router.proxy, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.router = router
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops_nb.deploy.router")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--config", help="initial configuration (JSON file)")
    args = parser.parse_args(argv)
    token = os.environ.get("MLOPS_NB_ROUTER_TOKEN", "")
    if not token:
        parser.error("MLOPS_NB_ROUTER_TOKEN must be set")
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(message)s")
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(token, state_dir)
    if args.config:
        app.state.router.apply(json.loads(Path(args.config).read_text()))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=20)  # fmt: skip


if __name__ == "__main__":
    main()
