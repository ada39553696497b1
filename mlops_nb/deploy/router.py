"""The local deployment's router: a reverse proxy that also supervises its replicas.

One router process per deployment listens on 127.0.0.1. It starts the replica processes
(``python -m mlops_nb.serve``) that its configuration asks for, health-checks them every
``CHECK_EVERY`` seconds, restarts any that die (with exponential backoff; a replica that
keeps dying before it gets ready is reported as ``crash_loop``; one that served, then stays
unready for ``REPLACE_UNREADY_AFTER`` seconds, stuck, is replaced), and routes ``/v2/...``:

- by weight across revisions (canary, rolling, blue-green: a switch is one assignment);
- or, with a routing key (``header:x-user-id``), by a stable hash of the key (A/B);
- round-robin across a revision's ready replicas. A request is retried on another replica
  only when it never reached the first (see :mod:`.proxy`).

When the revision a request was meant for has no ready replica, another serving revision
answers it and the miss is counted against the meant one (``no_replica``), so a
crash-looping canary is seen by the analysis instead of quietly getting no traffic.

A revision removed from the configuration stops receiving new requests at once; its
replicas stop once their in-flight requests finish. Admin endpoints under ``/_mlops/``
(``config``, ``state``, ``stats``, ``shutdown``) need the token given at start;
``PUT /_mlops/config`` refuses (409) a configuration older than the one applied.
With ``--workspace FILE`` the router stops itself and its replicas once that file is
gone (a deleted workspace leaves nothing running). Every proxied response carries
``X-Mlops-Version`` and ``X-Mlops-Revision``.
"""

from __future__ import annotations

import argparse
import asyncio
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import proxy
from .proxy import NotSent, Request, Response, SentButFailed, json_response

log = logging.getLogger("mlops_nb.router")
CHECK_EVERY = 0.25
CHECK_STARTING = 0.05
DRAIN_TIMEOUT = 15.0
STATS_KEEP = 200_000
REQUEST_TIMEOUT = 60.0
MAX_BODY = 10 * 1024 * 1024  # until a configuration sets max_body_bytes
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
CRASH_LOOP_AFTER = 3  # deaths in a row before ready
WORKSPACE_CHECK_EVERY = 5.0
# A replica that served, then stays unready this long (stuck predictions) is replaced,
# until a configuration sets replace_unready_after_s.
REPLACE_UNREADY_AFTER = 30.0


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
    was_ready: bool = False
    inflight: int = 0
    started_at: float = field(default_factory=time.monotonic)
    draining_since: float | None = None
    unready_since: float | None = None
    reason: str | None = None  # why its last ready probe said no
    load_error: str | None = None  # set when the model failed to load: waiting won't help

    def describe(self) -> dict[str, Any]:
        return {"port": self.port, "pid": self.proc.pid, "ready": self.ready,
                "alive": self.proc.poll() is None, "inflight": self.inflight,
                "reason": self.reason, "load_error": self.load_error}  # fmt: skip


@dataclass
class Health:
    """Restart bookkeeping of one revision: deaths, backoff, crash loop."""

    restarts: int = 0
    deaths_before_ready: int = 0
    next_start: float = 0.0
    last_exit: int | None = None
    backoff: float = 0.0  # the wait before the last restart

    @property
    def crash_loop(self) -> bool:
        return self.deaths_before_ready >= CRASH_LOOP_AFTER


