"""The emulator's object store: API semantics without HTTP.

Objects are plain dicts keyed by (group, plural, namespace, name). Every write bumps one
``resourceVersion`` counter and appends a watch event; ``generation`` grows only when
``spec`` (or, for kinds without one, anything but metadata and status) changes; writes to
the main resource of a kind with a status subresource leave ``status`` alone.
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import fields
from .resources import KINDS_BY_KIND, Kind
from .selectors import match_fields, match_labels

Key = tuple[str, str, str, str]
_DNS = __import__("re").compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class ApiError(Exception):
    """A ``Status`` reply: code, reason, message, optional details."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def body(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details,
                "code": self.code}  # fmt: skip


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: dict[str, Any]) -> Any:
    if "spec" in obj:
        return obj["spec"]
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


@dataclass
class Event:
    rv: int
    type: str
    kind: Kind
    obj: dict[str, Any]


@dataclass
class Store:
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    owners: dict[Key, dict[str, fields.Owner]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    rv: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    changed: threading.Condition = field(init=False)
    hooks: list[Callable[[str, Kind, dict[str, Any]], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    # -- reading -------------------------------------------------------------------------

    def get(self, kind: Kind, ns: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.objects.get((kind.group, kind.plural, ns, name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{kind.plural}{"." + kind.group if kind.group else ""} "{name}" not found',
                               {"name": name, "group": kind.group, "kind": kind.plural})  # fmt: skip
            return self.render(kind, obj)

    def list(self, kind: Kind, ns: str | None, labels: str | None = None,
             fields_: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        with self.lock:
            out = []
            for (g, p, o_ns, _), obj in sorted(self.objects.items()):
                if (g, p) != (kind.group, kind.plural) or (ns is not None and o_ns != ns):
                    continue
                if match_labels(labels, obj["metadata"].get("labels") or {}) and match_fields(
                    fields_, obj
                ):
                    out.append(self.render(kind, obj))
            return out

    def render(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        key = (
            kind.group,
            kind.plural,
            obj["metadata"].get("namespace", ""),
            obj["metadata"]["name"],
        )
        owners = self.owners.get(key, {})
        if owners:
            out["metadata"]["managedFields"] = [
                {"manager": name, "operation": o.operation, "apiVersion": o.api_version,
                 "time": o.time, "fieldsType": "FieldsV1", "fieldsV1": fields.fields_v1(o.fields)}
                for name, o in sorted(owners.items())
            ]  # fmt: skip
        return out

    # -- writing -------------------------------------------------------------------------

    def _key(self, kind: Kind, obj: dict[str, Any]) -> Key:
        meta = obj["metadata"]
        return (kind.group, kind.plural, meta.get("namespace", "") if kind.namespaced else "",
                meta["name"])  # fmt: skip

    def _check(self, kind: Kind, ns: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        if obj.get("kind") not in (None, kind.kind) or obj.get("apiVersion") not in (
            None,
            kind.api_version,
        ):
            raise ApiError(400, "BadRequest", f"the object is a {obj.get('apiVersion')} "
                           f"{obj.get('kind')}, not a {kind.api_version} {kind.kind}")  # fmt: skip
        if not name or len(name) > 253 or not _DNS.match(name):
            raise ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: metadata.name: '
                           "Invalid value: a lowercase RFC 1123 subdomain must consist of lower "
                           "case alphanumeric characters, '-' or '.'",
                           {"name": name, "kind": kind.kind, "causes": [
                               {"reason": "FieldValueInvalid", "field": "metadata.name"}]})  # fmt: skip
        if kind.namespaced and ns and ("", "namespaces", "", ns) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                           {"name": ns, "kind": "namespaces"})  # fmt: skip

    def create(self, kind: Kind, ns: str, obj: dict[str, Any], manager: str, *,
               dry_run: bool = False, operation: str = "Update") -> dict[str, Any]:  # fmt: skip
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if kind.namespaced:
                meta["namespace"] = ns
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            self._check(kind, ns, obj)
            key = self._key(kind, obj)
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", f'{kind.plural} "{meta["name"]}" already exists',
                               {"name": meta["name"], "kind": kind.plural})  # fmt: skip
            obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            meta.pop("managedFields", None)
            owners = {manager: fields.Owner(operation, kind.api_version, fields.leaves(obj), now())}
            if dry_run:
                meta["resourceVersion"] = str(self.rv)
                return obj
            self._commit("ADDED", kind, key, obj)
            self.owners[key] = owners
            return self.render(kind, obj)

    def _commit(self, type_: str, kind: Kind, key: Key, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if type_ == "DELETED":
            self.objects.pop(key, None)
            self.owners.pop(key, None)
        else:
            self.objects[key] = obj
        self.events.append(Event(self.rv, type_, kind, copy.deepcopy(obj)))
        del self.events[:-5000]  # watches older than this get 410 Gone, as etcd compaction
        for hook in self.hooks:
            hook(type_, kind, obj)
        self.changed.notify_all()

    def replace(self, kind: Kind, ns: str, name: str, new: dict[str, Any], manager: str, *,
                subresource: str | None = None, dry_run: bool = False,
                operation: str = "Update") -> dict[str, Any]:  # fmt: skip
        """Write ``new`` over the live object (PUT, and the end of every patch)."""
        with self.lock:
            key = (kind.group, kind.plural, ns if kind.namespaced else "", name)
            live = self.objects.get(key)
            if live is None:
                raise ApiError(404, "NotFound", f'{kind.plural} "{name}" not found',
                               {"name": name, "kind": kind.plural})  # fmt: skip
            new = copy.deepcopy(new)
            want_rv = (new.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != live["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.plural} '
                               f'"{name}": the object has been modified; please apply your changes '
                               "to the latest version and try again", {"name": name, "kind": kind.plural})  # fmt: skip
            merged = copy.deepcopy(live)
            if subresource == "status":
                merged["status"] = new.get("status", {})
            else:
                merged = {**new, "apiVersion": kind.api_version, "kind": kind.kind}
                meta = merged.setdefault("metadata", {})
                for k in ("uid", "creationTimestamp", "generation", "namespace", "name"):
                    if k in live["metadata"]:
                        meta[k] = live["metadata"][k]
                meta.pop("managedFields", None)
                if kind.status:
                    merged.pop("status", None)
                    if "status" in live:
                        merged["status"] = copy.deepcopy(live["status"])
                if _spec_part(merged) != _spec_part(live):
                    meta["generation"] = int(live["metadata"].get("generation", 1)) + 1
            self._check(kind, ns, merged)
            if dry_run:
                return merged
            owners = self.owners.setdefault(key, {})
            if subresource != "status" and operation == "Update":
                fields.take(owners, manager, "Update", kind.api_version,
                            fields.changed(live, merged), now(), replace=False)  # fmt: skip
            merged["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            if merged != live:  # a write that changes nothing keeps the resourceVersion
                self._commit("MODIFIED", kind, key, merged)
            return self.render(kind, self.objects[key])

    def apply(self, kind: Kind, ns: str, name: str, applied: dict[str, Any], manager: str, *,
              force: bool, dry_run: bool = False) -> dict[str, Any]:  # fmt: skip
        """Server-side apply: creates when absent, 409 on another manager's field."""
        if not manager:
            raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: "
                           "Required value: is required for apply patch")  # fmt: skip
        applied = copy.deepcopy(applied)
        meta = applied.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')}) does "
                           f"not match the name on the URL ({name})")  # fmt: skip
        meta["name"] = name
        if (applied.get("apiVersion"), applied.get("kind")) != (kind.api_version, kind.kind):
            raise ApiError(400, "BadRequest", "apiVersion and kind of an applied object must be "
                           f"{kind.api_version} and {kind.kind}")  # fmt: skip
        with self.lock:
            key = (kind.group, kind.plural, ns if kind.namespaced else "", name)
            live = self.objects.get(key)
            if live is None:
                return self.create(kind, ns, applied, manager, dry_run=dry_run, operation="Apply")
            owners = self.owners.setdefault(key, {})
            found = fields.conflicts(live, applied, manager, owners)
            if found and not force:
                msg = "; ".join(c.message() for c in found)
                raise ApiError(409, "Conflict", f"Apply failed with {len(found)} conflict"
                               f"{'s' if len(found) > 1 else ''}: {msg}",
                               {"causes": [{"reason": "FieldManagerConflict", "message":
                                            f'conflict with "{c.manager}" using {c.api_version}',
                                            "field": fields.dotted(c.path)} for c in found]})  # fmt: skip
            merged = fields.apply(live, applied, manager, owners)
            merged["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            result = self.replace(kind, ns, name, merged, manager, dry_run=dry_run,
                                  operation="Apply")  # fmt: skip
            if not dry_run:
                fields.take(owners, manager, "Apply", kind.api_version, fields.leaves(applied),
                            now(), replace=True)  # fmt: skip
                result = self.render(kind, self.objects[key])
            return result

    def delete(self, kind: Kind, ns: str, name: str, *, dry_run: bool = False) -> dict[str, Any]:
        with self.lock:
            key = (kind.group, kind.plural, ns if kind.namespaced else "", name)
            live = self.get(kind, ns, name)
            if not dry_run:
                self._commit("DELETED", kind, key, copy.deepcopy(self.objects[key]))
                self._collect(live["metadata"]["uid"])
            return live

    def _collect(self, uid: str) -> None:
        """Garbage collection: dependents whose controller owner is gone go too."""
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                self.delete(_kind_of(key), key[2], key[3])

    def collect_orphans(self) -> None:
        """Dependents none of whose owners exist any more go, as the cluster's garbage
        collector does: one created by a controller that acted on a Deployment just as it
        was deleted is otherwise never collected."""
        with self.lock:
            uids = {o["metadata"].get("uid") for o in self.objects.values()}
            for key, obj in list(self.objects.items()):
                if key not in self.objects:  # collected with an earlier one
                    continue
                refs = obj["metadata"].get("ownerReferences") or []
                if refs and not any(r.get("uid") in uids for r in refs):
                    self.delete(_kind_of(key), key[2], key[3])

    # -- internal writes (controllers, kubelet) ------------------------------------------

    def put_status(self, kind: Kind, ns: str, name: str, status: dict[str, Any]) -> None:
        with self.lock:
            key = (kind.group, kind.plural, ns, name)
            obj = self.objects.get(key)
            if obj is not None and obj.get("status") != status:
                obj = copy.deepcopy(obj)
                obj["status"] = copy.deepcopy(status)
                self._commit("MODIFIED", kind, key, obj)


def _kind_of(key: tuple[str, str, str, str]) -> Kind:
    """The kind of a stored object's key (group, plural, namespace, name)."""
    return next(k for k in KINDS_BY_KIND.values() if (k.group, k.plural) == key[:2])
