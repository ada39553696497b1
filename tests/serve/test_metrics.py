"""/metrics is Prometheus text: request counts by status code and latency histograms."""

from __future__ import annotations

import itertools
import math

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Fleet, buckets, sample

LABELS = {"model": "doubler", "version": "1"}


def requests(families: dict[str, Metric], code: str) -> float:
    return sample(families, "mlops_requests", "mlops_requests_total", code=code, **LABELS)


def test_metrics_are_valid_prometheus_text(fleet: Fleet) -> None:
    server = fleet.doubler
    before = server.metrics()

    for x in (1.0, 2.0, 3.0):
        assert server.infer([{"x": x}]).status_code == 200
    assert server.infer([{"nope": 1.0}]).status_code == 400
    assert server.infer([{"x": -1.0}]).status_code == 500

    r = server.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    families = {m.name: m for m in text_string_to_metric_families(r.text)}

    assert families["mlops_requests"].type == "counter"
    assert requests(families, "200") - requests(before, "200") == 3
    assert requests(families, "400") - requests(before, "400") == 1
    assert requests(families, "500") - requests(before, "500") == 1

    for name in ("mlops_request_latency_seconds", "mlops_batch_size"):
        family = families[name]
        assert family.type == "histogram"
        cumulative = buckets(families, name)
        les = sorted(cumulative)
        assert les[-1] == math.inf
        assert all(cumulative[a] <= cumulative[b] for a, b in itertools.pairwise(les))
        total = sample(families, name, f"{name}_count", **LABELS)
        assert cumulative[math.inf] == total
        assert sample(families, name, f"{name}_sum", **LABELS) > 0
    latency_count = sample(
        families, "mlops_request_latency_seconds", "mlops_request_latency_seconds_count", **LABELS
    )
    requests_total = sum(
        s.value for s in families["mlops_requests"].samples if s.name == "mlops_requests_total"
    )
    assert latency_count == requests_total  # every request is timed, whatever its code

    assert sample(families, "mlops_inflight_requests", "mlops_inflight_requests", **LABELS) == 0
    assert families["mlops_payloads_logged"].type == "gauge"


def test_process_resources_in_metrics_and_stats(fleet: Fleet) -> None:
    server = fleet.doubler
    assert server.infer([{"x": 1.0}]).status_code == 200
    families = server.metrics()
    # The Prometheus process collector's names, so existing dashboards find them.
    cpu = sample(families, "process_cpu_seconds", "process_cpu_seconds_total")
    rss = sample(families, "process_resident_memory_bytes", "process_resident_memory_bytes")
    assert cpu > 0 and rss > 10_000_000
    # This client's keep-alive connection is open while it asks.
    assert sample(families, "mlops_open_connections", "mlops_open_connections") >= 1

    stats = server.client.get("/v2/health/stats").json()
    assert set(stats) == {
        "ready", "stuck", "inflight", "queue", "workers", "longest_predict_s", "lone", "payload",
        "process", "pool", "worker_pids", "worker_restarts", "worker_failure",
    }  # fmt: skip
    assert (stats["pool"], stats["worker_pids"], stats["worker_restarts"]) == ("threads", [], 0)
    assert stats["lone"]["paused"] >= 1  # the request above, predicted on the loop's thread
    assert sample(families, "mlops_worker_processes_resident_memory_bytes",
                  "mlops_worker_processes_resident_memory_bytes") == 0  # fmt: skip
    assert (stats["ready"], stats["stuck"], stats["queue"]) == (True, False, 0)
    assert stats["inflight"] == 0 and stats["payload"] is None
    assert set(stats["process"]) == {"cpu_seconds", "rss_bytes", "open_connections", "processes"}
    # A thread pool starts no process: the server is the whole replica.
    assert stats["process"]["processes"] == 1
    assert sample(families, "mlops_helper_processes_resident_memory_bytes",
                  "mlops_helper_processes_resident_memory_bytes") == 0  # fmt: skip
    assert stats["process"]["rss_bytes"] > 10_000_000 and stats["process"]["open_connections"] >= 1

    logged = fleet.iris.client.get("/v2/health/stats").json()["payload"]
    assert set(logged) == {"written", "pending", "dropped", "failing", "last_error"}
