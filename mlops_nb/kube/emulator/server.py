"""The emulator's HTTP front: the Kubernetes REST paths over :class:`~.store.Store`.

Discovery, CRUD, list and watch with label and field selectors, merge / JSON /
strategic-merge patches, server-side apply (``application/apply-patch+yaml``), the
``status`` and ``scale`` subresources, pod logs, and the pod and service proxies that
forward to the kubelet's processes. Injected faults answer before anything changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import jsonpatch
import yaml

from . import fields, proxy, resources, tables, watch
from .resources import KINDS_BY_PLURAL, Kind
from .selectors import of_match_labels
from .store import ApiError

if TYPE_CHECKING:
    from . import Emulator

_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            422: "Invalid", 500: "InternalError"}  # fmt: skip
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "authorization",
        "upgrade", "proxy-connection", "te", "trailer"}  # fmt: skip


@dataclass
class Fault:
    """An error the server answers with, before anything changes, ``times`` times."""

    code: int
    verb: str | None = None
    resource: str | None = None
    name: str | None = None
    times: int | None = 1
    message: str | None = None

    def matches(self, verb: str, resource: str, name: str | None) -> bool:
        return ((self.verb is None or self.verb == verb) and
                (self.resource is None or self.resource == resource) and
                (self.name is None or self.name == name))  # fmt: skip

    def error(self, verb: str, resource: str, name: str | None) -> ApiError:
        reason = _REASONS.get(self.code, "InternalError")
        default = {401: "Unauthorized",
                   403: f'{resource} "{name or ""}" is forbidden: User "system:anonymous" cannot '
                        f'{verb} resource "{resource}"',
                   404: f'{resource} "{name or ""}" not found',
                   409: f'Operation cannot be fulfilled on {resource} "{name or ""}": the object '
                        "has been modified; please apply your changes to the latest version and try again",
                   422: f'{resource} "{name or ""}" is invalid: spec: Invalid value: injected'}  # fmt: skip
        return ApiError(self.code, reason, self.message or default.get(self.code, "injected fault"),
                        {"name": name or "", "kind": resource})  # fmt: skip


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ------------------------------------------------------------------------

    def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> bytes:
        return self._raw

    def _dispatch(self) -> None:
        emu = self.server.emulator
        # Read every body (a DELETE's options too), or it would be taken for the next request.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            if parts[:1] == ["gateways"] and len(parts) >= 3:
                # The path after the Gateway as the client sent it (quoting, a last slash).
                raw = url.path.split("/", 4)
                self._gateway(emu, parts[1], parts[2], "/" + (raw[4] if len(raw) > 4 else ""))
            elif not self._discovery(parts):
                self._resource(emu, parts)
        except ApiError as e:
            self._send(e.code, e.body())
        except (ValueError, yaml.YAMLError, jsonpatch.JsonPatchException, KeyError) as e:
            self._send(400, ApiError(400, "BadRequest", f"the request is invalid: {e}").body())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _discovery(self, parts: list[str]) -> bool:
        if self.command != "GET":
            return False
        host = f"127.0.0.1:{self.server.server_address[1]}"
        doc: dict[str, Any] | None
        if parts == ["version"]:
            doc = resources.version_info()
        elif parts == ["api"]:
            doc = resources.core_versions(host)
        elif parts == ["apis"]:
            doc = resources.group_list()
        elif parts == ["api", "v1"]:
            doc = resources.resource_list("", "v1")
        elif len(parts) == 2 and parts[0] == "apis":
            doc = resources.group(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = resources.resource_list(parts[1], parts[2])
        elif parts == ["openapi", "v3"]:
            doc = resources.openapi_root()
        elif parts[:2] == ["openapi", "v3"]:
            doc = resources.openapi_group("/".join(parts[2:]))
        elif parts[:1] == ["openapi"]:
            doc = None
        else:
            return False
        if doc is None:
            self._send(
                404,
                ApiError(
                    404, "NotFound", "the server could not find the requested resource"
                ).body(),
            )
        else:
            self._send(200, doc)
        return True

    # -- resources -----------------------------------------------------------------------

    def _resource(self, emu: Emulator, parts: list[str]) -> None:
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, rest = parts[1], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and (group, rest[2]) in KINDS_BY_PLURAL:
            ns, rest = rest[1], rest[2:]
        kind = KINDS_BY_PLURAL.get((group, rest[0]))
        if kind is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        verb = self._verb(name)
        for fault in list(emu.faults):
            if fault.matches(verb, kind.plural, name):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        emu.faults.remove(fault)
                raise fault.error(verb, kind.plural, name)
        if sub == "proxy":
            return self._proxy(emu, kind, ns, str(name), "/" + "/".join(rest[3:]))
        if sub == "log":
            pod = emu.store.get(kind, ns, str(name))
            return self._send(
                200, emu.kubelet.log(pod, self.query.get("container")).encode(), "text/plain"
            )
        if verb == "watch":
            return self._watch(emu, kind, ns)
        with emu.store.lock:
            result = self._verb_on(emu, verb, kind, ns, name, sub)
        if result is not None:
            self._send(201 if verb == "create" else 200, result)

    def _verb(self, name: str | None) -> str:
        if self.command == "GET":
            return (
                "get"
                if name
                else ("watch" if self.query.get("watch", "").lower() in ("true", "1") else "list")
            )
        return {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}[self.command]  # fmt: skip

    def _manager(self) -> str:
        return (
            self.query.get("fieldManager")
            or (self.headers.get("User-Agent") or "unknown").split("/")[0]
        )

    def _verb_on(self, emu: Emulator, verb: str, kind: Kind, ns: str, name: str | None,
                 sub: str | None) -> dict[str, Any] | None:  # fmt: skip
        store = emu.store
        dry = self.query.get("dryRun") == "All"
        as_table = "as=Table" in (self.headers.get("Accept") or "")
        if verb == "get":
            obj = store.get(kind, ns, str(name))
            if sub is None and as_table:
                return tables.table([obj], kind.kind)
            return _scale_of(obj) if sub == "scale" else obj
        if verb == "list":
            items = store.list(
                kind, ns or None, self.query.get("labelSelector"), self.query.get("fieldSelector")
            )
            if as_table:
                return tables.table(items, kind.kind)
            return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version,
                    "metadata": {"resourceVersion": str(store.rv)}, "items": items}  # fmt: skip
        if verb == "create":
            return store.create(kind, ns, json.loads(self._body()), self._manager(), dry_run=dry)
        if verb == "delete":
            return store.delete(kind, ns, str(name), dry_run=dry)
        if verb == "deletecollection":
            items = store.list(
                kind, ns or None, self.query.get("labelSelector"), self.query.get("fieldSelector")
            )
            for item in items:
                store.delete(kind, ns, item["metadata"]["name"], dry_run=dry)
            return {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": {},
                "items": items,
            }
        assert name is not None
        body = self._body()
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0]
        if verb == "patch" and ctype == "application/apply-patch+yaml":
            if sub is not None:
                raise ApiError(
                    405, "MethodNotAllowed", "apply to subresources is not supported here"
                )
            return store.apply(kind, ns, name, yaml.safe_load(body), self._manager(),
                               force=self.query.get("force", "").lower() == "true", dry_run=dry)  # fmt: skip
        live = store.get(kind, ns, name)
        current = _scale_of(live) if sub == "scale" else live
        if verb == "update":
            new = json.loads(body)
        elif ctype == "application/json-patch+json":
            new = jsonpatch.apply_patch(current, json.loads(body))
        elif ctype == "application/merge-patch+json":
            new = fields.merge_patch(current, json.loads(body))
            new["metadata"]["resourceVersion"] = None
        else:
            new = fields.merge(current, json.loads(body))
            new["metadata"]["resourceVersion"] = None
        if sub == "scale":
            spec = {**live["spec"], "replicas": int(new["spec"]["replicas"])}
            out = store.replace(
                kind, ns, name, {**live, "spec": spec}, self._manager(), dry_run=dry
            )
            return _scale_of(out)
        if (
            verb == "patch"
            and (new.get("metadata") or {}).get("resourceVersion")
            == live["metadata"]["resourceVersion"]
        ):
            new["metadata"]["resourceVersion"] = None  # a patch is not a precondition
        return store.replace(kind, ns, name, new, self._manager(), subresource=sub, dry_run=dry)

    # -- watch ---------------------------------------------------------------------------

    def _watch(self, emu: Emulator, kind: Kind, ns: str) -> None:
        watch.stream(self, emu, kind, ns)

    # -- proxies -------------------------------------------------------------------------

    def _gateway(self, emu: Emulator, ns: str, name: str, path: str) -> None:
        """A request to a Gateway's address: routed by its HTTPRoutes (see :mod:`.gateway`)."""
        backend_ns, service, path = emu.gateways.route(ns, name, path)
        self._proxy(emu, proxy.SERVICE, backend_ns, service, path)

    def _proxy(self, emu: Emulator, kind: Kind, ns: str, target: str, path: str) -> None:
        local = proxy.resolve(emu, kind, ns, target)
        query = urlsplit(self.path).query
        url = f"http://127.0.0.1:{local}{path}" + (f"?{query}" if query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        try:
            r = emu.http.request(self.command, url, content=self._body(), headers=headers)
        except httpx.HTTPError as e:
            raise ApiError(
                503, "ServiceUnavailable", f"error trying to reach {kind.singular}: {e}"
            ) from e
        self._send(
            r.status_code, r.content, r.headers.get("content-type", "application/octet-stream")
        )


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj["metadata"]
    selector = of_match_labels((obj["spec"].get("selector") or {}).get("matchLabels") or {})
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": m["name"], "namespace": m.get("namespace"), "uid": m["uid"],
                         "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
            "spec": {"replicas": int(obj["spec"].get("replicas", 1))},
            "status": {"replicas": int((obj.get("status") or {}).get("replicas", 0)), "selector": selector}}  # fmt: skip


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(("127.0.0.1", port), Handler)
