"""Reading a deployment's traffic: pods' ``/metrics`` through the API server, or Prometheus.

Counters only grow, so the window is the difference against the oldest reading of that
pod within ``window_s``; a pod that started within the window counts from zero.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from ..deploy.target import DesiredState, RevisionTraffic, Traffic
from ..errors import KubernetesError
from . import metrics
from . import names as n
from .client import Cluster


def _age_s(pod: dict[str, Any]) -> float | None:
    started = (pod.get("status") or {}).get("startTime")
    if not started:
        return None
    when = dt.datetime.fromisoformat(str(started).replace("Z", "+00:00"))
    return (dt.datetime.now(dt.UTC) - when).total_seconds()


class Scraper:
    """Keeps each pod's recent readings, so a window can be taken from them."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.cluster, self.ns, self.name = cluster, namespace, name
        self.samples: dict[str, list[tuple[float, metrics.Sample]]] = {}

    def _read(self, api: Any, pod: str) -> metrics.Sample | None:
        try:
            resp = api.connect_get_namespaced_pod_proxy_with_path(
                f"{pod}:{n.PORT}", self.ns, "metrics", _preload_content=False
            )
            return metrics.Sample.parse(resp.data.decode())
        except Exception:
            return None  # a pod that does not answer has served nothing we can count

    def traffic(self, window_s: float) -> Traffic:
        from kubernetes.client import CoreV1Api

        api = CoreV1Api(self.cluster.api)
        now = time.monotonic()
        sums: dict[int, tuple[int, metrics.Sample]] = {}
        for pod in self.cluster.list("v1", "Pod", self.ns, f"{n.INSTANCE}={self.name}"):
            name = pod["metadata"]["name"]
            if (pod.get("status") or {}).get("phase") != "Running":
                continue
            sample = self._read(api, name)
            if sample is None:
                continue
            history = self.samples.setdefault(name, [])
            history.append((now, sample))
            history[:] = [h for h in history if now - h[0] <= max(window_s * 2, 60.0)]
            age = _age_s(pod)
            young = age is None or age <= window_s or len(history) == 1
            base = None if young else next(s for t, s in history if now - t <= window_s)
            labels = pod["metadata"]["labels"]
            rev = int(labels.get(n.REVISION, 0))
            version, total = sums.get(rev, (int(labels.get(n.VERSION_LABEL, 0)), metrics.Sample()))
            sums[rev] = (version, total.plus(sample.minus(base)))
        for gone in set(self.samples) - {p for p in self.samples if self.samples[p][-1][0] == now}:
            del self.samples[gone]
        revs = tuple(metrics.revision_traffic(r, v, s) for r, (v, s) in sorted(sums.items()))
        return Traffic(window_s=window_s, revisions=revs)


def from_prometheus(url: str, namespace: str, desired: DesiredState | None, fallback: str,
                    window_s: float) -> Traffic:  # fmt: skip
    by_version = {r.version: r.revision for r in (desired.revisions if desired else ())}
    try:
        samples = metrics.prometheus_query(
            url, namespace, desired.model if desired else fallback, window_s
        )
    except Exception as e:
        raise KubernetesError(f"Prometheus at {url} did not answer: {e}; check prometheus=") from e
    out: list[RevisionTraffic] = []
    for version, s in sorted(samples.items()):
        if version.isdigit() and int(version) in by_version:
            out.append(metrics.revision_traffic(by_version[int(version)], int(version), s))
    return Traffic(window_s=window_s, revisions=tuple(out))
