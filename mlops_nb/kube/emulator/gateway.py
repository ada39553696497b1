"""The emulated cluster's Gateway controller and data plane: HTTPRoute weights, served.

As a Gateway controller does, :meth:`Gateways.step` gives every Gateway an address and
marks it ``Programmed``, and marks each HTTPRoute attached to it ``Accepted``. The address
is on the emulator's own server, under an implementation-specific address type (Gateway
API allows domain-prefixed ones)::

    status.addresses: [{type: mlops-nb.dev/URL, value: http://127.0.0.1:<port>/gateways/<ns>/<name>}]

A request to that URL is routed as the Gateway API specifies, which is what makes a
canary's weights real on the emulator: among the rules of the HTTPRoutes whose
``parentRefs`` name the Gateway, the one with the longest matching ``PathPrefix``; its
``URLRewrite`` filter's ``ReplacePrefixMatch``; then one of its ``backendRefs`` chosen by
weight, its Service taking turns over its ready pods. Backends are chosen by smooth
weighted round-robin (nginx's), so the split is exact, not random: with weights 75 and 25,
every 4 consecutive requests send 3 to the first. A listener takes routes of its own
namespace unless its ``allowedRoutes`` says ``from: All``. No rule matching the path: 404;
no backend of weight above 0: 500 (as the specification says).
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

from .resources import KINDS_BY_KIND
from .store import ApiError, now

if TYPE_CHECKING:
    from . import Emulator

GATEWAY = KINDS_BY_KIND[("gateway.networking.k8s.io/v1", "Gateway")]
ROUTE = KINDS_BY_KIND[("gateway.networking.k8s.io/v1", "HTTPRoute")]
ADDRESS_TYPE = "mlops-nb.dev/URL"
CONTROLLER = "mlops-nb.dev/emulator-gateway"
MANAGER = "emulator-gateway-controller"


def _attached(route: dict[str, Any], gw: dict[str, Any]) -> bool:
    """Whether ``route`` names ``gw`` among its parents and the Gateway admits it: by
    default its listeners take routes of their own namespace only (``allowedRoutes``)."""
    ns, name = gw["metadata"]["namespace"], gw["metadata"]["name"]
    home = route["metadata"]["namespace"]
    named = any(
        ref.get("kind", "Gateway") == "Gateway"
        and ref.get("group", "gateway.networking.k8s.io") == "gateway.networking.k8s.io"
        and ref.get("name") == name
        and ref.get("namespace", home) == ns
        for ref in route["spec"].get("parentRefs") or []
    )
    if not named:
        return False
    allowed = {
        ((x.get("allowedRoutes") or {}).get("namespaces") or {}).get("from", "Same")
        for x in (gw.get("spec") or {}).get("listeners") or [{}]
    }
    return "All" in allowed or home == ns


def _prefix(rule: dict[str, Any]) -> str | None:
    """The rule's path prefix ("/" when it has no matches); None for other match types."""
    matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
    for match in matches:
        path = match.get("path") or {"type": "PathPrefix", "value": "/"}
        if path.get("type", "PathPrefix") == "PathPrefix":
            return str(path.get("value", "/"))
    return None


def _under(path: str, prefix: str) -> bool:
    # Gateway API prefixes match whole path elements: /iris matches /iris/x, not /irises.
    trimmed = prefix.rstrip("/")
    return not trimmed or path == trimmed or path.startswith(trimmed + "/")


def _rewrite(rule: dict[str, Any], prefix: str, path: str) -> str:
    for f in rule.get("filters") or []:
        spec = (f.get("urlRewrite") or {}).get("path") or {}
        if f.get("type") == "URLRewrite" and spec.get("type") == "ReplacePrefixMatch":
            rest = path[len(prefix.rstrip("/")) :]
            new = str(spec.get("replacePrefixMatch", "/")).rstrip("/")
            return (new + rest) or "/"
    return path


