"""Field paths, strategic merge and server-side apply ownership, as the API server has them.

A field path is a tuple of steps; a step into an associative list (containers merged by
name, ports by port) is ``"k:<key>=<value>"``, as ``managedFields`` spell it.

>>> sorted(leaves({"spec": {"replicas": 2, "containers": [{"name": "a", "image": "x"}]}}))
[('spec', 'containers', 'k:name=a', 'image'), ('spec', 'containers', 'k:name=a', 'name'), ('spec', 'replicas')]
>>> merge({"containers": [{"name": "a", "x": 1}]}, {"containers": [{"name": "a", "y": 2}]})
{'containers': [{'name': 'a', 'x': 1, 'y': 2}]}
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

# List fields merged element by element (strategic merge patch and apply), by this key.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
    "volumeMounts": "mountPath", "imagePullSecrets": "name", "conditions": "type",
    "subsets": "name", "ownerReferences": "uid",
}  # fmt: skip
# Set by the server, never owned by a field manager.
_UNOWNED_META = {"name", "namespace", "uid", "resourceVersion", "generation",
                 "creationTimestamp", "managedFields", "selfLink", "deletionTimestamp"}  # fmt: skip

Path = tuple[str, ...]


def _key_of(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field == "ports":
        key = "containerPort" if all("containerPort" in i for i in items) else "port"
        return key if all(key in i for i in items) else None
    merge_key = MERGE_KEYS.get(field)
    return merge_key if merge_key and all(merge_key in i for i in items) else None


def leaves(obj: dict[str, Any], prefix: Path = ()) -> set[Path]:
    """Every leaf field of ``obj`` (atomic lists and empty maps count as leaves)."""
    out: set[Path] = set()
    for k, v in obj.items():
        if not prefix and k in ("apiVersion", "kind", "status"):
            continue
        if prefix == ("metadata",) and k in _UNOWNED_META:
            continue
        path = (*prefix, k)
        if isinstance(v, dict) and v:
            out |= leaves(v, path)
        elif isinstance(v, list) and (key := _key_of(k, v)):
            for item in v:
                out |= leaves(item, (*path, f"k:{key}={item[key]}"))
        else:
            out.add(path)
    return out


def get(obj: Any, path: Path) -> Any:
    """The value at ``path``; ``KeyError`` when it is absent."""
    for step in path:
        if step.startswith("k:") and isinstance(obj, list):
            key, _, value = step[2:].partition("=")
            obj = next(i for i in obj if str(i.get(key)) == value)
        elif isinstance(obj, dict):
            obj = obj[step]
        else:
            raise KeyError(step)
    return obj


def has(obj: Any, path: Path) -> bool:
    try:
        get(obj, path)
    except (KeyError, StopIteration):
        return False
    return True


def remove(obj: Any, path: Path) -> None:
    """Delete the field at ``path`` and then any map or keyed item it leaves empty."""
    if not has(obj, path):
        return
    parent = get(obj, path[:-1]) if len(path) > 1 else obj
    last = path[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    if len(path) > 1 and isinstance(parent, dict) and not parent:
        remove(obj, path[:-1])


def merge(live: Any, patch: Any, field: str = "") -> Any:
    """Strategic merge: maps merge, keyed lists merge by key, ``None`` deletes, the rest replace."""
    if isinstance(live, dict) and isinstance(patch, dict):
        out = copy.deepcopy(live)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(live, list) and isinstance(patch, list) and (key := _key_of(field, live + patch)):
        out_list = [copy.deepcopy(i) for i in live]
        for item in patch:
            at = next((n for n, i in enumerate(out_list) if i[key] == item[key]), None)
            if at is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[at] = merge(out_list[at], item, field)
        return out_list
    return copy.deepcopy(patch)


def merge_patch(live: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: lists replace whole."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(live) if isinstance(live, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def dotted(path: Path) -> str:
    """``.spec.template.spec.containers[name="server"].image`` as the API server writes it."""
    out = ""
    for step in path:
        if step.startswith("k:"):
            key, _, value = step[2:].partition("=")
            out += f'[{key}="{value}"]'
        else:
            out += f".{step}"
    return out


@dataclass
class Owner:
    """One field manager's entry in an object's ``managedFields``."""

    operation: str
    api_version: str
    fields: set[Path]
    time: str


@dataclass(frozen=True)
class Conflict:
    manager: str
    path: Path
    api_version: str

    def message(self) -> str:
        return f'conflict with "{self.manager}" using {self.api_version}: {dotted(self.path)}'


def conflicts(live: dict[str, Any], applied: dict[str, Any], manager: str,
              owners: dict[str, Owner]) -> list[Conflict]:  # fmt: skip
    """Fields ``applied`` sets to another value than the one a different manager owns."""
    found = []
    for path in sorted(leaves(applied)):
        for name, owner in sorted(owners.items()):
            if name == manager or path not in owner.fields:
                continue
            if not has(live, path) or get(live, path) != get(applied, path):
                found.append(Conflict(name, path, owner.api_version))
    return found


def apply(live: dict[str, Any], applied: dict[str, Any], manager: str,
          owners: dict[str, Owner]) -> dict[str, Any]:  # fmt: skip
    """The object after ``manager`` applies ``applied`` (conflicts already settled).

    Fields this manager applied before and no longer sets are removed unless another
    manager owns them too: that is what lets a manifest drop ``replicas`` for an HPA.
    """
    applied_fields = leaves(applied)
    out = copy.deepcopy(live)
    mine = owners[manager].fields if manager in owners else set()
    others = set().union(*(o.fields for n, o in owners.items() if n != manager))
    for path in sorted(mine - applied_fields - others, key=len, reverse=True):
        remove(out, path)
    result: dict[str, Any] = merge(out, applied)
    return result


def take(owners: dict[str, Owner], manager: str, operation: str, api_version: str,
         fields: set[Path], now: str, *, replace: bool) -> None:  # fmt: skip
    """Give ``fields`` to ``manager`` (taking them from every other manager)."""
    for name in list(owners):
        if name != manager:
            owners[name].fields -= fields
            if not owners[name].fields:
                del owners[name]
    owner = owners.get(manager)
    if owner is None or replace:
        owners[manager] = Owner(operation, api_version, set(fields), now)
    else:
        owner.fields |= fields
        owner.time = now


def changed(old: dict[str, Any], new: dict[str, Any]) -> set[Path]:
    """Leaf fields of ``new`` that are new or hold another value than in ``old``."""
    return {p for p in leaves(new) if not has(old, p) or get(old, p) != get(new, p)}


def fields_v1(fields: set[Path]) -> dict[str, Any]:
    """The ``fieldsV1`` tree of ``managedFields`` (``f:name``, ``k:{"name":"x"}``)."""
    import json

    tree: dict[str, Any] = {}
    for path in fields:
        node = tree
        for step in path:
            if step.startswith("k:"):
                key, _, value = step[2:].partition("=")
                name = "k:" + json.dumps({key: int(value) if value.isdigit() else value},
                                         separators=(",", ":"))  # fmt: skip
            else:
                name = f"f:{step}"
            node = node.setdefault(name, {})
    return tree
