"""The built-in objects of a model deployment: ConfigMap, Deployment, Service, HPA, PDB.

The pod gets the artifact by an init container that copies it from the artifact store
and verifies every digest (``python -m mlops_nb.kube.fetch``) into an ``emptyDir``, then
the server (``python -m mlops_nb.serve``) loads it from there, verifying again, and
spools payloads to ``spool``. The root filesystem is read-only and the user is not root;
the only writable places are that ``emptyDir`` and ``/tmp``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import names as n

SPEC_DIR = "/etc/mlops-nb"
WORK_DIR = "/var/lib/mlops-nb"
VOLUME_DIR = "/mnt/mlops-nb/artifacts"
UID = 10001


@dataclass(frozen=True)
class Workload:
    """One revision of a deployment as a pod runs it."""

    name: str
    namespace: str
    model: str
    version: int
    revision: int
    digest: str
    spec: dict[str, Any]
    workspace: str = ""

    @property
    def labels(self) -> dict[str, str]:
        return {**n.common(self.name), n.NAME: n.k8s_name(self.model, 63),
                n.VERSION_LABEL: str(self.version), n.REVISION: str(self.revision)}  # fmt: skip

    @property
    def annotations(self) -> dict[str, str]:
        return {n.MODEL_ANN: self.model, n.VERSION_ANN: str(self.version), n.DIGEST_ANN: self.digest,
                n.WORKSPACE_ANN: self.workspace, n.ARTIFACT_ANN: str(self.spec["artifact_uri"])}  # fmt: skip

    @property
    def config_name(self) -> str:
        return f"{self.name}-r{self.revision}-spec"


@dataclass(frozen=True)
class PodOptions:
    image: str
    resources: dict[str, str] | None = None
    s3_secret: str | None = None
    volume: dict[str, Any] | None = None  # a mounted artifact store instead of the download
    service_account: str | None = None


def _meta(
    name: str, ns: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    return meta


def configmap(w: Workload) -> dict[str, Any]:
    """The server's spec, with no credentials (those come from ``s3_secret``)."""
    spec = dict(w.spec)
    spec["s3_options"] = {k: v for k, v in (spec.get("s3_options") or {}).items()
                          if k not in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")} or None  # fmt: skip
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(w.config_name, w.namespace, w.labels, w.annotations),
            "data": {"spec.json": json.dumps(spec, sort_keys=True, indent=1)}}  # fmt: skip


def _security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": UID, "capabilities": {"drop": ["ALL"]}}  # fmt: skip


def _resources(given: dict[str, str] | None) -> dict[str, Any]:
    req = {"cpu": "250m", "memory": "512Mi", **(given or {})}
    # A CPU limit throttles a latency-bound server; memory has one so a leak is contained.
    return {"requests": req, "limits": {"memory": req["memory"]}}


def pod_template(w: Workload, opts: PodOptions) -> dict[str, Any]:
    mounts = [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
              {"name": "work", "mountPath": WORK_DIR}, {"name": "tmp", "mountPath": "/tmp"}]  # fmt: skip
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": w.config_name}},
        {"name": "work", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}},
    ]  # fmt: skip
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
    env_from = [{"secretRef": {"name": opts.s3_secret}}] if opts.s3_secret else []
    fetch = ["python", "-m", "mlops_nb.kube.fetch", "--spec", f"{SPEC_DIR}/spec.json",
             "--into", f"{WORK_DIR}/artifacts", "--write-spec", f"{WORK_DIR}/serve.json"]  # fmt: skip
    if opts.volume is not None:
        volumes.append({"name": "artifacts", **opts.volume})
        mounts.append({"name": "artifacts", "mountPath": VOLUME_DIR, "readOnly": True})
        fetch += ["--from", VOLUME_DIR]
    server: dict[str, Any] = {
        "name": "server", "image": opts.image, "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "mlops_nb.serve"],
        "args": ["--spec", f"{WORK_DIR}/serve.json", "--host", "0.0.0.0", "--port", str(n.PORT)],
        "ports": [{"name": "http", "containerPort": n.PORT, "protocol": "TCP"}],
        "env": env, "resources": _resources(opts.resources), "volumeMounts": mounts,
        "securityContext": _security(),
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"},
                           "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"},
                          "periodSeconds": 10, "failureThreshold": 3},
        "startupProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"},
                         "periodSeconds": 2, "failureThreshold": 60},
    }  # fmt: skip
    init: dict[str, Any] = {"name": "fetch-artifact", "image": opts.image, "imagePullPolicy": "IfNotPresent",
                            "command": fetch[:3], "args": fetch[3:], "env": env,
                            "resources": _resources(opts.resources), "volumeMounts": mounts,
                            "securityContext": _security()}  # fmt: skip
    if env_from:
        server["envFrom"] = init["envFrom"] = env_from
    spec: dict[str, Any] = {
        "initContainers": [init], "containers": [server], "volumes": volumes,
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 40,
    }  # fmt: skip
    if opts.service_account:
        spec["serviceAccountName"] = opts.service_account
    annotations = {**w.annotations, "prometheus.io/scrape": "true", "prometheus.io/port": str(n.PORT),
                   "prometheus.io/path": "/metrics"}  # fmt: skip
    return {"metadata": {"labels": w.labels, "annotations": annotations}, "spec": spec}


def deployment(
    w: Workload, opts: PodOptions, name: str, replicas: int | None, role: str
) -> dict[str, Any]:
    """``replicas=None`` leaves the count to an HPA (server-side apply then never resets it)."""
    labels = {**w.labels, n.ROLE: role}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {n.INSTANCE: w.name, n.ROLE: role}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600, "minReadySeconds": 0,
        "template": pod_template(w, opts),
    }  # fmt: skip
    spec["template"]["metadata"]["labels"][n.ROLE] = role
    if replicas is not None:
        spec = {"replicas": replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(name, w.namespace, labels, w.annotations), "spec": spec}  # fmt: skip


def service(name: str, ns: str, deployment: str, select: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(name, ns, n.common(deployment)),
            "spec": {"type": "ClusterIP", "selector": {n.INSTANCE: deployment, **select},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}  # fmt: skip


def hpa(
    name: str, ns: str, deployment: str, target: str, low: int, high: int, cpu: int
) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, ns, n.common(deployment)),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                     "minReplicas": low, "maxReplicas": high,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}]}}  # fmt: skip


def pdb(name: str, ns: str, deployment: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(name, ns, n.common(deployment)),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {n.INSTANCE: deployment}}}}  # fmt: skip
