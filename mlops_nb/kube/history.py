"""Revision history and undo of the primary Deployment, as ``kubectl rollout`` has them.

Revisions are the ReplicaSets' ``deployment.kubernetes.io/revision``; undo writes the
chosen ReplicaSet's pod template back to the Deployment (the controller then re-uses that
ReplicaSet under the next revision number, as it does for ``kubectl rollout undo``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import ClusterNotFound, KubernetesError, RolloutFailed
from . import names as n
from .client import Cluster

REVISION_ANN = "deployment.kubernetes.io/revision"
_KEPT = ("replicas", "selector", "strategy", "revisionHistoryLimit", "progressDeadlineSeconds",
         "minReadySeconds")  # fmt: skip


@dataclass(frozen=True)
class Undo:
    """What an undo did: Kubernetes revisions (as ``kubectl rollout history``) and the version."""

    from_revision: int
    to_revision: int
    revision: int
    version: int
    skipped: bool = False


def rev_of(template: dict[str, Any]) -> int:
    return int(((template.get("metadata") or {}).get("labels") or {}).get(n.REVISION, 0))


def version_of(template: dict[str, Any]) -> int:
    return int(((template.get("metadata") or {}).get("labels") or {}).get(n.VERSION_LABEL, 0))


def _number(rs: dict[str, Any]) -> int:
    return int((rs["metadata"].get("annotations") or {}).get(REVISION_ANN, 0))


def replicasets(cluster: Cluster, d: dict[str, Any]) -> list[dict[str, Any]]:
    """The ReplicaSets a Deployment controls, oldest revision first."""
    match = d["spec"]["selector"].get("matchLabels") or {}
    rss = cluster.list("apps/v1", "ReplicaSet", d["metadata"]["namespace"], n.selector(match))
    uid = d["metadata"]["uid"]
    owned = [
        rs
        for rs in rss
        if any(r.get("uid") == uid for r in rs["metadata"].get("ownerReferences") or [])
    ]
    return sorted(owned, key=_number)


def history(cluster: Cluster, d: dict[str, Any] | None) -> list[dict[str, Any]]:
    if d is None:
        return []
    return [{"revision": _number(rs), "mlops_revision": rev_of(rs["spec"]["template"]),
             "version": version_of(rs["spec"]["template"]), "replicaset": rs["metadata"]["name"]}
            for rs in replicasets(cluster, d)]  # fmt: skip


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    from .emulator.controller import template_hash

    return template_hash(a) == template_hash(b)


def undo(cluster: Cluster, d: dict[str, Any] | None, to: int | None, *, autoscaled: bool) -> Undo:
    """Back to the previous revision, or to ``to``; a paused Deployment is refused."""
    if d is None:
        raise ClusterNotFound("the deployment's primary Deployment does not exist", status=404)
    ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
    if d["spec"].get("paused"):
        raise RolloutFailed(f"deployment {ns}/{name} is paused: resume it first with "
                            f"`kubectl rollout resume deployment/{name} -n {ns}`, then undo")  # fmt: skip
    by_rev = {_number(rs): rs for rs in replicasets(cluster, d)}
    current = int((d["metadata"].get("annotations") or {}).get(REVISION_ANN, 0))
    if not to:
        older = [r for r in by_rev if r < current]
        if not older:
            raise RolloutFailed(f"deployment {ns}/{name} has no previous revision to undo to")
        to = max(older)
    if to not in by_rev:
        raise RolloutFailed(f"deployment {ns}/{name} has no revision {to}; it has "
                            f"{', '.join(map(str, sorted(by_rev)))}")  # fmt: skip
    template = json.loads(json.dumps(by_rev[to]["spec"]["template"]))
    template["metadata"]["labels"].pop("pod-template-hash", None)
    result = Undo(current, to, rev_of(template), version_of(template),
                  skipped=_same(template, d["spec"]["template"]))  # fmt: skip
    if result.skipped:
        return result
    meta = template["metadata"]
    spec = {
        k: v for k, v in d["spec"].items() if k in _KEPT and not (k == "replicas" and autoscaled)
    }
    body = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": meta["labels"],
                         "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                                         if k.startswith("mlops-nb/")}},
            "spec": {**spec, "template": template}}  # fmt: skip
    try:
        # Applied (forced) under our own field manager, so the next apply owns it all again.
        cluster.apply([body], force=True)
    except KubernetesError as e:
        raise type(e)(f"undo of {ns}/{name} to revision {to} failed: {e}", status=e.status) from e
    return result
