"""The Kubernetes backend of one deployment: apply, observe, traffic, undo, scale, stop.

Everything it creates carries ``mlops-nb/deployment=<name>``, which is what ``stop()``
deletes by; the last applied :class:`DesiredState` is kept on the Service, so a backend
attached from another process knows what it serves.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ..deploy.target import (
    Backend,
    DesiredState,
    Observed,
    ReplicaStatus,
    RevisionStatus,
    Traffic,
)
from ..errors import ClusterNotFound, InvalidArgument, KubernetesError, RolloutFailed
from . import history, routing, scrape
from . import names as n
from .client import FIELD_MANAGER, Cluster, explain
from .history import Undo, rev_of, version_of
from .render import DESIRED_ANN, pick_primary, render
from .status import crash_looping, replica, rollout_status

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .target import Kubernetes

GENERATION_ANN = "mlops-nb/generation"
# Kinds a deployment may own, deleted by label in this order (workloads first).
OWNED = (("apps/v1", "Deployment"), ("argoproj.io/v1alpha1", "Rollout"),
         ("autoscaling/v2", "HorizontalPodAutoscaler"), ("policy/v1", "PodDisruptionBudget"),
         ("gateway.networking.k8s.io/v1", "HTTPRoute"), ("networking.istio.io/v1", "VirtualService"),
         ("networking.istio.io/v1", "DestinationRule"), ("argoproj.io/v1alpha1", "AnalysisTemplate"),
         ("v1", "Service"), ("v1", "ConfigMap"))  # fmt: skip


class KubernetesBackend(Backend):
    kind = "kubernetes"

    def __init__(self, target: Kubernetes, ws: Workspace, name: str) -> None:
        self.target, self.ws, self.deployment = target, ws, name
        self.name = n.k8s_name(name)
        self.ns = target.namespace
        self._cluster: Cluster | None = None
        self._scraper: scrape.Scraper | None = None

    def __repr__(self) -> str:
        return f"<KubernetesBackend {self.ns}/{self.name}>"

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = self.target.cluster()
        return self._cluster

    @property
    def selector(self) -> str:
        return f"{n.DEPLOYMENT}={self.name}"

    @property
    def endpoint(self) -> str:
        """Where clients send requests: the Gateway's address and the deployment's path with
        ``traffic="gateway-api"`` (the weights apply there), else the Service through the
        API server's service proxy."""
        if self.target.traffic == "gateway-api":
            return self._gateway_url() + routing.route_path(self.ns, self.name)
        host = str(self.cluster.api.configuration.host).rstrip("/")
        return f"{host}/api/v1/namespaces/{self.ns}/services/{self.name}:http/proxy"

    def _gateway_url(self, wait_s: float = 120.0) -> str:
        """The Gateway's address, waiting (up to ``wait_s``) for its controller to give it
        one: a Gateway created moments ago has none yet."""
        gw_ns, _, gw_name = str(self.target.gateway).rpartition("/")
        gw_ns = gw_ns or self.ns
        deadline = time.monotonic() + wait_s
        while True:
            gateway = self.cluster.get("gateway.networking.k8s.io/v1", "Gateway", gw_name, gw_ns)
            url = routing.gateway_url(gateway) if gateway is not None else None
            if url is not None:
                return url
            if gateway is None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        state = "does not exist" if gateway is None else f"has no address after {wait_s:g} s"
        raise ClusterNotFound(
            f"Gateway {gw_ns}/{gw_name} {state}: the HTTPRoute's weights apply only behind it. "
            f"Create it (or check its controller: `kubectl get gateway -n {gw_ns} {gw_name}`), "
            "or pass gateway= naming one that exists", status=404,
        )  # fmt: skip

    def record(self) -> dict[str, Any]:
        return {"name": self.deployment, "namespace": self.ns, "target": self.target.to_record()}

    def check_namespace(self) -> None:
        if self.cluster.get("v1", "Namespace", self.ns, None) is None:
            raise ClusterNotFound(f'namespace "{self.ns}" does not exist: create it with '
                                  f"`kubectl create namespace {self.ns}`", status=404)  # fmt: skip

    # -- apply ---------------------------------------------------------------------------

    def _deployments(self) -> list[dict[str, Any]]:
        return self.cluster.list("apps/v1", "Deployment", self.ns, self.selector)

    def _primary(self) -> dict[str, Any] | None:
        return self.cluster.get("apps/v1", "Deployment", self.name, self.ns)

    def render(self, desired: DesiredState) -> list[dict[str, Any]]:
        live = self._primary()
        live_rev = rev_of(live["spec"]["template"]) if live else None
        return render(self.target, self.ws, desired, pick_primary(desired, live_rev))

    def apply(self, desired: DesiredState, generation: int = 0, *, dry_run: bool = False,
              force: bool = False) -> None:  # fmt: skip
        """Server-side apply of ``desired``; a state older than the live ``generation`` is
        not applied (a slow writer never undoes a newer state)."""
        if generation and not dry_run and generation < self.generation():
            return
        objects = self.render(desired)
        for obj in objects:
            if obj["kind"] == "Service" and obj["metadata"]["name"] == self.name:
                obj["metadata"]["annotations"][GENERATION_ANN] = str(generation)
        self.cluster.apply(objects, dry_run=dry_run, force=force)
        if not dry_run:
            self._collect(desired)

    def generation(self) -> int:
        svc = self.cluster.get("v1", "Service", self.name, self.ns)
        return int(
            ((svc or {}).get("metadata", {}).get("annotations") or {}).get(GENERATION_ANN, 0)
        )

    def dry_run(self, desired: DesiredState) -> list[dict[str, Any]]:
        """The objects as the API server would store them, persisting nothing."""
        return self.cluster.apply(self.render(desired), dry_run=True)

    def desired(self) -> DesiredState | None:
        svc = self.cluster.get("v1", "Service", self.name, self.ns)
        raw = ((svc or {}).get("metadata", {}).get("annotations") or {}).get(DESIRED_ANN)
        return DesiredState.from_dict(json.loads(raw)) if raw else None

    def _collect(self, desired: DesiredState | None) -> None:
        """Delete revision Deployments no longer wanted; a revision the primary is taking
        over keeps its own pods until the primary's rollout is done (no gap in serving)."""
        if desired is None:
            return
        primary = self._primary()
        p_rev = rev_of(primary["spec"]["template"]) if primary else None
        p_done = bool(primary) and rollout_status(primary).done  # type: ignore[arg-type]
        wanted = {r.revision for r in desired.revisions if r.weight > 0 or r.replicas > 0}
        for d in self._deployments():
            if d["metadata"]["name"] == self.name:
                continue
            rev = rev_of(d["spec"]["template"])
            if rev in wanted and rev != p_rev:
                continue
            if rev == p_rev and not p_done:
                continue
            self.cluster.delete("apps/v1", "Deployment", d["metadata"]["name"], self.ns)
        for svc in self.cluster.list("v1", "Service", self.ns, self.selector):
            sname = svc["metadata"]["name"]
            if sname.startswith(f"{self.name}-r") and sname[len(self.name) + 2:].isdigit() \
                    and int(sname[len(self.name) + 2:]) not in wanted:  # fmt: skip
                self.cluster.delete("v1", "Service", sname, self.ns)

    # -- observe -------------------------------------------------------------------------

    def observe(self) -> Observed:
        try:
            deployments = self._deployments()
            pods = self.cluster.list("v1", "Pod", self.ns, f"{n.INSTANCE}={self.name}")
        except KubernetesError as e:
            return Observed(alive=False, message=str(e))
        if not deployments:
            return Observed(alive=self.alive(), message="no Deployment of this deployment exists")
        by_rev: dict[int, dict[str, Any]] = {}
        messages = []
        for d in deployments:
            st = rollout_status(d)
            if not st.done:
                messages.append(st.message)
            rev = rev_of(d["spec"]["template"])
            entry = by_rev.setdefault(
                rev, {"desired": 0, "version": version_of(d["spec"]["template"]), "failed": []}
            )
            entry["desired"] += int(
                d["spec"].get("replicas", (d.get("status") or {}).get("replicas", 0)) or 0
            )
            if st.failed:
                entry["failed"].append(st.message)
        for pod in pods:
            rev = int(pod["metadata"]["labels"].get(n.REVISION, 0))
            by_rev.setdefault(rev, {"desired": 0, "version": int(pod["metadata"]["labels"].get(n.VERSION_LABEL, 0)),
                                    "failed": []})  # fmt: skip
        revisions = []
        for rev, entry in sorted(by_rev.items()):
            reps = [replica(p) for p in pods if p["metadata"]["labels"].get(n.REVISION) == str(rev)]
            loop = crash_looping(reps)
            message = "; ".join(entry["failed"]) or (self.explain(rev) if loop else None)
            revisions.append(RevisionStatus(
                revision=rev, version=entry["version"], desired=entry["desired"],
                ready=sum(r.ready for r in reps), restarts=sum(r.restarts for r in reps),
                crash_loop=loop, message=message, replicas=tuple(reps),
            ))  # fmt: skip
        self._collect(self.desired())
        return Observed(alive=True, revisions=tuple(revisions), message="; ".join(messages) or None)

    def replica_report(self, replica: ReplicaStatus) -> dict[str, Any] | None:
        """The pod's ``/v2/health/stats`` through the API server's pod proxy: its payload
        log, queue and process figures (None from a pod that does not answer)."""
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        if not replica.alive:
            return None
        try:
            resp = CoreV1Api(self.cluster.api).connect_get_namespaced_pod_proxy_with_path(
                f"{replica.id}:{n.PORT}", self.ns, "v2/health/stats",
                _preload_content=False, _request_timeout=2.0,
            )  # fmt: skip
            return dict(json.loads(resp.data))
        except (ApiException, HTTPError, ValueError, TypeError):
            return None

    def rollout_status(self) -> str:
        """``kubectl rollout status`` of the primary Deployment, as one line."""
        d = self._primary()
        if d is None:
            raise ClusterNotFound(f"deployment {self.ns}/{self.name} does not exist", status=404)
        return rollout_status(d).message

    def explain(self, revision: int) -> str | None:
        pods = self.cluster.list(
            "v1", "Pod", self.ns, f"{n.INSTANCE}={self.name},{n.REVISION}={revision}"
        )
        for pod in pods:
            r = replica(pod)
            last = r.detail.get("last_termination")
            if last or r.detail.get("waiting") == "CrashLoopBackOff":
                text = self._log(pod["metadata"]["name"])
                why = (
                    f"{last.get('reason')} (exit {last.get('exit_code')})" if last else "crash loop"
                )
                return f"pod {pod['metadata']['name']}: {why}; log: {text[-600:]}"
        return None

    def load_error(self, revision: int) -> str | None:
        """The artifact fetch failed (missing or corrupt files): waiting will not help."""
        pods = self.cluster.list(
            "v1", "Pod", self.ns, f"{n.INSTANCE}={self.name},{n.REVISION}={revision}"
        )
        for pod in pods:
            for c in (pod.get("status") or {}).get("initContainerStatuses") or []:
                t = (c.get("lastState") or {}).get("terminated")
                if c.get("name") == "fetch-artifact" and t and t.get("exitCode"):
                    text = self._log(pod["metadata"]["name"])
                    line = next((x for x in text.splitlines() if "mlops-nb fetch:" in x), None)
                    return line or f"the artifact fetch exited with {t.get('exitCode')}"
        return None

    def _log(self, pod: str) -> str:
        from kubernetes.client import CoreV1Api

        api = CoreV1Api(self.cluster.api)
        for container in ("server", "fetch-artifact"):
            try:
                resp = api.read_namespaced_pod_log(
                    pod, self.ns, container=container, tail_lines=20, _preload_content=False
                )
                text = str(resp.data.decode(errors="replace"))
            except Exception:
                continue
            if text.strip():
                return text
        return ""

    # -- traffic -------------------------------------------------------------------------

    def traffic(self, window_s: float) -> Traffic:
        if self.target.prometheus:
            return scrape.from_prometheus(self.target.prometheus, self.ns, self.desired(),
                                          self.deployment, window_s)  # fmt: skip
        if self._scraper is None:
            self._scraper = scrape.Scraper(self.cluster, self.ns, self.name)
        return self._scraper.traffic(window_s)

    # -- undo, scale, stop ---------------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        """The primary Deployment's revisions, oldest first, as ``kubectl rollout history``:
        ``revision`` (Kubernetes), ``mlops_revision``, ``version``, ``replicaset``."""
        return history.history(self.cluster, self._primary())

    def undo(self, to: int | None = None) -> Undo:
        """``kubectl rollout undo`` on the primary Deployment: back to the previous
        revision, or to ``to`` (a revision number as ``kubectl rollout history`` lists it)."""
        if self.target.traffic == "argo-rollouts":
            raise RolloutFailed("with traffic='argo-rollouts' use `kubectl argo rollouts undo`")
        return history.undo(self.cluster, self._primary(), to, autoscaled=self._autoscaled())

    def _autoscaled(self) -> bool:
        try:
            hpa = self.cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", self.name, self.ns)
        except KubernetesError:
            return False
        return hpa is not None

    def scale(self, replicas: int) -> None:
        """Set the serving revisions' replicas (the primary to ``replicas``, others in proportion)."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise InvalidArgument(f"replicas must be a positive integer, got {replicas!r}")
        if self.target.autoscale:
            raise InvalidArgument(
                "this deployment is autoscaled: change autoscale=(min, max, cpu) instead"
            )
        desired = self.desired()
        if desired is None:
            raise ClusterNotFound(
                f"deployment {self.ns}/{self.name} has nothing applied to scale", status=404
            )
        import dataclasses

        top = max((r.replicas for r in desired.revisions), default=0) or 1
        revs = tuple(dataclasses.replace(r, replicas=max(1, round(r.replicas * replicas / top)) if r.replicas else 0)
                     for r in desired.revisions)  # fmt: skip
        self.apply(dataclasses.replace(desired, revisions=revs))

    def alive(self) -> bool:
        try:
            return self.cluster.get("v1", "Service", self.name, self.ns) is not None
        except KubernetesError:
            return False

    def stop(self) -> None:
        errors = []
        for api_version, kind in OWNED:
            try:
                items = self.cluster.list(api_version, kind, self.ns, self.selector)
            except ClusterNotFound:
                continue  # the cluster does not serve this kind: nothing of it to delete
            for obj in items:
                if (obj["metadata"].get("labels") or {}).get(n.MANAGED_BY) != "mlops-nb":
                    continue
                try:
                    self.cluster.delete(api_version, kind, obj["metadata"]["name"], self.ns)
                except KubernetesError as e:
                    errors.append(str(e))
        if errors:
            raise KubernetesError("some objects could not be deleted: " + "; ".join(errors))


__all__ = ["FIELD_MANAGER", "KubernetesBackend", "Undo", "explain"]
