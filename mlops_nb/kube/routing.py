"""Traffic objects for weights the cluster routes: Gateway API, Istio, Argo Rollouts.

Each revision has a Service ``<name>-r<revision>`` selecting its pods; an HTTPRoute or a
VirtualService (with DestinationRule subsets) splits the deployment's host between them.
With ``argo-rollouts`` a ``Rollout`` carries the canary steps and an ``AnalysisTemplate``
reads the revisions' error rate from Prometheus, so the analysis runs in the cluster.
"""

from __future__ import annotations

from typing import Any

from . import names as n

GATEWAY = "gateway.networking.k8s.io/v1"
ISTIO = "networking.istio.io/v1"
ARGO = "argoproj.io/v1alpha1"


def _meta(name: str, ns: str, deployment: str) -> dict[str, Any]:
    return {"name": name, "namespace": ns, "labels": n.common(deployment)}


def httproute(name: str, ns: str, weights: dict[int, int], gateway: str) -> dict[str, Any]:
    gw_ns, _, gw_name = gateway.rpartition("/")
    parent: dict[str, Any] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gw_name,
    }
    if gw_ns:
        parent["namespace"] = gw_ns
    refs = [{"group": "", "kind": "Service", "name": f"{name}-r{r}", "port": 80, "weight": w}
            for r, w in sorted(weights.items())]  # fmt: skip
    # The deployment's own path on a Gateway that other routes (other namespaces too)
    # share; its servers see "/".
    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
    }
    return {"apiVersion": GATEWAY, "kind": "HTTPRoute", "metadata": _meta(name, ns, name),
            "spec": {"parentRefs": [parent],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": route_path(ns, name)}}],
                                "filters": [rewrite], "backendRefs": refs}]}}  # fmt: skip


def route_path(ns: str, name: str) -> str:
    """The path prefix a deployment's HTTPRoute claims on its Gateway: ``/<namespace>/<name>``."""
    return f"/{ns}/{name}"


def gateway_url(gateway: dict[str, Any]) -> str | None:
    """Where a Gateway takes requests, from its ``status.addresses`` (None before it has one).

    An ``IPAddress`` or ``Hostname`` is reached on the Gateway's first HTTP(S) listener's
    port; a URL-valued address (the emulator's ``mlops-nb.dev/URL``) is taken as it is.
    """
    addresses = (gateway.get("status") or {}).get("addresses") or []
    if not addresses:
        return None
    value = str(addresses[0]["value"])
    if "://" in value:
        return value.rstrip("/")
    listeners = [x for x in (gateway.get("spec") or {}).get("listeners") or []
                 if x.get("protocol") in ("HTTP", "HTTPS")]  # fmt: skip
    scheme = "https" if listeners and listeners[0]["protocol"] == "HTTPS" else "http"
    port = int(listeners[0]["port"]) if listeners else 80
    if ":" in value and not value.startswith("["):
        value = f"[{value}]"  # an IPv6 address
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{value}" + (f":{port}" if port != default else "")


def istio(name: str, ns: str, weights: dict[int, int]) -> list[dict[str, Any]]:
    host = f"{name}.{ns}.svc.cluster.local"
    subsets = [{"name": f"r{r}", "labels": {n.REVISION: str(r)}} for r in sorted(weights)]
    routes = [{"destination": {"host": host, "subset": f"r{r}", "port": {"number": 80}}, "weight": w}
              for r, w in sorted(weights.items())]  # fmt: skip
    return [
        {"apiVersion": ISTIO, "kind": "DestinationRule", "metadata": _meta(name, ns, name),
         "spec": {"host": host, "subsets": subsets}},
        {"apiVersion": ISTIO, "kind": "VirtualService", "metadata": _meta(name, ns, name),
         "spec": {"hosts": [host], "http": [{"route": routes}]}},
    ]  # fmt: skip


def analysis_template(name: str, ns: str, prometheus: str, max_error_rate: float,
                      interval: str, failure_limit: int) -> dict[str, Any]:  # fmt: skip
    query = (
        f'sum(rate(mlops_requests_total{{namespace="{ns}",code=~"5..",'
        'rollouts_pod_template_hash="{{args.canary-hash}}"}[2m])) / '
        f'clamp_min(sum(rate(mlops_requests_total{{namespace="{ns}",'
        'rollouts_pod_template_hash="{{args.canary-hash}}"}[2m])), 1e-9)'
    )
    return {"apiVersion": ARGO, "kind": "AnalysisTemplate", "metadata": _meta(f"{name}-error-rate", ns, name),
            "spec": {"args": [{"name": "canary-hash"}],
                     "metrics": [{"name": "error-rate", "interval": interval, "failureLimit": failure_limit,
                                  "successCondition": f"result[0] <= {max_error_rate:g}",
                                  "provider": {"prometheus": {"address": prometheus, "query": query}}}]}}  # fmt: skip


def rollout(name: str, ns: str, labels: dict[str, str], template: dict[str, Any], replicas: int,
            steps: tuple[int, ...], pause: str, analysis: bool) -> dict[str, Any]:  # fmt: skip
    canary_steps: list[dict[str, Any]] = []
    for w in steps:
        canary_steps.append({"setWeight": int(w)})
        if w < 100:
            canary_steps.append({"pause": {"duration": pause}})
    canary: dict[str, Any] = {"steps": canary_steps, "canaryService": f"{name}-canary",
                              "stableService": f"{name}-stable"}  # fmt: skip
    if analysis:
        canary["analysis"] = {"templates": [{"templateName": f"{name}-error-rate"}], "startingStep": 1,
                              "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]}  # fmt: skip
    return {"apiVersion": ARGO, "kind": "Rollout", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"replicas": replicas, "revisionHistoryLimit": 10,
                     "selector": {"matchLabels": {n.INSTANCE: name}},
                     "template": template, "strategy": {"canary": canary}}}  # fmt: skip
