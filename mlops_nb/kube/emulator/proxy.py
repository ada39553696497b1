"""Where the API server's pod and service proxies send a request: a kubelet process port.

``pods/NAME[:PORT]/proxy/...`` reaches that pod's process; ``services/NAME[:PORT]/proxy/...``
takes turns over the ready pods the Service selects, and answers 503 ``no endpoints
available`` when there is none, as the real one does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .resources import KINDS_BY_KIND, Kind
from .selectors import of_match_labels
from .store import ApiError

if TYPE_CHECKING:
    from . import Emulator

POD = KINDS_BY_KIND[("v1", "Pod")]
SERVICE = KINDS_BY_KIND[("v1", "Service")]


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def resolve(emu: Emulator, kind: Kind, ns: str, target: str) -> int:
    """The local port for ``[scheme:]name[:port]`` of a pod or a service."""
    bits = target.split(":")
    name = bits[1] if len(bits) == 3 else bits[0]
    port: int | str | None = bits[-1] if len(bits) > 1 else None
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    obj = emu.store.get(kind, ns, name)
    if kind.plural == "pods":
        local = emu.kubelet.port_of(obj, port)
        if local is None:
            raise ApiError(
                503, "ServiceUnavailable", f'pod "{name}" has no running process on port {port}'
            )
        return local
    sp = next(
        (p for p in obj["spec"].get("ports", []) if port in (None, p.get("port"), p.get("name"))),
        None,
    )
    if sp is None:
        raise ApiError(503, "ServiceUnavailable", f'no port {port} on service "{name}"')
    selector = of_match_labels(obj["spec"].get("selector") or {})
    pods = [p for p in emu.store.list(POD, ns, selector) if _ready(p)]
    ports = [
        x
        for p in pods
        if (x := emu.kubelet.port_of(p, sp.get("targetPort", sp["port"]))) is not None
    ]
    if not ports:
        raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    return ports[next(emu.turn) % len(ports)]
