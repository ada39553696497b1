"""The Deployment and ReplicaSet controllers, stepped by tests or by a background thread.

A template change makes a ReplicaSet with the next ``deployment.kubernetes.io/revision``
(a template that matches an older ReplicaSet re-uses it under a new revision, which is
what ``kubectl rollout undo`` relies on). New pods replace old ones only once ready, so
the old revision keeps serving while the new one starts. Each Deployment's rollout can be
told to ``succeed`` (default), ``stall`` (new pods never get ready), ``fail`` (and the
``Progressing`` condition reports ``ProgressDeadlineExceeded``) or ``crash`` (new pods
restart over and over).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from .resources import KINDS_BY_KIND
from .store import Store, now

DEPLOY = KINDS_BY_KIND[("apps/v1", "Deployment")]
RS = KINDS_BY_KIND[("apps/v1", "ReplicaSet")]
POD = KINDS_BY_KIND[("v1", "Pod")]
REVISION = "deployment.kubernetes.io/revision"
MANAGER = "kube-controller-manager"
OUTCOMES = ("succeed", "stall", "fail", "crash")


def _pruned(value: Any) -> Any:
    # Clients send Go's zero values (``creationTimestamp: null``, ``resources: {}``) that
    # the API server would default away: they must not make a template look new.
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def template_hash(template: dict[str, Any]) -> str:
    t = _pruned(copy.deepcopy(template))
    (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    return hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:10]


def _owned(store: Store, kind: Any, ns: str, uid: str) -> list[dict[str, Any]]:
    return [o for o in store.list(kind, ns)
            if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]  # fmt: skip


def _revision(rs: dict[str, Any]) -> int:
    return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))


def _ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip


def _condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    t = now()
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": t, "lastTransitionTime": t}  # fmt: skip


class Controller:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.outcomes: dict[tuple[str, str], str] = {}

    def outcome_of_rs(self, rs: dict[str, Any]) -> str:
        """How the pods of ``rs`` behave: its Deployment's outcome if it is the newest."""
        refs = rs["metadata"].get("ownerReferences") or []
        if not refs or refs[0].get("kind") != "Deployment":
            return "succeed"
        ns, name = rs["metadata"]["namespace"], refs[0]["name"]
        try:
            d = self.store.get(DEPLOY, ns, name)
        except Exception:
            return "succeed"
        if template_hash(d["spec"]["template"]) != rs["metadata"]["labels"].get(
            "pod-template-hash"
        ):
            return "succeed"
        return self.outcomes.get((ns, name), "succeed")

    def step(self) -> None:
        for d in self.store.list(DEPLOY, None):
            self._deployment(d)
        for rs in self.store.list(RS, None):
            self._replicaset(rs)

    # -- Deployment ----------------------------------------------------------------------

    def _deployment(self, d: dict[str, Any]) -> None:
        meta, spec = d["metadata"], d["spec"]
        ns, _name = meta["namespace"], meta["name"]
        desired = int(spec.get("replicas", 1))
        owned = sorted(_owned(self.store, RS, ns, meta["uid"]), key=_revision)
        h = template_hash(spec["template"])
        new = next(
            (rs for rs in owned if rs["metadata"]["labels"].get("pod-template-hash") == h), None
        )
        paused = bool(spec.get("paused"))
        top = max((_revision(rs) for rs in owned), default=0)
        if new is None and not paused:
            new = self._new_rs(d, h, top + 1)
            owned.append(new)
        elif new is not None and _revision(new) < top and not paused:
            # An older template came back (rollback): its ReplicaSet takes the next revision.
            ann = dict(new["metadata"].get("annotations") or {})
            history = [
                x for x in ann.get("deployment.kubernetes.io/revision-history", "").split(",") if x
            ]
            ann["deployment.kubernetes.io/revision-history"] = ",".join([*history, ann[REVISION]])
            ann[REVISION] = str(top + 1)
            new = self._write(RS, new, metadata={**new["metadata"], "annotations": ann})
        if new is not None and not paused:
            self._scale_rollout(
                d,
                new,
                [rs for rs in owned if rs["metadata"]["uid"] != new["metadata"]["uid"]],
                desired,
            )
            self._prune(d, owned, new)
            if (meta.get("annotations") or {}).get(REVISION) != str(_revision(new)):
                ann = {**(meta.get("annotations") or {}), REVISION: str(_revision(new))}
                d = self._write(DEPLOY, d, metadata={**meta, "annotations": ann})
        owned = _owned(self.store, RS, ns, d["metadata"]["uid"])
        self._deployment_status(d, owned, new, desired, paused)

    def _write(self, kind: Any, obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
        new = {**obj, **changes}
        m = obj["metadata"]
        return self.store.replace(kind, m.get("namespace", ""), m["name"], new, MANAGER,
                                  operation="Internal")  # fmt: skip

    def _new_rs(self, d: dict[str, Any], h: str, revision: int) -> dict[str, Any]:
        template = copy.deepcopy(d["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
        ann = {k: v for k, v in (d["metadata"].get("annotations") or {}).items()
               if k not in (REVISION, "kubectl.kubernetes.io/last-applied-configuration")}  # fmt: skip
        ann[REVISION] = str(revision)
        selector = copy.deepcopy(d["spec"].get("selector") or {"matchLabels": {}})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = h
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{d['metadata']['name']}-{h}", "namespace": d["metadata"]["namespace"],
                           "labels": template["metadata"]["labels"], "annotations": ann,
                           "ownerReferences": [_ref(d)]},
              "spec": {"replicas": 0, "selector": selector, "template": template}}  # fmt: skip
        return self.store.create(RS, d["metadata"]["namespace"], rs, MANAGER)

    def _scale_rollout(self, d: dict[str, Any], new: dict[str, Any], old: list[dict[str, Any]],
                       desired: int) -> None:  # fmt: skip
        if new["spec"].get("replicas") != desired:
            new = self._write(RS, new, spec={**new["spec"], "replicas": desired})
        ready = int((new.get("status") or {}).get("readyReplicas", 0))
        # Old pods stay until new ones are ready (maxUnavailable 0, as a safe rollout does).
        room = max(0, desired - ready)
        for rs in sorted(old, key=_revision, reverse=True):
            keep = min(int(rs["spec"].get("replicas", 0)), room)
            room -= keep
            if rs["spec"].get("replicas") != keep:
                self._write(RS, rs, spec={**rs["spec"], "replicas": keep})

    def _prune(self, d: dict[str, Any], owned: list[dict[str, Any]], new: dict[str, Any]) -> None:
        limit = int(d["spec"].get("revisionHistoryLimit", 10))
        idle = [rs for rs in sorted(owned, key=_revision) if rs["metadata"]["uid"] != new["metadata"]["uid"]
                and not rs["spec"].get("replicas") and not (rs.get("status") or {}).get("replicas")]  # fmt: skip
        for rs in idle[: max(0, len(idle) - limit)]:
            self.store.delete(RS, rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _deployment_status(self, d: dict[str, Any], owned: list[dict[str, Any]],
                           new: dict[str, Any] | None, desired: int, paused: bool) -> None:  # fmt: skip
        st = [rs.get("status") or {} for rs in owned]
        total = sum(int(s.get("replicas", 0)) for s in st)
        ready = sum(int(s.get("readyReplicas", 0)) for s in st)
        available = sum(int(s.get("availableReplicas", 0)) for s in st)
        updated = int(((new or {}).get("status") or {}).get("replicas", 0)) if new else 0
        new_name = new["metadata"]["name"] if new else ""
        outcome = self.outcomes.get((d["metadata"]["namespace"], d["metadata"]["name"]), "succeed")
        complete = updated == desired and total == desired and available == desired
        if paused:
            progressing = _condition(
                "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"
            )
        elif outcome == "fail" and not complete:
            progressing = _condition("Progressing", "False", "ProgressDeadlineExceeded",
                                     f'ReplicaSet "{new_name}" has timed out progressing.')  # fmt: skip
        elif complete:
            progressing = _condition("Progressing", "True", "NewReplicaSetAvailable",
                                     f'ReplicaSet "{new_name}" has successfully progressed.')  # fmt: skip
        else:
            progressing = _condition("Progressing", "True", "ReplicaSetUpdated",
                                     f'ReplicaSet "{new_name}" is progressing.')  # fmt: skip
        avail = (_condition("Available", "True", "MinimumReplicasAvailable",
                            "Deployment has minimum availability.") if available >= desired else
                 _condition("Available", "False", "MinimumReplicasUnavailable",
                            "Deployment does not have minimum availability."))  # fmt: skip
        old = d.get("status") or {}
        conditions = []
        for c in (avail, progressing):
            prev = next((p for p in old.get("conditions", []) if p["type"] == c["type"]), None)
            if prev and (prev["status"], prev["reason"], prev["message"]) == (
                c["status"],
                c["reason"],
                c["message"],
            ):
                c = prev  # unchanged conditions keep their times, so idle steps write nothing
            conditions.append(c)
        status = {"observedGeneration": d["metadata"]["generation"], "replicas": total,
                  "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
                  "unavailableReplicas": max(0, desired - available), "conditions": conditions}  # fmt: skip
        self.store.put_status(DEPLOY, d["metadata"]["namespace"], d["metadata"]["name"], status)

    # -- ReplicaSet ----------------------------------------------------------------------

    def _replicaset(self, rs: dict[str, Any]) -> None:
        meta = rs["metadata"]
        ns = meta["namespace"]
        pods = sorted(_owned(self.store, POD, ns, meta["uid"]), key=lambda p: p["metadata"]["name"])
        want = int(rs["spec"].get("replicas", 1))
        for _ in range(want - len(pods)):
            template = copy.deepcopy(rs["spec"]["template"])
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {**template.get("metadata", {}), "generateName": f"{meta['name']}-",
                                "namespace": ns, "ownerReferences": [_ref(rs)]},
                   "spec": template["spec"], "status": {"phase": "Pending"}}  # fmt: skip
            self.store.create(POD, ns, pod, MANAGER)
        if len(pods) > want:
            # Not-ready pods go first, as the ReplicaSet controller ranks them.
            ranked = sorted(pods, key=lambda p: _pod_ready(p))
            for p in ranked[: len(pods) - want]:
                self.store.delete(POD, ns, p["metadata"]["name"])
        pods = _owned(self.store, POD, ns, meta["uid"])
        ready = sum(_pod_ready(p) for p in pods)
        self.store.put_status(RS, ns, meta["name"], {
            "replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
            "availableReplicas": ready, "observedGeneration": meta["generation"]})  # fmt: skip


def _pod_ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
