"""Traffic per revision from the model servers' Prometheus metrics.

Without a Prometheus, the pods' ``/metrics`` are read through the API server's pod
proxy; the counters only grow, so a window is the difference against the sample taken
closest to ``window_s`` ago (a pod that started within the window counts from zero).
With ``prometheus=URL`` one ``increase(...[window])`` query answers instead.

>>> text = 'mlops_requests_total{model="m",version="1",code="500"} 2.0\\n'
>>> Sample.parse(text).requests
{'500': 2.0}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from ..deploy.target import RevisionTraffic


@dataclass
class Sample:
    requests: dict[str, float] = field(default_factory=dict)  # by status code
    buckets: dict[float, float] = field(default_factory=dict)  # latency, cumulative, seconds

    @classmethod
    def parse(cls, text: str) -> Sample:
        out = cls()
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == "mlops_requests_total":
                    code = s.labels.get("code", "")
                    out.requests[code] = out.requests.get(code, 0.0) + s.value
                elif s.name == "mlops_request_latency_seconds_bucket":
                    le = float(s.labels["le"])
                    out.buckets[le] = out.buckets.get(le, 0.0) + s.value
        return out

    def minus(self, old: Sample | None) -> Sample:
        if old is None:
            return self
        return Sample({k: v - old.requests.get(k, 0.0) for k, v in self.requests.items()},
                      {k: v - old.buckets.get(k, 0.0) for k, v in self.buckets.items()})  # fmt: skip

    def plus(self, other: Sample) -> Sample:
        keys = set(self.requests) | set(other.requests)
        les = set(self.buckets) | set(other.buckets)
        return Sample({k: self.requests.get(k, 0.0) + other.requests.get(k, 0.0) for k in keys},
                      {k: self.buckets.get(k, 0.0) + other.buckets.get(k, 0.0) for k in les})  # fmt: skip


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Latency quantile in ms from cumulative buckets, interpolated as Prometheus does."""
    items = sorted(buckets.items())
    if not items or items[-1][1] <= 0:
        return None
    rank = q * items[-1][1]
    lo_le, lo_count = 0.0, 0.0
    for le, count in items:
        if count >= rank:
            if math.isinf(le):
                return lo_le * 1000.0
            width = count - lo_count
            frac = (rank - lo_count) / width if width > 0 else 1.0
            return (lo_le + (le - lo_le) * frac) * 1000.0
        lo_le, lo_count = le, count
    return lo_le * 1000.0


def revision_traffic(revision: int, version: int, s: Sample) -> RevisionTraffic:
    codes = {k: round(v) for k, v in s.requests.items()}
    return RevisionTraffic(
        revision=revision, version=version, requests=sum(codes.values()),
        errors_5xx=sum(v for k, v in codes.items() if k.startswith("5")),
        errors_4xx=sum(v for k, v in codes.items() if k.startswith("4")),
        p50_ms=quantile(s.buckets, 0.5), p95_ms=quantile(s.buckets, 0.95), p99_ms=quantile(s.buckets, 0.99),
    )  # fmt: skip


def prometheus_query(url: str, namespace: str, model: str, window_s: float) -> dict[str, Sample]:
    """Per model version, the increase over the window, from a Prometheus server."""
    import httpx

    w = f"{max(1, int(window_s))}s"
    where = f'namespace="{namespace}",model="{model}"'
    out: dict[str, Sample] = {}
    for query, is_bucket in (
        (f"sum by (version, code) (increase(mlops_requests_total{{{where}}}[{w}]))", False),
        (
            f"sum by (version, le) (increase(mlops_request_latency_seconds_bucket{{{where}}}[{w}]))",
            True,
        ),
    ):
        r = httpx.get(f"{url.rstrip('/')}/api/v1/query", params={"query": query}, timeout=10.0)
        r.raise_for_status()
        for item in r.json()["data"]["result"]:
            m, value = item["metric"], float(item["value"][1])
            s = out.setdefault(m.get("version", ""), Sample())
            if is_bucket:
                s.buckets[float(m["le"])] = value
            else:
                s.requests[m.get("code", "")] = value
    return out
