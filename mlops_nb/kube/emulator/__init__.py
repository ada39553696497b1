"""A small Kubernetes API server for tests, demos and laptops: ``Emulator``.

Started like moto's server, in-process (a context manager) or as
``python -m mlops_nb.kube.emulator --port 8001``. It speaks enough of the API for the
official client and ``kubectl`` (get, apply --server-side, rollout status / history /
undo, scale) and runs pods whose container is ``python -m ...`` as local processes. It
programs Gateways and routes their requests by HTTPRoute weights (:mod:`.gateway`).

>>> with Emulator(processes=False) as emu:
...     emu.create_namespace("ml")
...     sorted(n["metadata"]["name"] for n in emu.store.list(emu.kind("v1", "Namespace"), None))
['default', 'ml']
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from ... import loopback
from .controller import OUTCOMES, Controller
from .gateway import Gateways
from .kubelet import Kubelet, free_port
from .resources import KINDS_BY_KIND, Kind
from .server import Fault, Server
from .store import ApiError, Store

__all__ = ["ApiError", "Emulator", "Fault"]


class Emulator:
    """The API server, its controllers and a kubelet, on 127.0.0.1.

    ``auto=True`` runs the controllers and the kubelet every ``interval`` seconds in a
    thread; with ``auto=False`` a test advances them with :meth:`step`.
    ``processes=False`` simulates every pod instead of running processes.
    """

    def __init__(self, port: int | None = None, *, auto: bool = True, processes: bool = True,
                 interval: float = 0.1, namespaces: tuple[str, ...] = ("default",)) -> None:  # fmt: skip
        self.port = port or free_port()
        self.auto, self.interval = auto, interval
        self.store = Store()
        self.controller = Controller(self.store)
        self._tmp = tempfile.TemporaryDirectory(prefix="mlops-nb-kube-")
        self.kubelet = Kubelet(self.store, self.controller, processes, Path(self._tmp.name))
        self.gateways = Gateways(self)
        self.faults: list[Fault] = []
        self.stopping = False
        self.turn = itertools.count()
        self.http = loopback.client(timeout=30.0)
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []
        self._step_lock = threading.Lock()
        for ns in namespaces:
            self.create_namespace(ns)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        return f"<Emulator {self.url}>"

    def kind(self, api_version: str, kind: str) -> Kind:
        return KINDS_BY_KIND[(api_version, kind)]

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Emulator:
        self._server = Server(self.port, self)
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                 name="kube-emulator-http", daemon=True)  # fmt: skip
        serve.start()
        self._threads.append(serve)
        if self.auto:
            loop = threading.Thread(
                target=self._loop, name="kube-emulator-controllers", daemon=True
            )
            loop.start()
            self._threads.append(loop)
        return self

    def stop(self) -> None:
        self.stopping = True
        with self.store.changed:
            self.store.changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for t in self._threads:
            t.join(timeout=15)
        with self._step_lock:
            self.kubelet.close()
        self.http.close()
        self._tmp.cleanup()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self.stopping:
            self.step()
            time.sleep(self.interval)

    def step(self, times: int = 1) -> None:
        """Run the controllers and the kubelet once (``times`` times)."""
        for _ in range(times):
            with self._step_lock:
                if self.stopping:
                    return
                parts = (self.controller.step, self.kubelet.step, self.controller.step,
                         self.store.collect_orphans, self.gateways.step)  # fmt: skip
                for part in parts:
                    # A write that raced a client's fails; the next step sees the new object.
                    with contextlib.suppress(ApiError):
                        part()

    # -- test controls -------------------------------------------------------------------

    def create_namespace(self, name: str) -> None:
        ns = self.kind("v1", "Namespace")
        try:
            self.store.create(ns, "", {"metadata": {"name": name}, "status": {"phase": "Active"}},
                              "emulator")  # fmt: skip
        except ApiError as e:
            if e.code != 409:
                raise

    def outcome(self, namespace: str, deployment: str, outcome: str) -> None:
        """How the next (and current) rollout of a Deployment goes: see ``OUTCOMES``."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        self.controller.outcomes[(namespace, deployment)] = outcome

    def fail(self, code: int, verb: str | None = None, resource: str | None = None,
             name: str | None = None, *, times: int | None = 1, message: str | None = None) -> Fault:  # fmt: skip
        """Answer matching requests with ``code`` (and change nothing), ``times`` times."""
        fault = Fault(code, verb, resource, name, times, message)
        self.faults.append(fault)
        return fault

    def kubeconfig(self, path: str | Path, *, context: str = "emulator",
                   namespace: str = "default") -> Path:  # fmt: skip
        """Write a kubeconfig whose context ``context`` points at this server."""
        doc: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "emulator"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                       "namespace": namespace}}],
        }  # fmt: skip
        path = Path(path)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def wait(self, predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
        """Poll ``predicate()`` until it returns something truthy (stepping if not auto)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.auto:
                self.step()
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"{what} not reached within {timeout:g}s")
