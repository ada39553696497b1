"""The model server: Open Inference Protocol (V2) endpoints over one model version.

    GET  /v2/health/live                       200 while the process runs
    GET  /v2/health/ready                      200 once the artifact is verified and loaded
    GET  /v2                                   server metadata
    GET  /v2/models/{name}[/versions/{v}]      model metadata (inputs/outputs from the signature)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer
    GET  /metrics                              Prometheus text format

Errors use the V2 error body ``{"error": "..."}``: 400 for a request that does not fit
(shape, datatype, missing input, body too large, unknown model or version), 503 while the
model is not ready, 500 when the model itself raises or answers with the wrong number of
rows (the server stays up).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__, flavors
from ..artifacts import open_store
from .batching import Batcher, run_inline
from .payload import PayloadLog
from .spec import ServeSpec
from .v2 import NUMPY_OF, BadRequest, Batch, decode, tensor

log = logging.getLogger("mlops_nb.serve")


class Outcome:
    """Predictions for one request: outputs plus what the payload log keeps."""

    __slots__ = ("confidence", "prediction")

    def __init__(self, prediction: np.ndarray[Any, Any], confidence: np.ndarray[Any, Any] | None):
        self.prediction = prediction
        self.confidence = confidence


class ModelServer:
    """Holds the model, the batcher, the payload log and the metrics of one server."""

    def __init__(self, spec: ServeSpec) -> None:
        self.spec = spec
        self.model: Any = None
        self.ready = False
        self.load_error: str | None = None
        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        self.requests = Counter("mlops_requests", "Inference requests", [*labels, "code"],
                                registry=self.registry)  # fmt: skip
        self.latency = Histogram(
            "mlops_request_latency_seconds", "Inference latency", labels, registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )  # fmt: skip
        self.batch_sizes = Histogram(
            "mlops_batch_size", "Rows per predict call", labels, registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )  # fmt: skip
        self.payloads = Gauge("mlops_payloads_logged", "Payload rows written to the spool",
                              labels, registry=self.registry)  # fmt: skip
        self.dropped = Gauge("mlops_payloads_dropped", "Payload rows dropped", labels,
                             registry=self.registry)  # fmt: skip
        self.inflight = Gauge("mlops_inflight_requests", "Requests in progress", labels,
                              registry=self.registry)  # fmt: skip
        self._labels = (spec.model, str(spec.version))
        # Label lookups cost a lock and a dict per call: bind the children once.
        self._inflight = self.inflight.labels(*self._labels)
        self._latency = self.latency.labels(*self._labels)
        self._batch_sizes = self.batch_sizes.labels(*self._labels)
        self._requests = {
            code: self.requests.labels(*self._labels, code) for code in ("200", "400", "500", "503")
        }
        self.payload_log = (
            PayloadLog(spec.spool, spec.model, spec.version, flush_rows=spec.flush_rows,
                       flush_seconds=spec.flush_seconds, max_rows=spec.max_buffer_rows,
                       types=_output_types(spec.signature))
            if spec.spool else None
        )  # fmt: skip
        self.batcher: Batcher[Batch, Outcome] | None = (
            Batcher(self.predict, lambda b: b.rows, max_rows=spec.max_batch,
                    on_batch=lambda n: self._batch_sizes.observe(n))
            if spec.batching else None
        )  # fmt: skip
        # Prediction ids: a random prefix per process and a counter, unique across
        # replicas and restarts, and cheaper than a uuid4 per request.
        self._id_prefix = uuid.uuid4().hex[:16] + "-"
        self._id_counter = itertools.count()
        self._proba_decides = False
        self._active = 0  # requests inside infer(), read on the event loop only
        names = [i["name"] for i in (spec.signature or {}).get("inputs", [])]
        one_tensor = len(names) == 1 and len((spec.signature or {})["inputs"][0]["shape"]) > 1
        self._frame_columns = names if names and not one_tensor else None

    # -- loading -------------------------------------------------------------------------

    def load(self) -> None:
        """Fetch, verify and load the artifact; on failure stay not-ready with the reason."""
        try:
            store = open_store(self.spec.artifact_uri, self.spec.s3_options)
            with tempfile.TemporaryDirectory(prefix="mlops-nb-serve-") as tmp:
                store.fetch(self.spec.manifest, self.spec.digest, Path(tmp), {"model"})
                self.model = flavors.load(self.spec.manifest, Path(tmp))
            if not hasattr(self.model, "predict") and not callable(self.model):
                raise TypeError(f"{type(self.model).__name__} has no predict() and is not callable")
            # Objects alive now live as long as the server: keep them out of full GC passes,
            # whose pauses were the p99 spikes.
            self._proba_decides = _argmax_is_predict(self.model)
            gc.collect()
            gc.freeze()
            self.ready = True
            log.info("model %s v%s ready", self.spec.model, self.spec.version)
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("model %s v%s failed to load: %s", self.spec.model, self.spec.version,
                      self.load_error)  # fmt: skip

    # -- predicting ----------------------------------------------------------------------

    def _input(self, columns: dict[str, np.ndarray[Any, Any]]) -> Any:
        if self._frame_columns is not None:
            return pd.DataFrame({n: columns[n] for n in self._frame_columns})
        if "input" in columns and len(columns) == 1:
            return columns["input"]
        return pd.DataFrame(columns)

    def predict(self, batches: list[Batch]) -> list[Outcome]:
        if len(batches) == 1:
            columns = batches[0].columns
        else:
            columns = {
                k: np.concatenate([b.columns[k] for b in batches]) for k in batches[0].columns
            }
        X = self._input(columns)
        model = self.model
        if self._proba_decides:
            # One pass: for these estimators predict() is the class of highest probability.
            proba = np.asarray(model.predict_proba(X))
            prediction = np.asarray(model.classes_)[proba.argmax(axis=1)]
            return self._split(batches, prediction, proba.max(axis=1))
        raw = model.predict(X) if hasattr(model, "predict") else model(X)
        prediction = np.asarray(raw)
        rows = sum(b.rows for b in batches)
        # Slicing a short answer would hand one request's predictions to another.
        if prediction.ndim == 0 or prediction.shape[0] != rows:
            got = "a scalar" if prediction.ndim == 0 else f"{prediction.shape[0]} predictions"
            raise ValueError(f"predict returned {got} for {rows} rows")
        confidence = None
        if hasattr(model, "predict_proba"):
            try:
                confidence = np.asarray(model.predict_proba(X)).max(axis=1)
            except Exception:
                # A model whose predict works but predict_proba does not still answers;
                # only the confidence is missing.
                log.warning("predict_proba failed; answering without confidence", exc_info=True)
                confidence = None
            if confidence is not None and confidence.shape[0] != rows:
                raise ValueError(
                    f"predict_proba returned {confidence.shape[0]} rows for {rows} rows"
                )
        return self._split(batches, prediction, confidence)

    def _split(
        self,
        batches: list[Batch],
        prediction: np.ndarray[Any, Any],
        confidence: np.ndarray[Any, Any] | None,
    ) -> list[Outcome]:
        outcomes = []
        start = 0
        for b in batches:
            end = start + b.rows
            conf = confidence[start:end] if confidence is not None else None
            outcomes.append(Outcome(prediction[start:end], conf))
            start = end
        return outcomes

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
        self._inflight.inc()
        self._active += 1
        try:
            self._check_name(request)
            if not self.ready:
                code = 503
                return _error(503, self.load_error or "model is loading; retry when ready")
            raw = await self._body(request)
            try:
                body = json.loads(raw)
            except ValueError as e:
                raise BadRequest(f"body is not valid JSON: {e}") from e
            batch = decode(body, self.spec.signature)
            try:
                if self.batcher is not None:
                    # One turn of the loop lets requests that arrived together start, so
                    # a lone request is seen alone and predicted inline (no thread
                    # hand-off), while concurrent ones share a batch.
                    await asyncio.sleep(0)
                    if self._active == 1 and not self.batcher.busy:
                        self._batch_sizes.observe(batch.rows)
                        outcome = run_inline(self.predict, batch)
                    else:
                        outcome = await self.batcher(batch)
                else:
                    self._batch_sizes.observe(batch.rows)
                    outcome = run_inline(self.predict, batch)
            except Exception as e:
                code = 500
                log.exception("model raised")
                message = f"model raised {type(e).__name__}: {e}"
                # Failed requests are logged too: the monitor's error rate counts them.
                self._log(batch, None, (time.perf_counter() - start) * 1000.0, message)
                return _error(500, message)
            latency_ms = (time.perf_counter() - start) * 1000.0
            ids = self._log(batch, outcome, latency_ms)
            outputs = [tensor("predict", outcome.prediction)]
            if outcome.confidence is not None:
                outputs.append(tensor("confidence", outcome.confidence))
            payload = {
                "model_name": self.spec.model,
                "model_version": str(self.spec.version),
                "id": batch.request_id or ids[0],
                "parameters": {"prediction_ids": ids},
                "outputs": outputs,
            }
            return Response(json.dumps(payload), media_type="application/json")
        except BadRequest as e:
            code = 400
            return _error(400, str(e))
        except Exception as e:
            # A bug of ours, not the model's: still a V2 body, and counted as a 500.
            code = 500
            log.exception("infer failed")
            return _error(500, f"server error {type(e).__name__}: {e}")
        finally:
            self._inflight.dec()
            self._active -= 1
            counter = self._requests.get(str(code))
            if counter is None:
                counter = self._requests[str(code)] = self.requests.labels(*self._labels, str(code))
            counter.inc()
            self._latency.observe(time.perf_counter() - start)

    async def _body(self, request: Request) -> bytes:
        """The body, refused as soon as it is known to be over the limit (chunked too)."""
        limit = self.spec.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(f"body of {declared} bytes is over the limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"body of more than {limit} bytes is over the limit of {limit}")
            chunks.append(chunk)
        return b"".join(chunks)

    def _log(
        self, batch: Batch, outcome: Outcome | None, latency_ms: float, error: str | None = None
    ) -> list[str]:
        # Prediction ids are always generated, so they stay unique even when clients reuse
        # request ids; the response echoes the request id separately.
        base = f"{self._id_prefix}{next(self._id_counter):x}"
        ids = [base] if batch.rows == 1 else [f"{base}-{i}" for i in range(batch.rows)]
        if self.payload_log is None:
            return ids
        rows = batch.rows
        prediction: np.ndarray[Any, Any] | None = None
        confidence: np.ndarray[Any, Any] | float = np.nan
        if outcome is not None:
            prediction = outcome.prediction
            if prediction.ndim > 1:
                prediction = prediction.reshape(rows, -1)[:, 0]
            if outcome.confidence is not None:
                confidence = outcome.confidence
        chunk: dict[str, Any] = {
            "id": ids,
            "timestamp": time.time_ns() // 1000,  # microseconds since the epoch, UTC
            "prediction": prediction,
            "confidence": confidence,
            "latency_ms": latency_ms,
        }
        if error is not None:
            chunk["error"] = error
        for name, values in batch.columns.items():
            if values.ndim == 2:
                for k in range(values.shape[1]):
                    chunk[f"feature.x{k}"] = values[:, k]
            else:
                chunk[f"feature.{name}"] = values
        self.payload_log.add(chunk, batch.rows)
        return ids

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready_endpoint(self, request: Request) -> Response:
        if self.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": self.load_error}, status_code=503)

    async def model_ready(self, request: Request) -> Response:
        try:
            self._check_name(request)
        except BadRequest as e:
            return _error(404, str(e))
        return JSONResponse(
            {"name": self.spec.model, "ready": self.ready}, status_code=200 if self.ready else 503
        )

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "mlops-nb", "version": __version__, "extensions": []})

    async def model_metadata(self, request: Request) -> Response:
        try:
            self._check_name(request)
        except BadRequest as e:
            return _error(404, str(e))
        signature = self.spec.signature or {}
        return JSONResponse({
            "name": self.spec.model,
            "versions": [str(self.spec.version)],
            "platform": str(self.spec.manifest.get("flavor")),
            "inputs": signature.get("inputs", []),
            "outputs": signature.get("outputs", []),
            "parameters": {"digest": self.spec.digest},
        })  # fmt: skip

    async def metrics(self, request: Request) -> Response:
        if self.payload_log is not None:
            self.payloads.labels(*self._labels).set(self.payload_log.logged)
            self.dropped.labels(*self._labels).set(self.payload_log.dropped)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.payload_log is not None:
            self.payload_log.close()


# scikit-learn classifiers whose predict() is the argmax of predict_proba() (or of a
# decision function that predict_proba maps monotonically), so one call gives both.
# SVC(probability=True) is the classic exception and is not listed.
_ARGMAX_CLASSIFIERS = {
    "LogisticRegression", "RandomForestClassifier", "ExtraTreesClassifier",
    "DecisionTreeClassifier", "GradientBoostingClassifier", "HistGradientBoostingClassifier",
    "KNeighborsClassifier", "GaussianNB", "MultinomialNB", "BernoulliNB", "MLPClassifier",
}  # fmt: skip


def _argmax_is_predict(model: Any) -> bool:
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else model
    return (
        type(final).__module__.startswith("sklearn.")
        and type(final).__name__ in _ARGMAX_CLASSIFIERS
        and hasattr(model, "predict_proba")
        and hasattr(model, "classes_")
    )


def _output_types(signature: dict[str, Any] | None) -> dict[str, pa.DataType]:
    outputs = (signature or {}).get("outputs") or []
    if not outputs:
        return {}
    dtype = np.dtype(NUMPY_OF.get(outputs[0]["datatype"], np.object_))
    return {"prediction": pa.string() if dtype == np.object_ else pa.from_numpy_dtype(dtype)}


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def create_app(spec: ServeSpec) -> Starlette:
    """The ASGI application; the model loads in the background after startup."""
    server = ModelServer(spec)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        thread = threading.Thread(target=server.load, name="mlops-nb-load", daemon=True)
        thread.start()
        yield
        # uvicorn has stopped accepting and drained in-flight requests by now.
        await asyncio.get_running_loop().run_in_executor(None, server.close)

    base = "/v2/models/{name}"
    routes = [
        Route("/v2/health/live", server.live),
        Route("/v2/health/ready", server.ready_endpoint),
        Route("/v2", server.server_metadata),
        Route(base, server.model_metadata),
        Route(base + "/versions/{version}", server.model_metadata),
        Route(base + "/ready", server.model_ready),
        Route(base + "/versions/{version}/ready", server.model_ready),
        Route(base + "/infer", server.infer, methods=["POST"]),
        Route(base + "/versions/{version}/infer", server.infer, methods=["POST"]),
        Route("/metrics", server.metrics),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app
