"""What a replica costs: CPU seconds, resident memory and open client connections.

``/metrics`` carries them under the Prometheus process collector's names
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...) plus
``mlops_open_connections``. The processes the server started are counted apart, each kind
as a pair of gauges (they drop when a process ends or is replaced):
``mlops_worker_processes_cpu_seconds`` and ``..._resident_memory_bytes`` for the worker
processes of ``pool="processes"``, ``mlops_helper_processes_...`` for every other one (the
helper that parses large bodies, multiprocessing's resource tracker). ``/v2/health/stats``
carries the server's and all its processes' figures together, as JSON, with how many
processes they add up.

>>> usage = Usage()
>>> sorted(usage.snapshot())
['cpu_seconds', 'open_connections', 'processes', 'rss_bytes']
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


def cpu_and_rss(procs: list[psutil.Process]) -> tuple[float, int]:
    """CPU seconds and resident bytes of ``procs`` together (those gone count nothing)."""
    cpu, rss = 0.0, 0
    for proc in procs:
        with contextlib.suppress(psutil.Error), proc.oneshot():
            times = proc.cpu_times()
            cpu += times.user + times.system
            rss += proc.memory_info().rss
    return cpu, rss


class Usage:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._process = psutil.Process()
        # The server's worker processes (pool="processes" sets it): pids, from any thread.
        self.workers: Callable[[], list[int]] = list
        if registry is not None:
            ProcessCollector(registry=registry)
            Gauge(
                "mlops_open_connections", "Client TCP connections open to this server",
                registry=registry,
            ).set_function(self.open_connections)  # fmt: skip
            registry.register(_Children(self))

    def children(self) -> dict[str, list[psutil.Process]]:
        """The processes this server started, living: ``workers`` (pool="processes") and
        ``helpers`` (any other, at any depth)."""
        try:
            tree = self._process.children(recursive=True)
        except psutil.Error:
            tree = []
        workers = set(self.workers())
        return {
            "workers": [p for p in tree if p.pid in workers],
            "helpers": [p for p in tree if p.pid not in workers],
        }

    def open_connections(self) -> int:
        """Established TCP connections to this process's listening ports (clients in)."""
        try:
            conns = self._process.net_connections(kind="tcp")
        except (psutil.Error, OSError):
            return 0
        listening = {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
        return sum(
            1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port in listening
        )

    def snapshot(self) -> dict[str, Any]:
        with self._process.oneshot():
            cpu = self._process.cpu_times()
            rss = self._process.memory_info().rss
        procs = [p for kind in self.children().values() for p in kind]
        child_cpu, child_rss = cpu_and_rss(procs)
        return {
            "cpu_seconds": round(cpu.user + cpu.system + child_cpu, 3),
            "rss_bytes": int(rss + child_rss),
            "open_connections": self.open_connections(),
            "processes": 1 + len(procs),
        }


class _Children(Collector):
    """The gauges of the server's own processes, from one look at its process tree per
    scrape."""

    def __init__(self, usage: Usage) -> None:
        self._usage = usage

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self._families({})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(self._usage.children())

    @staticmethod
    def _families(children: dict[str, list[psutil.Process]]) -> Iterator[GaugeMetricFamily]:
        for kind, what in (("worker", "worker processes (pool='processes')"),
                           ("helper", "other processes (large-body helper, ...)")):  # fmt: skip
            cpu, rss = cpu_and_rss(children.get(f"{kind}s", []))
            yield GaugeMetricFamily(
                f"mlops_{kind}_processes_cpu_seconds",
                f"CPU seconds of this server's {what}",
                value=cpu,
            )
            yield GaugeMetricFamily(
                f"mlops_{kind}_processes_resident_memory_bytes",
                f"Resident memory of this server's {what}",
                value=rss,
            )
