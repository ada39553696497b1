"""One cluster connection: the official client, server-side apply, errors that say what to do.

Every object is applied with server-side apply under one field manager, ``mlops-nb``, so
fields set by others (an HPA's replicas, a ``kubectl scale``) are never silently taken.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import (
    ClusterConflict,
    ClusterForbidden,
    ClusterInvalid,
    ClusterNotFound,
    ClusterUnreachable,
    KubeconfigError,
    KubernetesError,
)

FIELD_MANAGER = "mlops-nb"


def connect(kubeconfig: str | None, context: str | None) -> Any:
    """An ``ApiClient`` for ``context`` of ``kubeconfig`` (``$KUBECONFIG``, ~/.kube/config),
    or the in-cluster service account when there is no kubeconfig inside a pod."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = (
        kubeconfig
        or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        or str(Path.home() / ".kube" / "config")
    )
    if not Path(path).exists():
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
            config.load_incluster_config()
            return client.ApiClient()
        raise KubeconfigError(
            f"no kubeconfig at {path}: set KUBECONFIG, pass kubeconfig=..., or run "
            "`python -m mlops_nb.kube.emulator --kubeconfig kube.yaml` for a local cluster"
        )
    try:
        return config.new_client_from_config(config_file=path, context=context)
    except ConfigException as e:
        try:
            names = [c["name"] for c in config.list_kube_config_contexts(config_file=path)[0]]
        except (ConfigException, TypeError, KeyError):
            names = []
        known = f"; contexts in {path}: {', '.join(names)}" if names else ""
        raise KubeconfigError(
            f"cannot use kubeconfig {path} (context {context!r}): {e}{known}"
        ) from e


def explain(e: Exception, what: str) -> KubernetesError:
    """The SDK error for a failed API call on ``what`` (e.g. ``Deployment ml/iris``)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(e, KubernetesError):
        return e
    if isinstance(e, HTTPError | OSError):
        return ClusterUnreachable(
            f"the Kubernetes API server does not answer ({type(e).__name__}: {e}) while "
            f"working on {what}: check the cluster is up and the kubeconfig's server address",
        )
    if not isinstance(e, ApiException):
        return KubernetesError(f"{what}: {type(e).__name__}: {e}")
    status = int(getattr(e, "status", 0) or 0)
    try:
        body = json.loads(getattr(e, "body", None) or "{}")
    except ValueError:
        body = {}
    message = str(body.get("message") or getattr(e, "reason", "") or e)
    if status == 401:
        return ClusterForbidden(f"the API server refused the credentials for {what} (401 "
                                f"{message}): log in again or refresh the kubeconfig's token",
                                status=401)  # fmt: skip
    if status == 403:
        return ClusterForbidden(f"not allowed: {message}. Ask for a Role granting this on {what} "
                                "(see `kubectl auth can-i --list`)", status=403)  # fmt: skip
    if status == 404:
        fix = ("create it with `kubectl create namespace ...`" if "namespaces" in message
               else "install the CRD or use traffic='service'" if "could not find" in message
               else "it may have been deleted: deploy again")  # fmt: skip
        return ClusterNotFound(f"{what}: {message}; {fix}", status=404)
    if status == 409:
        causes = (body.get("details") or {}).get("causes") or []
        field = causes[0].get("field") if causes else None
        manager = None
        if causes and '"' in str(causes[0].get("message", "")):
            manager = str(causes[0]["message"]).split('"')[1]
        if manager:
            return ClusterConflict(
                f"{what}: {message}. Field {field} is managed by {manager!r}: remove it from "
                f"that tool, or take it over with force=True", status=409, manager=manager, field=field,
            )  # fmt: skip
        return ClusterConflict(f"{what}: {message}; read it again and retry", status=409)
    if status == 422:
        return ClusterInvalid(f"{what} is invalid: {message}; fix the manifest", status=422)
    return KubernetesError(f"{what}: the API server answered {status}: {message}", status=status)


def describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


class Cluster:
    """Apply, read and delete objects of any kind through the dynamic client."""

    def __init__(self, api: Any) -> None:
        from kubernetes.dynamic import DynamicClient

        self.api = api
        try:
            self.dynamic = DynamicClient(api)
        except Exception as e:
            raise explain(e, "API discovery") from e

    def resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as e:
            raise ClusterNotFound(
                f"the cluster does not serve {api_version} {kind}: install its CRD (e.g. Gateway API, "
                "Istio, Argo Rollouts) or pick another traffic= mode", status=404,
            ) from e  # fmt: skip

    def apply(self, objects: list[dict[str, Any]], *, dry_run: bool = False,
              force: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        """Server-side apply each object in order; a failure names what exists and what not."""
        done: list[str] = []
        out = []
        for n, obj in enumerate(objects):
            try:
                res = self.resource(obj["apiVersion"], obj["kind"])
                live = res.server_side_apply(
                    body=obj, namespace=obj["metadata"].get("namespace"), field_manager=FIELD_MANAGER,
                    force_conflicts=force, dry_run="All" if dry_run else None,
                )  # fmt: skip
                out.append(live.to_dict())
                done.append(describe(obj))
            except Exception as e:
                err = explain(e, describe(obj))
                pending = tuple(describe(o) for o in objects[n:])
                if dry_run:
                    raise err from e
                exists = ", ".join(done) if done else "none"
                raise type(err)(f"{err} (applied before the failure: {exists}; not applied: "
                                f"{', '.join(pending)})", status=err.status, applied=tuple(done),
                                pending=pending, **_conflict(err)) from e  # fmt: skip
        return out

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            result: dict[str, Any] = (
                self.resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
            )
            return result
        except NotFoundError:
            return None
        except Exception as e:
            raise explain(e, f"{kind} {namespace}/{name}") from e

    def list(
        self, api_version: str, kind: str, namespace: str, selector: str
    ) -> list[dict[str, Any]]:
        try:
            result = self.resource(api_version, kind).get(
                namespace=namespace, label_selector=selector
            )
        except ClusterNotFound:
            raise
        except Exception as e:
            raise explain(e, f"{kind} in {namespace}") from e
        return [i.to_dict() for i in result.items]

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self.resource(api_version, kind).delete(name=name, namespace=namespace,
                                                    body={"propagationPolicy": "Foreground"})  # fmt: skip
            return True
        except NotFoundError:
            return False
        except Exception as e:
            raise explain(e, f"{kind} {namespace}/{name}") from e


def _conflict(err: KubernetesError) -> dict[str, Any]:
    if isinstance(err, ClusterConflict):
        return {"manager": err.manager, "field": err.field}
    return {}
