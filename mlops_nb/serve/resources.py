"""What a replica costs: CPU seconds, resident memory and open client connections.

``/metrics`` carries them under the Prometheus process collector's names
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...) plus
``mlops_open_connections``; worker processes (``pool="processes"``) are counted apart, as
``mlops_worker_processes_cpu_seconds`` (a gauge: it drops when a process is replaced) and
``mlops_worker_processes_resident_memory_bytes``. ``/v2/health/stats`` carries the
server's and its worker processes' figures together, as JSON.

>>> usage = Usage()
>>> sorted(usage.snapshot())
['cpu_seconds', 'open_connections', 'rss_bytes']
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector


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
            Gauge(
                "mlops_worker_processes_cpu_seconds",
                "CPU seconds of this server's worker processes (pool='processes')",
                registry=registry,
            ).set_function(lambda: self.children()[0])  # fmt: skip
            Gauge(
                "mlops_worker_processes_resident_memory_bytes",
                "Resident memory of this server's worker processes (pool='processes')",
                registry=registry,
            ).set_function(lambda: self.children()[1])  # fmt: skip

    def children(self) -> tuple[float, int]:
        """CPU seconds and resident bytes of the live worker processes (0 with threads)."""
        procs = []
        for pid in self.workers():
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        return cpu_and_rss(procs)

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
        child_cpu, child_rss = self.children()
        return {
            "cpu_seconds": round(cpu.user + cpu.system + child_cpu, 3),
            "rss_bytes": int(rss + child_rss),
            "open_connections": self.open_connections(),
        }