class Gateways:
    """Addresses for Gateways, and the choice of a backend for each request."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self._lock = threading.Lock()
        # Smooth round-robin state per route rule, started again when its weights change.
        self._current: dict[tuple[str, int], tuple[list[int], list[int]]] = {}

    def url(self, ns: str, name: str) -> str:
        return f"{self.emu.url}/gateways/{ns}/{name}"

    def step(self) -> None:
        store = self.emu.store
        for gw in store.list(GATEWAY, None):
            ns, name = gw["metadata"]["namespace"], gw["metadata"]["name"]
            addresses = [{"type": ADDRESS_TYPE, "value": self.url(ns, name)}]
            status = gw.get("status") or {}
            if status.get("addresses") != addresses:
                gen = gw["metadata"].get("generation", 1)
                cond = {"type": "Programmed", "status": "True", "reason": "Programmed",
                        "message": "served by the emulator", "observedGeneration": gen,
                        "lastTransitionTime": now()}  # fmt: skip
                gw["status"] = {**status, "addresses": addresses, "conditions": [cond]}
                store.replace(GATEWAY, ns, name, gw, MANAGER, subresource="status")
            for route in store.list(ROUTE, None):
                if _attached(route, gw):
                    self._accept(route, ns, name)

    def _accept(self, route: dict[str, Any], ns: str, name: str) -> None:
        gen = route["metadata"].get("generation", 1)
        parent = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                "namespace": ns, "name": name},
                  "controllerName": CONTROLLER,
                  "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                  "message": "attached", "observedGeneration": gen,
                                  "lastTransitionTime": now()}]}  # fmt: skip
        parents = (route.get("status") or {}).get("parents") or []

        def this(p: dict[str, Any]) -> bool:
            ref = p.get("parentRef", {})
            return bool(ref.get("name") == name and ref.get("namespace") == ns)

        seen = [p for p in parents if this(p)]
        if seen and seen[0]["conditions"][0].get("observedGeneration") == gen:
            return
        others = [p for p in parents if not this(p)]
        route["status"] = {"parents": [*others, parent]}
        m = route["metadata"]
        self.emu.store.replace(ROUTE, m["namespace"], m["name"], route, MANAGER,
                               subresource="status")  # fmt: skip

    def route(self, ns: str, name: str, path: str) -> tuple[str, str, str]:
        """(backend namespace, ``service:port``, rewritten path) for a request to ``path``."""
        gw = self.emu.store.get(GATEWAY, ns, name)  # 404 for an unknown Gateway
        best: tuple[int, dict[str, Any], str, int, dict[str, Any]] | None = None
        for route in self.emu.store.list(ROUTE, None):
            if not _attached(route, gw):
                continue
            for i, rule in enumerate(route["spec"].get("rules") or []):
                prefix = _prefix(rule)
                if prefix is not None and _under(path, prefix):
                    length = len(prefix.rstrip("/"))
                    if best is None or length > best[0]:
                        best = (length, route, prefix, i, rule)
        if best is None:
            raise ApiError(404, "NotFound", f"no HTTPRoute on Gateway {ns}/{name} matches {path}")
        _, route, prefix, i, rule = best
        refs = [r for r in rule.get("backendRefs") or [] if int(r.get("weight", 1)) > 0]
        if not refs:
            raise ApiError(500, "InternalError", f"HTTPRoute {route['metadata']['name']} rule "
                           f"{i} has no backend with a weight above 0")  # fmt: skip
        ref = refs[
            self._pick((route["metadata"]["uid"], i), [int(r.get("weight", 1)) for r in refs])
        ]
        backend_ns = ref.get("namespace", route["metadata"]["namespace"])
        target = f"{ref['name']}:{ref['port']}" if "port" in ref else str(ref["name"])
        return backend_ns, target, _rewrite(rule, prefix, path)

    def _pick(self, key: tuple[str, int], weights: list[int]) -> int:
        divisor = math.gcd(*weights)
        weights = [w // divisor for w in weights]
        with self._lock:
            before, current = self._current.get(key, ([], []))
            if before != weights:
                current = [0] * len(weights)
                self._current[key] = (weights, current)
            for j, w in enumerate(weights):
                current[j] += w
            chosen = max(range(len(weights)), key=lambda j: current[j])
            current[chosen] -= sum(weights)
            return chosen
