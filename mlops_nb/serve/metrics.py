"""The server's Prometheus metrics: requests, latency, batches, payload log, resources.

Counters and histograms are bound to their label values once: a label lookup costs a
lock and a dict per call on the request path. Payload figures are read from the log when
``/metrics`` is scraped.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.responses import Response

from .payload import REASONS, PayloadLog
from .resources import Usage


class ServerMetrics:
    def __init__(self, model: str, version: int) -> None:
        self.registry = registry = CollectorRegistry()
        labels = ["model", "version"]
        self._labels = (model, str(version))
        self.requests = Counter("mlops_requests", "Inference requests", [*labels, "code"],
                                registry=registry)  # fmt: skip
        self.latency = Histogram(
            "mlops_request_latency_seconds", "Inference latency", labels, registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        ).labels(*self._labels)  # fmt: skip
        self.batch_sizes = Histogram(
            "mlops_batch_size", "Rows per predict call", labels, registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        ).labels(*self._labels)  # fmt: skip
        self.inflight = Gauge("mlops_inflight_requests", "Requests in progress", labels,
                              registry=registry).labels(*self._labels)  # fmt: skip
        self._logged = Gauge("mlops_payloads_logged", "Payload rows written to the spool",
                             labels, registry=registry)  # fmt: skip
        self._pending = Gauge("mlops_payloads_pending", "Payload rows waiting for the spool",
                              labels, registry=registry)  # fmt: skip
        self._dropped = Gauge("mlops_payloads_dropped", "Payload rows dropped, by reason",
                              [*labels, "reason"], registry=registry)  # fmt: skip
        self._codes = {
            code: self.requests.labels(*self._labels, code)
            for code in ("200", "400", "500", "503", "504")
        }
        self.usage = Usage(registry)
        self._payload: PayloadLog | None = None

    def bind_payload(self, payload: PayloadLog | None) -> None:
        self._payload = payload
        if payload is None:
            return
        self._logged.labels(*self._labels).set_function(lambda: payload.logged)
        self._pending.labels(*self._labels).set_function(lambda: payload.pending)
        for reason in REASONS:
            self._dropped.labels(*self._labels, reason).set_function(
                lambda r=reason: payload.dropped[r]  # type: ignore[misc]
            )

    def done(self, code: int, seconds: float) -> None:
        counter = self._codes.get(str(code))
        if counter is None:
            counter = self._codes[str(code)] = self.requests.labels(*self._labels, str(code))
        counter.inc()
        self.latency.observe(seconds)

    def response(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
