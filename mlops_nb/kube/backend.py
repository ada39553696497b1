"""The Kubernetes backend of one deployment: apply, observe, traffic, undo, scale, stop.

Everything it creates carries ``mlops-nb/deployment=<name>``, which is what ``stop()``
deletes by; the last applied :class:`DesiredState` is kept on the Service, so a backend
attached from another process knows what it serves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..deploy.target import (
    Backend,
    DesiredState,
    Observed,
    RevisionStatus,
    RevisionTraffic,
    Traffic,
)
from ..errors import ClusterNotFound, InvalidArgument, KubernetesError, RolloutFailed
from . import metrics
from . import names as n
from .client import FIELD_MANAGER, Cluster, explain
from .render import DESIRED_ANN, pick_primary, render
from .status import crash_looping, replica, rollout_status

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .target import Kubernetes

# Kinds a deployment may own, deleted by label in this order (workloads first).
OWNED = (("apps/v1", "Deployment"), ("argoproj.io/v1alpha1", "Rollout"),
         ("autoscaling/v2", "HorizontalPodAutoscaler"), ("policy/v1", "PodDisruptionBudget"),
         ("gateway.networking.k8s.io/v1", "HTTPRoute"), ("networking.istio.io/v1", "VirtualService"),
         ("networking.istio.io/v1", "DestinationRule"), ("argoproj.io/v1alpha1", "AnalysisTemplate"),
         ("v1", "Service"), ("v1", "ConfigMap"))  # fmt: skip
REVISION_ANN = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Undo:
    """What an undo did: Kubernetes revisions (as ``kubectl rollout history``) and the version."""

    from_revision: int
    to_revision: int
    revision: int
    version: int
    skipped: bool = False


class KubernetesBackend(Backend):
    kind = "kubernetes"

    def __init__(self, target: Kubernetes, ws: Workspace, name: str) -> None:
        self.target, self.ws, self.deployment = target, ws, name
        self.name = n.k8s_name(name)
        self.ns = target.namespace
        self._cluster: Cluster | None = None
        self._samples: dict[str, list[tuple[float, metrics.Sample]]] = {}

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
        host = str(self.cluster.api.configuration.host).rstrip("/")
        return f"{host}/api/v1/namespaces/{self.ns}/services/{self.name}:http/proxy"

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
        live_rev = _rev(live["spec"]["template"]) if live else None
        return render(self.target, self.ws, desired, pick_primary(desired, live_rev))

    def apply(self, desired: DesiredState, *, dry_run: bool = False, force: bool = False) -> None:
        objects = self.render(desired)
        self.cluster.apply(objects, dry_run=dry_run, force=force)
        if not dry_run:
            self._collect(desired)

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
        p_rev = _rev(primary["spec"]["template"]) if primary else None
        p_done = bool(primary) and rollout_status(primary).done  # type: ignore[arg-type]
        wanted = {r.revision for r in desired.revisions if r.weight > 0 or r.replicas > 0}
        for d in self._deployments():
            if d["metadata"]["name"] == self.name:
                continue
            rev = _rev(d["spec"]["template"])
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
            rev = _rev(d["spec"]["template"])
            entry = by_rev.setdefault(
                rev, {"desired": 0, "version": _version(d["spec"]["template"]), "failed": []}
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
            return self._prometheus(window_s)
        from kubernetes.client import CoreV1Api

        api = CoreV1Api(self.cluster.api)
        now = time.monotonic()
        sums: dict[int, tuple[int, metrics.Sample]] = {}
        for pod in self.cluster.list("v1", "Pod", self.ns, f"{n.INSTANCE}={self.name}"):
            if (pod.get("status") or {}).get("phase") != "Running":
                continue
            name = pod["metadata"]["name"]
            try:
                resp = api.connect_get_namespaced_pod_proxy_with_path(
                    f"{name}:{n.PORT}", self.ns, "metrics", _preload_content=False
                )
                text = resp.data.decode()
            except Exception:
                continue  # a pod that does not answer has served nothing we can count
            sample = metrics.Sample.parse(text)
            history = self._samples.setdefault(name, [])
            history.append((now, sample))
            history[:] = [h for h in history if now - h[0] <= max(window_s * 2, 60.0)]
            base = next((s for t, s in history if now - t <= window_s), None)
            started_within = base is history[0][1] and len(history) == 1
            delta = sample if started_within else sample.minus(base)
            labels = pod["metadata"]["labels"]
            rev = int(labels.get(n.REVISION, 0))
            old = sums.get(rev, (int(labels.get(n.VERSION_LABEL, 0)), metrics.Sample()))
            sums[rev] = (old[0], old[1].plus(delta))
        revs = tuple(metrics.revision_traffic(r, v, s) for r, (v, s) in sorted(sums.items()))
        return Traffic(window_s=window_s, revisions=revs)

    def _prometheus(self, window_s: float) -> Traffic:
        desired = self.desired()
        by_version = {r.version: r.revision for r in (desired.revisions if desired else ())}
        try:
            samples = metrics.prometheus_query(str(self.target.prometheus), self.ns,
                                               desired.model if desired else self.deployment, window_s)  # fmt: skip
        except Exception as e:
            raise KubernetesError(
                f"Prometheus at {self.target.prometheus} did not answer: {e}"
            ) from e
        out: list[RevisionTraffic] = []
        for version, s in sorted(samples.items()):
            if version.isdigit() and int(version) in by_version:
                out.append(metrics.revision_traffic(by_version[int(version)], int(version), s))
        return Traffic(window_s=window_s, revisions=tuple(out))

    # -- undo, scale, stop ---------------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        """The primary Deployment's revisions, oldest first, as ``kubectl rollout history``."""
        d = self._primary()
        if d is None:
            return []
        return [{"revision": int(rs["metadata"]["annotations"][REVISION_ANN]),
                 "mlops_revision": _rev(rs["spec"]["template"]), "version": _version(rs["spec"]["template"]),
                 "replicaset": rs["metadata"]["name"]} for rs in self._replicasets(d)]  # fmt: skip

    def _replicasets(self, d: dict[str, Any]) -> list[dict[str, Any]]:
        match = d["spec"]["selector"].get("matchLabels") or {}
        rss = self.cluster.list("apps/v1", "ReplicaSet", self.ns, n.selector(match))
        owned = [rs for rs in rss if any(r.get("uid") == d["metadata"]["uid"]
                                         for r in rs["metadata"].get("ownerReferences") or [])]  # fmt: skip
        return sorted(
            owned,
            key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(REVISION_ANN, 0)),
        )

    def undo(self, to: int | None = None) -> Undo:
        """``kubectl rollout undo`` on the primary Deployment: back to the previous
        revision, or to ``to`` (a revision number as ``kubectl rollout history`` lists it)."""
        if self.target.traffic == "argo-rollouts":
            raise RolloutFailed("with traffic='argo-rollouts' use `kubectl argo rollouts undo`")
        d = self._primary()
        if d is None:
            raise ClusterNotFound(f"deployment {self.ns}/{self.name} does not exist", status=404)
        if d["spec"].get("paused"):
            raise RolloutFailed(f"deployment {self.ns}/{self.name} is paused: resume it first with "
                                f"`kubectl rollout resume deployment/{self.name} -n {self.ns}`, then undo")  # fmt: skip
        history = self._replicasets(d)
        current = int((d["metadata"].get("annotations") or {}).get(REVISION_ANN, 0))
        by_rev = {int(rs["metadata"]["annotations"][REVISION_ANN]): rs for rs in history}
        if to is None or to == 0:
            older = [r for r in by_rev if r < current]
            if not older:
                raise RolloutFailed(
                    f"deployment {self.ns}/{self.name} has no previous revision to undo to"
                )
            to = max(older)
        if to not in by_rev:
            raise RolloutFailed(f"deployment {self.ns}/{self.name} has no revision {to}; it has "
                                f"{', '.join(map(str, sorted(by_rev)))}")  # fmt: skip
        template = json.loads(json.dumps(by_rev[to]["spec"]["template"]))
        template["metadata"]["labels"].pop("pod-template-hash", None)
        result = Undo(
            current,
            to,
            _rev(template),
            _version(template),
            skipped=_same(template, d["spec"]["template"]),
        )
        if result.skipped:
            return result
        body: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": self.name, "namespace": self.ns, "labels": template["metadata"]["labels"],
                             "annotations": {k: v for k, v in (template["metadata"].get("annotations") or {}).items()
                                             if k.startswith("mlops-nb/")}},
                "spec": {**{k: v for k, v in d["spec"].items() if k in ("replicas", "selector", "strategy",
                         "revisionHistoryLimit", "progressDeadlineSeconds", "minReadySeconds")},
                         "template": template}}  # fmt: skip
        if _has_hpa(self):
            body["spec"].pop("replicas", None)
        self.cluster.apply([body], force=True)
        return result

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


def _rev(template: dict[str, Any]) -> int:
    return int(((template.get("metadata") or {}).get("labels") or {}).get(n.REVISION, 0))


def _version(template: dict[str, Any]) -> int:
    return int(((template.get("metadata") or {}).get("labels") or {}).get(n.VERSION_LABEL, 0))


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    from .emulator.controller import template_hash

    return template_hash(a) == template_hash(b)


def _has_hpa(backend: KubernetesBackend) -> bool:
    try:
        return (
            backend.cluster.get(
                "autoscaling/v2", "HorizontalPodAutoscaler", backend.name, backend.ns
            )
            is not None
        )
    except KubernetesError:
        return False


__all__ = ["FIELD_MANAGER", "KubernetesBackend", "Undo", "explain"]
