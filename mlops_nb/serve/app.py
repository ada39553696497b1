"""The model server: Open Inference Protocol (V2) endpoints over one model version.

    GET  /v2/health/live                       200 while the process runs (never waits on a model);
                                               503 once a predict outruns live_stuck_after_s
    GET  /v2/health/ready                      200 once loaded; 503 while loading, failed,
                                               stuck (a predict older than stuck_after_s)
                                               or, with log_required, while the spool fails
    GET  /v2/health/stats                      JSON figures for a deployment's status()
    GET  /v2                                   server metadata
    GET  /v2/models/{name}[/versions/{v}]      model metadata (inputs/outputs, input form)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer
    GET  /metrics                              Prometheus text format

``/v2/health/stats`` answers::

    {"ready": bool, "stuck": bool, "inflight": n, "queue": n, "workers": n,
     "pool": "threads" | "processes", "worker_pids": [pid, ...] (processes only),
     "worker_restarts": n, "worker_failure": str | null,
     "longest_predict_s": x,
     "lone": {"paused": n, "rescued": n},   # lone requests predicted on the loop's thread
                                            # (null without a LoopDriver, or with processes)
     "payload": {"written": n, "pending": n, "dropped": {reason: n}, "failing": bool,
                 "last_error": str | null},            # null when no spool is set
     "process": {"cpu_seconds": x, "rss_bytes": n, "open_connections": n,
                 "processes": n}}    # the server with every process it started

Errors use the V2 error body ``{"error": "..."}``. Caused by the request: 400 (shape,
datatype, value, missing input, unknown model, version or output), 404 and 405 (no such
endpoint or method), 413 (body over ``max_body_bytes``), 503
with ``Retry-After`` (not ready, or the queue is full). Caused by the model: 500 (it raised,
or answered the wrong number of rows) and 504 (it took longer than ``timeout_s``). The
payload log records each failed request with ``error`` starting ``request:``, ``model:``
or ``timeout:``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from . import binary, bulk
from .batching import Batcher
from .metrics import ServerMetrics
from .payload import PayloadLog
from .predictor import Outcome, Predictor
from .processes import ModelRaised, PoolUnavailable, ProcessPool, WorkerDied
from .records import PredictionIds, chunk_of, log_types
from .redact import Redactor
from .spec import POOLS, ServeSpec
from .spool import open_spool
from .v2 import BadRequest, Batch, input_form
from .values import TooLarge
from .workers import WorkerPool

log = logging.getLogger("mlops_nb.serve")


class Overloaded(Exception):
    """The queue of requests waiting for a worker is full (HTTP 503, Retry-After)."""


# Jobs not yet picked up by a worker (wanted or timed out) allowed per max_queue.
ABANDONED_PER_QUEUE = 4

# In place of an error message that may quote redacted values.
WITHHELD = "message withheld: the payload log redacts features"


class ModelServer:
    """Holds the model, the workers, the payload log and the metrics of one server."""

    def __init__(self, spec: ServeSpec) -> None:
        self.spec = spec
        self.predictor = Predictor(spec)
        self.ready = False
        self.load_error: str | None = None
        self.metrics = ServerMetrics(spec.model, spec.version)
        # workers=0 is the old inline path (lone requests predicted on the event loop), kept
        # only so benchmarks can measure the hand-off against it in the same run.
        self._inline = spec.workers == 0
        if spec.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {spec.pool!r}")
        self.pool: WorkerPool | ProcessPool
        self.bulk = bulk.Bulk()  # large bodies and answers, off the event loop
        if spec.pool == "processes":
            if self._inline:
                raise ValueError("pool='processes' needs workers >= 1")
            self.pool = ProcessPool(spec, spec.workers, kill_after=spec.timeout_s)
        else:
            self.pool = WorkerPool(max(1, spec.workers))
        self.payload_log: PayloadLog | None = None
        self.batcher: Batcher[Batch, Outcome] | None = (
            Batcher(self.predictor.predict, lambda b: b.rows, self._execute,
                    solo_execute=functools.partial(self._execute, lone=True),
                    max_rows=spec.max_batch, concurrency=self.pool.workers,
                    # Processes do not share a GIL: every one may run a batch at once.
                    spill_after=0.0 if spec.pool == "processes" else 0.05,
                    on_batch=self.metrics.batch_sizes.observe)
            if spec.batching else None
        )  # fmt: skip
        # Prediction ids: a random prefix per process and a counter, unique across
        # replicas and restarts, and cheaper than a uuid4 per request.
        self._id_prefix = uuid.uuid4().hex[:16] + "-"
        self._id_counter = itertools.count()
        self._active = 0  # requests inside infer(), read on the event loop only
        # The server's event loop, set before load(): worker processes are watched on it.
        self.loop: asyncio.AbstractEventLoop | None = None
        # Features are redacted in the payload log: so is what error texts quote of them.
        self._redacting = bool(spec.redact)

    # -- loading -------------------------------------------------------------------------

    def load(self) -> None:
        """Fetch, verify and load the artifact; on failure stay not-ready with the reason."""
        try:
            spec = self.spec
            if spec.spool:
                self.payload_log = PayloadLog(
                    open_spool(spec.spool, spec.s3_options), spec.model, spec.version,
                    flush_rows=spec.flush_rows, flush_seconds=spec.flush_seconds,
                    max_rows=spec.max_buffer_rows, types=log_types(spec.signature),
                    redactor=Redactor.of(spec.redact, spec.redact_key),
                    retry_max=spec.spool_retry_max_s,
                )  # fmt: skip
            self.predictor.load()
            if isinstance(self.pool, ProcessPool):
                self.pool.start(self.loop)
                pool = self.pool
                self.metrics.usage.workers = lambda: pool.pids
            self.metrics.bind_payload(self.payload_log)
            self.ready = True
            log.info("model %s v%s ready", spec.model, spec.version)
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("model %s v%s failed to load: %s", self.spec.model, self.spec.version,
                      self.load_error)  # fmt: skip

    def not_ready(self) -> str | None:
        """Why the server should get no traffic now, or None."""
        if not self.ready:
            return self.load_error or "model is loading; retry when ready"
        if isinstance(self.pool, ProcessPool) and (problem := self.pool.problem()):
            return problem
        if self.pool.stuck(self.spec.stuck_after_s):
            return (
                f"a prediction has been running for {self.pool.longest():.0f} s, over "
                f"stuck_after_s={self.spec.stuck_after_s:g}: replace this replica"
            )
        p = self.payload_log
        if self.spec.log_required and p is not None and p.failing:
            return f"payload log is required and the spool cannot be written: {p.last_error}"
        return None

    # -- predicting ----------------------------------------------------------------------

    async def _predict(self, batch: Batch) -> Outcome:
        waiting = self.pool.backlog + (self.batcher.queued if self.batcher else 0)
        if waiting >= self.spec.max_queue:
            raise Overloaded(f"{waiting} requests are waiting for a worker (max_queue)")
        if self.pool.unstarted >= ABANDONED_PER_QUEUE * self.spec.max_queue:
            # Workers busy for so long that requests keep timing out: their jobs wait to
            # be skipped, and are not let pile up.
            raise Overloaded(
                f"{self.pool.unstarted} predictions of timed-out requests wait for busy "
                f"workers ({ABANDONED_PER_QUEUE} x max_queue)"
            )
        if self.batcher is not None:
            if self._inline:
                # The old path, kept as it was: one turn of the loop lets requests that
                # arrived together start, so they share a batch.
                await asyncio.sleep(0)
            # A lone request goes straight to a worker (or the loop's own thread, paused:
            # see mlops_nb.serve.driver), as a batch of its own; requests that arrive while
            # it runs queue behind it and share the next predict.
            if self._active > 1 or self.batcher.busy:
                return await self.batcher(batch)
            if not self._inline:
                return await self.batcher.solo(batch)
        self.metrics.batch_sizes.observe(batch.rows)
        if self._inline:
            return self.predictor.predict([batch])[0]
        lone = self._active == 1  # the pool also checks that it has nothing running
        return (await self._execute(self.predictor.predict, [batch], lone))[0]

    async def _execute(self, fn: Callable[[list[Batch]], list[Outcome]],
                       batches: list[Batch], lone: bool = False) -> list[Outcome]:  # fmt: skip
        """``fn(batches)`` on a worker thread, or the same predict in a worker process;
        ``lone`` (nothing else in flight) lets the thread pool run it on the loop's thread."""
        if isinstance(self.pool, ProcessPool):
            return await self.pool.run(batches)
        return await self.pool.run(fn, batches, lone)

    # -- HTTP ----------------------------------------------------------------------------

    def _check_name(self, request: Request) -> None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != self.spec.model:
            raise BadRequest(f"unknown model {name!r}; this server serves {self.spec.model!r}")
        if version is not None and version != str(self.spec.version):
            raise BadRequest(
                f"unknown version {version!r} of {name!r}; this server serves version "
                f"{self.spec.version}"
            )

    async def infer(self, request: Request) -> Response:
        start = time.perf_counter()
        code = 200
        self._active += 1
        self.metrics.inflight.inc()
        batch: Batch | None = None
        admitted = False
        try:
            self._check_name(request)
            if not self.ready:
                code = 503
                return _error(503, self.load_error or "model is loading; retry when ready", 1)
            raw = await self._body(request)
            batch, names = await self._parse(raw, request.headers.get(binary.HEADER))
            p = self.payload_log
            if self.spec.log_required and p is not None:
                if not p.accepting(batch.rows):
                    code = 503
                    return _error(503, "payload log is required and its buffer is full", 5)
                # Let in: its rows are kept whatever requests in flight add meanwhile.
                admitted = True
            try:
                async with asyncio.timeout(self.spec.timeout_s):
                    outcome = await self._predict(batch)
            except Overloaded as e:
                code = 503
                return _error(503, f"server busy: {e}; retry later", 1)
            except PoolUnavailable as e:
                code = 503
                return _error(503, f"{e}; retry later", 5)
            except TimeoutError:
                code = 504
                message = f"prediction took longer than timeout_s={self.spec.timeout_s:g} s"
                self._log(batch, None, _ms(start), f"timeout: {message}", admitted)
                return _error(504, message)
            except Exception as e:
                code = 500
                log.exception("model raised")
                kind = e.kind if isinstance(e, ModelRaised) else type(e).__name__
                message = f"model raised {kind}: {e}"
                # A model's message may quote the request's values: not into a redacted log.
                logged = message if not self._redacting else f"model raised {kind} ({WITHHELD})"
                if isinstance(e, WorkerDied):
                    message = logged = str(e)
                # Failed requests are logged too: the monitor's error rate counts them.
                self._log(batch, None, _ms(start), f"model: {logged}", admitted)
                return _error(500, message)
            ids = self._log(batch, outcome, _ms(start), admitted=admitted)
            return await self._answer(batch, outcome, names, ids)
        except bulk.HelperDied as e:
            code = 503
            return _error(503, f"{e}; retry later", 5)
        except BadRequest as e:
            code = e.status
            if batch is not None or request.path_params["name"] == self.spec.model:
                logged = e.withheld if self._redacting else str(e)
                self._log(batch, None, _ms(start), f"request: {logged}")
            return _error(code, str(e))
        except Exception as e:
            # A bug of ours, not the model's: still a V2 body, and counted as a 500.
            code = 500
            log.exception("infer failed")
            return _error(500, f"server error {type(e).__name__}: {e}")
        finally:
            self._active -= 1
            self.metrics.inflight.dec()
            self.metrics.done(code, time.perf_counter() - start)

    async def _parse(self, raw: bytes, header: str | None) -> tuple[Batch, list[str]]:
        """The request's batch and outputs; a large body is parsed in the helper process."""
        sig, available = self.spec.signature, self.predictor.outputs
        # Only the JSON part takes parsing: binary tensors are read as they are.
        json_bytes = int(header) if header is not None and header.isdigit() else len(raw)
        if min(json_bytes, len(raw)) > bulk.OFF_LOOP_BYTES:
            return await self.bulk.parse(raw, header, sig, available)
        return bulk.parse_here(raw, header, sig, available)

    async def _answer(
        self, batch: Batch, outcome: Outcome, names: list[str], ids: Sequence[str]
    ) -> Response:
        given: dict[str, np.ndarray[Any, Any] | None] = {
            "predict": outcome.prediction,
            "confidence": outcome.confidence,
            "probabilities": outcome.probabilities,
        }
        outputs = [(n, v) for n in names if (v := given[n]) is not None]
        payload: dict[str, Any] = {
            "model_name": self.spec.model,
            "model_version": str(self.spec.version),
            "id": batch.request_id or ids[0],
            "parameters": {"prediction_ids": ids},
        }
        if batch.rows > bulk.OFF_LOOP_ROWS:
            content, length = await self.bulk.encode(payload, outputs, batch.binary_outputs)
        else:
            content, length = binary.encode(payload, outputs, batch.binary_outputs)
        if length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={binary.HEADER: str(length)})  # fmt: skip

    async def _body(self, request: Request) -> bytes:
        """The body, refused as soon as it is known to be over the limit (chunked too)."""
        limit = self.spec.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"body of {declared} bytes is over the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"body of more than {limit} bytes is over the limit of {limit}")
            chunks.append(chunk)
        return b"".join(chunks)

    def _log(
        self, batch: Batch | None, outcome: Outcome | None, latency_ms: float,
        error: str | None = None, admitted: bool = False,
    ) -> Sequence[str]:  # fmt: skip
        # Prediction ids are always generated, so they stay unique even when clients reuse
        # request ids; the response echoes the request id separately.
        rows = batch.rows if batch is not None else 1
        base = f"{self._id_prefix}{next(self._id_counter):x}"
        ids: Sequence[str]
        if rows == 1:
            ids = [base]
        elif rows > bulk.OFF_LOOP_ROWS:  # made where they are read, not here on the loop
            ids = PredictionIds(base, rows)
        else:
            ids = [f"{base}-{i}" for i in range(rows)]
        if self.payload_log is None:
            return ids
        chunk = chunk_of(ids, batch.columns if batch is not None else {}, outcome, latency_ms,
                         error)  # fmt: skip
        self.payload_log.add(chunk, rows, admitted)
        return ids

    async def live(self, request: Request) -> Response:
        limit = self.spec.live_stuck_after_s
        if limit is not None and self.pool.stuck(limit):
            error = (f"a prediction has been running for {self.pool.longest():.0f} s, over "
                     f"live_stuck_after_s={limit:g}: restart the replica")  # fmt: skip
            return JSONResponse({"live": False, "error": error}, status_code=503)
        return JSONResponse({"live": True})

    async def ready_endpoint(self, request: Request) -> Response:
        reason = self.not_ready()
        if reason is None:
            return JSONResponse({"ready": True})
        # While loading, "error" stays null: deployers read a non-null one as a failed load.
        loading = not self.ready and self.load_error is None
        return JSONResponse({"ready": False, "error": None if loading else reason,
                             "load_error": self.load_error}, status_code=503)  # fmt: skip

    def stats(self) -> dict[str, Any]:
        p = self.payload_log
        return {
            "ready": self.not_ready() is None,
            "stuck": self.pool.stuck(self.spec.stuck_after_s),
            "inflight": self._active,
            "queue": self.pool.backlog + (self.batcher.queued if self.batcher else 0),
            "workers": self.pool.workers,
            "pool": self.spec.pool,
            **self._process_stats(),
            "longest_predict_s": round(self.pool.longest(), 3),
            "lone": self._lone_stats(),
            "payload": None if p is None else {
                "written": p.logged, "pending": p.pending, "dropped": dict(p.dropped),
                "failing": p.failing, "last_error": p.last_error,
            },
            "process": self.metrics.usage.snapshot(),
        }  # fmt: skip

    def _lone_stats(self) -> dict[str, int] | None:
        driver = self.pool.lone if isinstance(self.pool, WorkerPool) else None
        return None if driver is None else {"paused": driver.paused, "rescued": driver.rescued}

    def _process_stats(self) -> dict[str, Any]:
        pool = self.pool
        if not isinstance(pool, ProcessPool):
            return {"worker_pids": [], "worker_restarts": 0, "worker_failure": None}
        return {"worker_pids": pool.pids, "worker_restarts": pool.restarts,
                "worker_failure": pool.failure}  # fmt: skip

    async def stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def model_ready(self, request: Request) -> Response:
        try:
            self._check_name(request)
        except BadRequest as e:
            return _error(404, str(e))
        ok = self.not_ready() is None
        return JSONResponse({"name": self.spec.model, "ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({
            "name": "mlops-nb", "version": __version__,
            "extensions": ["binary_tensor_data"],
        })  # fmt: skip

    async def model_metadata(self, request: Request) -> Response:
        try:
            self._check_name(request)
        except BadRequest as e:
            return _error(404, str(e))
        signature = self.spec.signature or {}
        inputs = signature.get("inputs", [])
        form = input_form(signature)
        return JSONResponse({
            "name": self.spec.model,
            "versions": [str(self.spec.version)],
            "platform": str(self.spec.manifest.get("flavor")),
            "inputs": inputs,
            "outputs": self.predictor.output_metadata(),
            "parameters": {
                "digest": self.spec.digest,
                # Which request form the model expects; both are accepted.
                "input_form": form,
                "accepts": ["columns", "tensor"] if form == "columns" else [form],
                "content_types": ["np", "pd"],
            },
        })  # fmt: skip

    async def metrics_endpoint(self, request: Request) -> Response:
        return self.metrics.response()

    def close(self) -> None:
        self.pool.close()
        self.bulk.close()
        if self.payload_log is not None:
            self.payload_log.close()


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _error(status: int, message: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths (404) and methods (405) get the V2 error body too."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no endpoint {request.url.path}; see GET /v2 and /v2/models/{{name}}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})"
    else:
        message = str(exc.detail)
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


def create_app(spec: ServeSpec) -> Starlette:
    """The ASGI application; the model loads in the background after startup."""
    server = ModelServer(spec)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.loop = asyncio.get_running_loop()
        thread = threading.Thread(target=server.load, name="mlops-nb-load", daemon=True)
        thread.start()
        yield
        # uvicorn has stopped accepting and drained in-flight requests by now.
        await asyncio.get_running_loop().run_in_executor(None, server.close)

    base = "/v2/models/{name}"
    routes = [
        Route("/v2/health/live", server.live),
        Route("/v2/health/ready", server.ready_endpoint),
        Route("/v2/health/stats", server.stats_endpoint),
        Route("/v2", server.server_metadata),
        Route(base, server.model_metadata),
        Route(base + "/versions/{version}", server.model_metadata),
        Route(base + "/ready", server.model_ready),
        Route(base + "/versions/{version}/ready", server.model_ready),
        Route(base + "/infer", server.infer, methods=["POST"]),
        Route(base + "/versions/{version}/infer", server.infer, methods=["POST"]),
        Route("/metrics", server.metrics_endpoint),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error})  # fmt: skip
    app.state.server = server
    return app
