"""A :class:`DesiredState` as Kubernetes objects, for one traffic mode.

The *primary* Deployment ``<name>`` runs the stable revision; its history of ReplicaSets
is the deployment's history, so ``kubectl rollout undo`` works on it. Every other
serving revision (a canary, a blue-green preview, an A/B arm) runs in its own
Deployment ``<name>-r<revision>``. In ``"service"`` mode the weights become a replica
ratio (at least one replica per serving revision); with a single serving revision the
Service also selects it by label, which is the blue-green switch. (With two or more
serving revisions the Service selects the whole deployment, so a third revision at
weight 0 would get traffic too: use gateway-api or istio for that.)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..deploy.options import REPLACE_UNREADY_AFTER, spec_options
from ..deploy.target import DesiredState, RevisionSpec
from ..serve.spec import ServeSpec
from . import manifests as m
from . import names as n
from . import routing

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .target import Kubernetes

DESIRED_ANN = "mlops-nb/desired"


def workload(
    target: Kubernetes, ws: Workspace, desired: DesiredState, rev: RevisionSpec
) -> m.Workload:
    v = ws.model(desired.model).version(rev.version)
    options = spec_options(desired.server)
    # A pod stuck on a prediction is restarted by its liveness probe, when the local
    # target would replace the replica: unready (stuck) for replace_unready_after_s.
    stuck = float(options.get("stuck_after_s", ServeSpec.stuck_after_s))
    replace = float(desired.server.get("replace_unready_after_s", REPLACE_UNREADY_AFTER))
    spec = ServeSpec.of(v, spool=target.spool, live_stuck_after_s=stuck + replace, **options)
    data = json.loads(spec.to_json())
    data["artifact_uri"] = target.artifacts or rev.artifact_uri
    return m.Workload(name=n.k8s_name(desired.name), namespace=target.namespace, model=desired.model,
                      version=rev.version, revision=rev.revision, digest=rev.digest, spec=data,
                      workspace=str(getattr(ws, "path", "") or ""))  # fmt: skip


def replica_counts(target: Kubernetes, desired: DesiredState) -> dict[int, int]:
    """Replicas per revision; in ``"service"`` mode proportional to the weights."""
    counts = {r.revision: r.replicas for r in desired.revisions}
    weighted = [r for r in desired.revisions if r.weight > 0]
    if target.traffic == "service" and len(weighted) > 1:
        total = max(r.replicas for r in weighted)
        weight_sum = sum(r.weight for r in weighted)
        for r in weighted:
            counts[r.revision] = max(1, round(total * r.weight / weight_sum))
    return counts


def pick_primary(desired: DesiredState, live_primary: int | None) -> int | None:
    """The revision the primary Deployment runs: the one it runs now if still wanted, else
    the one with the most weight (then the newest)."""
    wanted = [r for r in desired.revisions if r.weight > 0 or r.replicas > 0]
    if not wanted:
        return None
    if live_primary is not None and any(
        r.revision == live_primary and r.weight > 0 for r in wanted
    ):
        return live_primary
    return max(wanted, key=lambda r: (r.weight, r.revision)).revision


def render(
    target: Kubernetes, ws: Workspace, desired: DesiredState, primary: int | None
) -> list[dict[str, Any]]:
    name, ns = n.k8s_name(desired.name), target.namespace
    opts = m.PodOptions(image=target.image, resources=target.resources, s3_secret=target.s3_secret,
                        volume=target.artifact_volume, service_account=target.service_account)  # fmt: skip
    counts = replica_counts(target, desired)
    weights = {r.revision: r.weight for r in desired.revisions}
    works = {r.revision: workload(target, ws, desired, r) for r in desired.revisions
             if r.replicas > 0 or r.weight > 0}  # fmt: skip
    objects: list[dict[str, Any]] = [m.configmap(w) for w in works.values()]
    autoscale = target.autoscale
    if target.traffic == "argo-rollouts":
        return objects + _argo(target, name, ns, works, counts, opts)
    for rev, w in sorted(works.items()):
        is_primary = rev == primary
        replicas = None if (is_primary and autoscale) else counts[rev]
        objects.append(m.deployment(w, opts, name if is_primary else f"{name}-r{rev}", replicas,
                                    "primary" if is_primary else f"r{rev}"))  # fmt: skip
    serving = [r for r, wt in weights.items() if wt > 0]
    select = (
        {n.REVISION: str(serving[0])} if target.traffic == "service" and len(serving) == 1 else {}
    )
    svc = m.service(name, ns, name, select)
    svc["metadata"]["annotations"] = {DESIRED_ANN: json.dumps(desired.to_dict(), sort_keys=True)}
    objects.append(svc)
    if target.traffic == "gateway-api":
        objects += [
            m.service(f"{name}-r{r}", ns, name, {n.REVISION: str(r)}) for r in sorted(works)
        ]
        objects.append(
            routing.httproute(name, ns, {r: weights[r] for r in sorted(works)}, str(target.gateway))
        )
    elif target.traffic == "istio":
        objects += routing.istio(name, ns, {r: weights[r] for r in sorted(works)})
    if autoscale and primary is not None:
        objects.append(m.hpa(name, ns, name, name, *autoscale))
    objects.append(m.pdb(name, ns, name))
    return objects


def _argo(target: Kubernetes, name: str, ns: str, works: dict[int, m.Workload], counts: dict[int, int],
          opts: m.PodOptions) -> list[dict[str, Any]]:  # fmt: skip
    # Argo Rollouts moves traffic itself: the Rollout always carries the newest revision.
    newest = works[max(works)]
    template = m.pod_template(newest, opts)
    rollout = routing.rollout(name, ns, newest.labels, template, max(counts.values()), target.steps,
                              target.pause, analysis=True)  # fmt: skip
    return [
        rollout,
        m.service(f"{name}-stable", ns, name, {}), m.service(f"{name}-canary", ns, name, {}),
        m.service(name, ns, name, {}),
        routing.analysis_template(name, ns, str(target.prometheus), target.max_error_rate, "30s", 3),
        m.pdb(name, ns, name),
    ]  # fmt: skip