class Router:
    def __init__(self, state_dir: Path, token: str, workspace: str | None = None) -> None:
        self.state_dir = state_dir
        self.token = token.encode()
        self.workspace = workspace
        self.config: dict[str, Any] = {"revisions": [], "routing": {"mode": "weighted"},
                                       "generation": -1}  # fmt: skip
        self.replicas: dict[int, list[Replica]] = {}
        self.health: dict[int, Health] = {}
        self.draining: list[Replica] = []
        # (time, revision, version, latency ms, status); version -1: nobody could answer.
        self.stats: deque[tuple[float, int, int, float, int]] = deque(maxlen=STATS_KEEP)
        self.misses: deque[tuple[float, int]] = deque(maxlen=STATS_KEEP)
        self.pool = proxy.Pool()
        self.started = time.time()
        self._rr = 0
        self._tick_lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self._live: list[tuple[dict[str, Any], int]] = []

    # -- configuration -------------------------------------------------------------------

    @property
    def max_body(self) -> int:
        """The largest request body passed on (larger: 413 before it is read)."""
        return int(self.config.get("max_body_bytes", MAX_BODY))

    def apply(self, config: dict[str, Any]) -> None:
        """Adopt a new desired state; replicas follow within one supervision tick."""
        wanted = {int(r["revision"]) for r in config["revisions"]}
        for revision in list(self.replicas):
            if revision not in wanted:
                for rep in self.replicas.pop(revision):
                    self._drain(rep)
                self.health.pop(revision, None)
        self.config = config
        for spec in config["revisions"]:
            current = self.replicas.setdefault(int(spec["revision"]), [])
            while len(current) > int(spec["replicas"]):
                self._drain(current.pop())
        self._refresh_live()

    def _drain(self, rep: Replica) -> None:
        rep.ready = False
        rep.draining_since = time.monotonic()
        self.pool.forget(rep.port)
        self.draining.append(rep)

    def _refresh_live(self) -> None:
        """Revisions that can take traffic now, with their weights (for the hot path)."""
        self._live = [(s, int(s.get("weight", 0))) for s in self.config["revisions"]
                      if any(r.ready for r in self.replicas.get(int(s["revision"]), []))]  # fmt: skip

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
        last_ws_check = time.monotonic()
        while not self.stopping.is_set():
            try:
                await self._tick()
            except Exception:
                log.exception("supervision tick failed")
            if self.workspace and time.monotonic() - last_ws_check > WORKSPACE_CHECK_EVERY:
                last_ws_check = time.monotonic()
                if not os.path.exists(self.workspace):
                    log.warning("workspace %s is gone; stopping", self.workspace)
                    self.stopping.set()
            # Starting replicas are probed often, so a new one serves as soon as it can.
            starting = any(not r.was_ready and r.proc.poll() is None
                           for reps in self.replicas.values() for r in reps)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.stopping.wait(), CHECK_STARTING if starting else CHECK_EVERY
                )

    async def _tick(self) -> None:
        # The supervision loop and a config change may both tick: one at a time.
        async with self._tick_lock:
            await self._tick_locked()

    async def _tick_locked(self) -> None:
        now = time.monotonic()
        for spec in self.config["revisions"]:
            revision = int(spec["revision"])
            current = self.replicas.setdefault(revision, [])
            health = self.health.setdefault(revision, Health())
            for rep in list(current):
                code = rep.proc.poll()
                if code is None:
                    continue
                current.remove(rep)
                self.pool.forget(rep.port)
                health.restarts += 1
                health.last_exit = code
                health.deaths_before_ready = 0 if rep.was_ready else health.deaths_before_ready + 1
                delay = min(
                    BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, health.deaths_before_ready - 1)
                )
                health.backoff = delay if health.deaths_before_ready else 0.0
                health.next_start = now + health.backoff
                log.warning("replica r%s port %s exited (%s); restart in %.1fs", revision,
                            rep.port, code, health.next_start - now)  # fmt: skip
            while len(current) < int(spec["replicas"]) and now >= health.next_start:
                current.append(self._spawn(spec))
        checks = [rep for reps in self.replicas.values() for rep in reps]
        results = await asyncio.gather(*(self._ready(rep) for rep in checks))
        replace_after = float(self.config.get("replace_unready_after_s", REPLACE_UNREADY_AFTER))
        for rep, ok in zip(checks, results, strict=True):
            rep.ready = ok
            since = rep.unready_since = None if ok else (rep.unready_since or now)
            if rep.was_ready and since is not None and now - since > replace_after:
                # Alive but not ready for long (a stuck prediction): replace it.
                log.warning("replica r%s port %s unready for %.0fs; replacing it", rep.revision,
                            rep.port, now - since)  # fmt: skip
                rep.unready_since = None
                await asyncio.get_running_loop().run_in_executor(None, _stop, rep.proc, 5.0)
                continue
            if ok and not rep.was_ready:
                rep.was_ready = True
                self.health.setdefault(rep.revision, Health()).deaths_before_ready = 0
        self._refresh_live()
        for rep in list(self.draining):
            if rep.inflight == 0 or now - (rep.draining_since or now) > DRAIN_TIMEOUT:
                self.draining.remove(rep)
                await asyncio.get_running_loop().run_in_executor(None, _stop, rep.proc)

    async def _ready(self, rep: Replica) -> bool:
        """Probe a replica; keep what it says when it is not ready (for ``state``)."""
        rep.reason = rep.load_error = None
        if rep.proc.poll() is not None:
            return False
        try:
            status, body = await proxy.get(rep.port, "/v2/health/ready", timeout=1.0)
        except (NotSent, SentButFailed, TimeoutError, OSError):
            return False
        if status != 200:
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                said = json.loads(body)
                rep.reason, rep.load_error = said.get("error"), said.get("load_error")
        return status == 200

    def stop_all(self) -> None:
        everyone = [rep for reps in self.replicas.values() for rep in reps] + self.draining
        for rep in everyone:
            with contextlib.suppress(ProcessLookupError):
                rep.proc.send_signal(signal.SIGTERM)
        for rep in everyone:
            _stop(rep.proc)

    # -- routing -------------------------------------------------------------------------

    def _choose(self, request: Request) -> tuple[int | None, list[dict[str, Any]]]:
        """The revision meant for this request (by weight or key) and the order to try."""
        specs = self.config["revisions"]
        weighted = [(s, int(s.get("weight", 0))) for s in specs if int(s.get("weight", 0)) > 0]
        if not weighted:
            return None, [s for s, _ in self._live]
        point: float | None = None
        key = self.config.get("routing", {}).get("key")
        if key and key.startswith("header:"):
            value = request.header(key[7:].lower().encode())
            if value is not None:
                point = int.from_bytes(hashlib.sha256(value).digest()[:8], "big") / 2**64
        if point is None:
            point = random.random()
        total = sum(w for _, w in weighted)
        acc = 0.0
        meant = weighted[-1][0]
        for spec, weight in weighted:
            acc += weight / total
            if point < acc:
                meant = spec
                break
        live = [s for s, w in self._live if w > 0 and s is not meant]
        order = ([meant] if any(s is meant for s, _ in self._live) else []) + live
        if not order:
            order = [s for s, _ in self._live]
        return int(meant["revision"]), order

    def _replicas_for(self, revision: int) -> list[Replica]:
        """Ready replicas, the next in round-robin turn first (as :meth:`fast` picks)."""
        ready = [r for r in self.replicas.get(revision, []) if r.ready]
        if not ready:
            return ready
        self._rr = (self._rr + 1) % len(ready)
        return ready[self._rr :] + ready[: self._rr]

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_mlops/"):
            return await self.admin(request)
        if path == "/v2/health/live":
            return json_response(200, b'{"live": true}')
        if path == "/v2/health/ready":
            ok = bool(self._live)
            return json_response(
                200 if ok else 503, b'{"ready": %s}' % (b"true" if ok else b"false")
            )
        return await self.forward(request)

    def fast(self, request: Request, respond: proxy.Respond) -> bool:
        """The hot path: a model request for a revision with a ready replica and an idle
        pooled connection to it goes out now, on callbacks. False: use :meth:`handle`."""
        path = request.path
        if not path.startswith("/v2/models/"):
            return False
        meant, order = self._choose(request)
        if not order or (meant is not None and int(order[0]["revision"]) != meant):
            return False  # nobody, or a miss to count: the full path does both
        ready = [r for r in self.replicas.get(int(order[0]["revision"]), []) if r.ready]
        if not ready:
            return False
        turn = (self._rr + 1) % len(ready)
        rep = ready[turn]
        conn = self.pool.take_idle(rep.port)
        if conn is None:
            # The round-robin turn is left as it was: forward() tries this same replica
            # first and opens a connection to it, so every replica gets its own.
            return False
        self._rr = turn
        infer = path.split("?", 1)[0].endswith("/infer")
        start = time.perf_counter()
        rep.inflight += 1

        def done(outcome: Response | Exception) -> None:
            rep.inflight -= 1
            if isinstance(outcome, Response):
                r = outcome
                self.pool.release(rep.port, conn)
            else:
                r = json_response(504 if isinstance(outcome, TimeoutError) else 502,
                                  b'{"error": "the replica failed mid-request"}')  # fmt: skip
            self._answered(rep, r, infer, start)
            respond(r)

        conn.send_then(proxy.encode_request(request, rep.port), REQUEST_TIMEOUT, done)
        return True

    def _answered(self, rep: Replica, r: Response, infer: bool, start: float) -> None:
        """Count an answer (model requests only) and say who gave it."""
        if infer:
            elapsed = (time.perf_counter() - start) * 1000.0
            self.stats.append((time.time(), rep.revision, rep.version, elapsed, r.status))
        r.headers.append((b"x-mlops-version", str(rep.version).encode()))
        r.headers.append((b"x-mlops-revision", str(rep.revision).encode()))

    async def forward(self, request: Request) -> Response:
        start = time.perf_counter()
        infer = request.path.split("?", 1)[0].endswith("/infer")
        meant, order = self._choose(request)
        for spec in order:
            revision = int(spec["revision"])
            if revision != meant and meant is not None and infer:
                self.misses.append((time.time(), meant))
                meant = None  # count one miss per request
            for rep in self._replicas_for(revision):
                rep.inflight += 1
                try:
                    r = await self.pool.request(rep.port, request, REQUEST_TIMEOUT)
                except NotSent:
                    rep.ready = False  # refused: going away; the next tick re-checks it
                    continue
                except (SentButFailed, TimeoutError) as e:
                    r = json_response(502 if isinstance(e, SentButFailed) else 504,
                                      b'{"error": "the replica failed mid-request"}')  # fmt: skip
                finally:
                    rep.inflight -= 1
                self._answered(rep, r, infer, start)
                return r
        if infer:
            self.stats.append((time.time(), -1, -1, (time.perf_counter() - start) * 1000.0, 503))
            if meant is not None:
                self.misses.append((time.time(), meant))
        return json_response(
            503, b'{"error": "no ready replica; the deployment is starting or down"}'
        )

    # -- admin ---------------------------------------------------------------------------

    async def admin(self, request: Request) -> Response:
        if request.header(b"x-mlops-token") != self.token:
            return json_response(403, b'{"error": "bad or missing X-Mlops-Token"}')
        url = urlsplit(request.path)
        if url.path == "/_mlops/config" and request.method == "PUT":
            config = json.loads(request.body)
            generation = int(config.get("generation", 0))
            if generation < int(self.config.get("generation", -1)):
                body = {"error": f"configuration generation {generation} is older than the "
                                 f"applied {self.config['generation']}"}  # fmt: skip
                return json_response(409, json.dumps(body).encode())
            self.apply(config)
            await self._tick()
            return self._json(self.state())
        if url.path == "/_mlops/state":
            return self._json(self.state())
        if url.path == "/_mlops/stats":
            window = float(parse_qs(url.query).get("window", ["60"])[0])
            return self._json(self.window_stats(window))
        if url.path == "/_mlops/shutdown" and request.method == "POST":
            self.stopping.set()
            return self._json({"stopping": True})
        return json_response(404, b'{"error": "unknown admin path"}')

    @staticmethod
    def _json(data: Any) -> Response:
        return json_response(200, json.dumps(data).encode())

    def state(self) -> dict[str, Any]:
        revisions = []
        for spec in self.config["revisions"]:
            revision = int(spec["revision"])
            reps = self.replicas.get(revision, [])
            health = self.health.get(revision, Health())
            revisions.append({
                "revision": revision, "version": int(spec["version"]),
                "weight": int(spec.get("weight", 0)), "desired": int(spec["replicas"]),
                "ready": sum(r.ready for r in reps), "restarts": health.restarts,
                "crash_loop": health.crash_loop, "last_exit": health.last_exit,
                "backoff_s": health.backoff,
                "replicas": [r.describe() for r in reps],
            })  # fmt: skip
        return {"pid": os.getpid(), "started": self.started, "revisions": revisions,
                "generation": self.config.get("generation", -1),
                "routing": self.config.get("routing", {}), "draining": len(self.draining)}  # fmt: skip

    def window_stats(self, seconds: float) -> dict[str, Any]:
        since = time.time() - seconds
        by_revision: dict[int, list[tuple[float, int, int, float, int]]] = {}
        for row in reversed(self.stats):
            if row[0] < since:
                break
            by_revision.setdefault(row[1], []).append(row)
        out: dict[str, Any] = {}
        for revision, rows in sorted(by_revision.items()):
            lat = sorted(r[3] for r in rows)
            out[str(revision)] = {
                "revision": revision, "version": rows[0][2], "count": len(rows),
                "errors_5xx": sum(1 for r in rows if r[4] >= 500),
                "errors_4xx": sum(1 for r in rows if 400 <= r[4] < 500),
                "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
            }  # fmt: skip
        misses: dict[str, int] = {}
        for t, revision in reversed(self.misses):
            if t < since:
                break
            misses[str(revision)] = misses.get(str(revision), 0) + 1
        return {"window_s": seconds, "revisions": out, "no_replica": misses}


def _pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default) of sorted values."""
    if len(values) == 1:
        return values[0]
    pos = (len(values) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def _stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def serve(router: Router, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: proxy.ServerProtocol(router.handle, router.max_body, router.fast),
                                      "127.0.0.1", port, backlog=1024)  # fmt: skip
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, router.stopping.set)
    supervisor = loop.create_task(router.supervise())
    try:
        await router.stopping.wait()
    finally:
        proxy.close_quietly(server)
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        await loop.run_in_executor(None, router.stop_all)
        router.pool.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops_nb.deploy.router")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--workspace", help="stop when this workspace file is gone")
    args = parser.parse_args(argv)
    token = os.environ.get("MLOPS_NB_ROUTER_TOKEN", "")
    if not token:
        parser.error("MLOPS_NB_ROUTER_TOKEN must be set")
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(message)s")
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    router = Router(state_dir, token, args.workspace)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve(router, args.port))
    else:
        uvloop.run(serve(router, args.port))


if __name__ == "__main__":
    main()
