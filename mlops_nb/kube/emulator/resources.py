"""The kinds the emulator serves, and the discovery documents clients read first.

>>> KINDS_BY_PLURAL[("apps", "deployments")].api_version
'apps/v1'
>>> [v["groupVersion"] for v in group_list()["groups"][0]["versions"]]
['apps/v1']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    status: bool = False
    scale: bool = False
    short: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def resources(self) -> list[dict[str, Any]]:
        main = {"name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
                "kind": self.kind, "verbs": _VERBS, "shortNames": list(self.short)}  # fmt: skip
        out = [main]
        if self.status:
            out.append({"name": f"{self.plural}/status", "singularName": "", "kind": self.kind,
                        "namespaced": self.namespaced, "verbs": ["get", "patch", "update"]})  # fmt: skip
        if self.scale:
            out.append({"name": f"{self.plural}/scale", "singularName": "", "kind": "Scale",
                        "group": "autoscaling", "version": "v1", "namespaced": True,
                        "verbs": ["get", "patch", "update"]})  # fmt: skip
        if self.plural in ("pods", "services"):
            out.append({"name": f"{self.plural}/proxy", "singularName": "", "kind": "Pod"
                        if self.plural == "pods" else "Service", "namespaced": True,
                        "verbs": ["create", "delete", "get", "patch", "update"]})  # fmt: skip
        if self.plural == "pods":
            out.append({"name": "pods/log", "singularName": "", "kind": "Pod",
                        "namespaced": True, "verbs": ["get"]})  # fmt: skip
        return out


KINDS = (
    Kind("", "v1", "Namespace", "namespaces", namespaced=False, status=True, short=("ns",)),
    Kind("", "v1", "Pod", "pods", status=True, short=("po",)),
    Kind("", "v1", "Service", "services", status=True, short=("svc",)),
    Kind("", "v1", "ConfigMap", "configmaps", short=("cm",)),
    Kind("", "v1", "Secret", "secrets"),
    Kind("", "v1", "ServiceAccount", "serviceaccounts", short=("sa",)),
    Kind("", "v1", "Event", "events", short=("ev",)),
    Kind("apps", "v1", "Deployment", "deployments", status=True, scale=True, short=("deploy",)),
    Kind("apps", "v1", "ReplicaSet", "replicasets", status=True, scale=True, short=("rs",)),
    Kind(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        status=True,
        short=("hpa",),
    ),
    Kind(
        "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", status=True, short=("pdb",)
    ),
    Kind("batch", "v1", "CronJob", "cronjobs", status=True, short=("cj",)),
    Kind("batch", "v1", "Job", "jobs", status=True),
    Kind("gateway.networking.k8s.io", "v1", "Gateway", "gateways", status=True, short=("gtw",)),
    Kind("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", status=True),
    Kind("networking.istio.io", "v1", "VirtualService", "virtualservices", short=("vs",)),
    Kind("networking.istio.io", "v1", "DestinationRule", "destinationrules", short=("dr",)),
    Kind("argoproj.io", "v1alpha1", "Rollout", "rollouts", status=True, scale=True, short=("ro",)),
    Kind("argoproj.io", "v1alpha1", "AnalysisTemplate", "analysistemplates"),
    # Argo Workflows' kinds are stored and served (pipelines are submitted to them); no
    # workflow controller runs them here.
    Kind("argoproj.io", "v1alpha1", "Workflow", "workflows", status=True, short=("wf",)),
    Kind("argoproj.io", "v1alpha1", "CronWorkflow", "cronworkflows", short=("cwf",)),
)
KINDS_BY_PLURAL = {(k.group, k.plural): k for k in KINDS}
KINDS_BY_KIND = {(k.api_version, k.kind): k for k in KINDS}


def _groups() -> dict[str, list[Kind]]:
    out: dict[str, list[Kind]] = {}
    for k in KINDS:
        if k.group:
            out.setdefault(k.group, []).append(k)
    return out


def core_versions(address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}  # fmt: skip


def _group(name: str, kinds: list[Kind]) -> dict[str, Any]:
    version = {"groupVersion": f"{name}/{kinds[0].version}", "version": kinds[0].version}
    return {"name": name, "versions": [version], "preferredVersion": version}


def group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(n, ks) for n, ks in _groups().items()]}  # fmt: skip


def group(name: str) -> dict[str, Any] | None:
    kinds = _groups().get(name)
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, kinds)} if kinds else None


def resource_list(group_name: str, version: str) -> dict[str, Any] | None:
    kinds = [k for k in KINDS if k.group == group_name and k.version == version]
    if not kinds:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": kinds[0].api_version,
            "resources": [r for k in kinds for r in k.resources()]}  # fmt: skip


def version_info() -> dict[str, str]:
    return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-mlops-nb-emulator",
            "platform": "linux/amd64", "goVersion": "go1.23", "compiler": "gc",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z"}  # fmt: skip


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_root() -> dict[str, Any]:
    """``/openapi/v3``: one document per group version (kubectl reads it for validation)."""
    gvs = sorted({(k.group, k.version) for k in KINDS})
    return {"paths": {_gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash=1"}
                      for g, v in gvs}}  # fmt: skip


def openapi_group(path: str) -> dict[str, Any] | None:
    """A group version's document: the PATCH operations, which accept ``fieldValidation``
    (so kubectl leaves validation to the server instead of needing every schema)."""
    kinds = [k for k in KINDS if _gv_path(k.group, k.version) == path]
    if not kinds:
        return None
    params = [{"name": n, "in": "query", "schema": {"type": "string"}}
              for n in ("dryRun", "fieldManager", "fieldValidation", "force")]  # fmt: skip
    paths = {}
    for k in kinds:
        gvk = {"group": k.group, "version": k.version, "kind": k.kind}
        where = "/namespaces/{namespace}" if k.namespaced else ""
        op = {"operationId": f"patch{k.kind}", "parameters": params,
              "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch",
              "responses": {"200": {"description": "OK"}}}  # fmt: skip
        paths[f"/{path}{where}/{k.plural}/{{name}}"] = {"patch": op}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}  # fmt: skip
