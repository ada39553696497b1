"""Rollout status with ``kubectl rollout status`` semantics, and what the pods say.

>>> d = {"metadata": {"name": "iris", "generation": 2},
...      "spec": {"replicas": 2}, "status": {"observedGeneration": 2, "replicas": 3,
...      "updatedReplicas": 2, "availableReplicas": 2}}
>>> rollout_status(d)
RolloutStatus(done=False, failed=False, message='Waiting for deployment "iris" rollout to finish: 1 old replicas are pending termination...')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..deploy.target import ReplicaStatus


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    failed: bool
    message: str


def rollout_status(d: dict[str, Any]) -> RolloutStatus:
    """kubectl's ``DeploymentStatusViewer``: the same checks, in the same order."""
    name = d["metadata"]["name"]
    spec, st = d.get("spec") or {}, d.get("status") or {}
    if int(d["metadata"].get("generation", 0)) > int(st.get("observedGeneration") or 0):
        return RolloutStatus(False, False, "Waiting for deployment spec update to be observed...")
    for c in st.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return RolloutStatus(False, True, f'deployment "{name}" exceeded its progress deadline: '
                                 f"{c.get('message', '')}")  # fmt: skip
    want = spec.get("replicas")
    updated = int(st.get("updatedReplicas") or 0)
    total = int(st.get("replicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    wait = f'Waiting for deployment "{name}" rollout to finish: '
    if want is not None and updated < int(want):
        return RolloutStatus(
            False, False, f"{wait}{updated} out of {want} new replicas have been updated..."
        )
    if total > updated:
        return RolloutStatus(
            False, False, f"{wait}{total - updated} old replicas are pending termination..."
        )
    if available < updated:
        return RolloutStatus(
            False, False, f"{wait}{available} of {updated} updated replicas are available..."
        )
    return RolloutStatus(True, False, f'deployment "{name}" successfully rolled out')


def replica(pod: dict[str, Any]) -> ReplicaStatus:
    """A pod as a replica: ready, alive, restarts, and why its containers last stopped."""
    st = pod.get("status") or {}
    statuses = [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []
    )
    waiting = [
        c["state"]["waiting"].get("reason") for c in statuses if "waiting" in (c.get("state") or {})
    ]
    last = [
        c["lastState"]["terminated"] for c in statuses if "terminated" in (c.get("lastState") or {})
    ]
    detail: dict[str, Any] = {
        "phase": st.get("phase"),
        "waiting": next((w for w in waiting if w), None),
    }
    if last:
        t = last[-1]
        detail["last_termination"] = {"reason": t.get("reason"), "exit_code": t.get("exitCode"),
                                      "message": t.get("message")}  # fmt: skip
    return ReplicaStatus(
        id=pod["metadata"]["name"], ready=ready, alive=st.get("phase") == "Running",
        restarts=sum(int(c.get("restartCount") or 0) for c in statuses), detail=detail,
    )  # fmt: skip


def crash_looping(replicas: list[ReplicaStatus]) -> bool:
    return any(r.detail.get("waiting") == "CrashLoopBackOff" for r in replicas)
