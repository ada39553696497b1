"""``k8s.plan(v)``: what applying would create or change, from a server-side dry run.

>>> p = Plan((Change("Deployment ml/iris", "update", ((".spec.replicas", 2, 3),)),))
>>> p
<Plan: 0 to create, 1 to update, 0 unchanged>
>>> print(p)
~ Deployment ml/iris
    .spec.replicas: 2 -> 3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .client import Cluster, describe

# Written by the server, not by a manifest: never part of a diff.
_NOISE = {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"}


@dataclass(frozen=True)
class Change:
    object: str
    action: str  # "create", "update" or "unchanged"
    fields: tuple[tuple[str, Any, Any], ...] = ()


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]

    def count(self, action: str) -> int:
        return sum(c.action == action for c in self.changes)

    def __repr__(self) -> str:
        return (f"<Plan: {self.count('create')} to create, {self.count('update')} to update, "
                f"{self.count('unchanged')} unchanged>")  # fmt: skip

    def __str__(self) -> str:
        mark = {"create": "+", "update": "~", "unchanged": "="}
        lines = []
        for c in self.changes:
            lines.append(f"{mark[c.action]} {c.object}")
            lines += [f"    {path}: {_short(old)} -> {_short(new)}" for path, old, new in c.fields]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(repr(self))}\n{html.escape(str(self))}</pre>"


def _short(value: Any) -> str:
    text = "(absent)" if value is _ABSENT else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_ABSENT = object()


def diff(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Leaf differences between two objects, metadata noise and status left out."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            if (path == "" and k == "status") or (path == ".metadata" and k in _NOISE):
                continue
            out += diff(old.get(k, _ABSENT), new.get(k, _ABSENT), f"{path}.{k}")
        return out
    return [] if old == new else [(path, old, new)]


def plan(cluster: Cluster, objects: list[dict[str, Any]]) -> Plan:
    changes = []
    for obj in objects:
        meta = obj["metadata"]
        live = cluster.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        if live is None:
            changes.append(Change(describe(obj), "create"))
            continue
        after = cluster.apply([obj], dry_run=True)[0]
        fields = tuple(diff(live, after))
        changes.append(Change(describe(obj), "update" if fields else "unchanged", fields))
    return Plan(tuple(changes))
