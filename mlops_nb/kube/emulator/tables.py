"""``kubectl get`` columns: the server-side ``Table`` replies kubectl asks for.

>>> t = table([{"metadata": {"name": "web", "creationTimestamp": None},
...             "spec": {"replicas": 2}, "status": {"readyReplicas": 1}}], "Deployment")
>>> [c["name"] for c in t["columnDefinitions"]], t["rows"][0]["cells"][:2]
(['Name', 'Ready', 'Up-to-date', 'Available', 'Age'], ['web', '1/2'])
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any


def _age(obj: dict[str, Any]) -> str:
    ts = obj["metadata"].get("creationTimestamp")
    if not ts:
        return "<unknown>"
    s = int(
        (
            dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        ).total_seconds()
    )
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _st(obj: dict[str, Any], key: str) -> Any:
    return (obj.get("status") or {}).get(key, 0) or 0


def _pod(obj: dict[str, Any]) -> list[Any]:
    cs = (obj.get("status") or {}).get("containerStatuses") or []
    waiting = [
        c["state"]["waiting"].get("reason") for c in cs if "waiting" in (c.get("state") or {})
    ]
    return [f"{sum(bool(c.get('ready')) for c in cs)}/{len(obj['spec'].get('containers', []))}",
            next((w for w in waiting if w), None) or _st(obj, "phase") or "Pending",
            sum(int(c.get("restartCount") or 0) for c in cs)]  # fmt: skip


COLUMNS: dict[str, tuple[list[str], Callable[[dict[str, Any]], list[Any]]]] = {
    "Deployment": (["Ready", "Up-to-date", "Available"], lambda o: [
        f"{_st(o, 'readyReplicas')}/{o['spec'].get('replicas', 0)}", _st(o, "updatedReplicas"),
        _st(o, "availableReplicas")]),
    "ReplicaSet": (["Desired", "Current", "Ready"], lambda o: [
        o["spec"].get("replicas", 0), _st(o, "replicas"), _st(o, "readyReplicas")]),
    "Pod": (["Ready", "Status", "Restarts"], _pod),
}  # fmt: skip


def table(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    names, cells = COLUMNS.get(kind, ([], lambda o: []))
    columns = [{"name": c, "type": "string", "format": "name" if c == "Name" else "", "description": "",
                "priority": 0} for c in ["Name", *names, "Age"]]  # fmt: skip
    rows = [{"cells": [o["metadata"]["name"], *cells(o), _age(o)],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"]}} for o in objects]  # fmt: skip
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": columns,
            "rows": rows}  # fmt: skip
