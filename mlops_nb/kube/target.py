"""``mnb.Kubernetes(...)``: the cluster target, its manifests, plan and serving image.

>>> k8s = Kubernetes(namespace="ml", image="registry.example/mlops-nb:0.2")
>>> k8s
Kubernetes(namespace='ml', context=None, image='registry.example/mlops-nb:0.2', traffic='service')
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from .. import __version__
from ..deploy.target import Backend, DesiredState, RevisionSpec, Target
from ..errors import InvalidArgument
from . import names as n

if TYPE_CHECKING:
    from ..registry import ModelVersion
    from ..workspace import Workspace
    from .backend import KubernetesBackend
    from .client import Cluster
    from .plan import Plan

TRAFFIC = ("service", "gateway-api", "istio", "argo-rollouts")


@dataclass(frozen=True, repr=False)
class Kubernetes(Target):
    """Deployments on a Kubernetes cluster, through the official client.

    ``artifacts`` is the store the pods read (default: the version's own store) and
    ``spool`` where the servers write prediction logs. ``traffic`` picks how weights are
    routed: ``"service"`` (replica ratio behind one Service), ``"gateway-api"`` (an
    HTTPRoute on ``gateway``), ``"istio"`` (VirtualService and DestinationRule) or
    ``"argo-rollouts"`` (a Rollout whose analysis reads ``prometheus``). ``resources``
    and ``autoscale=(min, max, cpu_percent)`` apply to every deployment made with this
    target; ``kubeconfig``/``context`` (or ``api_client``) say which cluster.
    ``workspace_claim`` names the PersistentVolumeClaim that holds the workspace file (at
    ``workspace_path`` in the pod), which scheduled monitoring (``mon.schedule``) mounts.
    """

    kind: ClassVar[str] = "kubernetes"

    namespace: str = "default"
    context: str | None = None
    image: str = f"mlops-nb:{__version__}"
    artifacts: str | None = None
    spool: str | None = None
    traffic: str = "service"
    prometheus: str | None = None
    kubeconfig: str | None = None
    gateway: str | None = None
    s3_secret: str | None = None
    service_account: str | None = None
    artifact_volume: dict[str, Any] | None = field(default=None, hash=False)
    workspace_claim: str | None = None
    workspace_path: str = "/workspace/mlops.duckdb"
    resources: dict[str, str] | None = field(default=None, hash=False)
    autoscale: tuple[int, int, int] | None = None
    steps: tuple[int, ...] = (10, 50, 100)
    pause: str = "1m"
    max_error_rate: float = 0.01
    api_client: Any = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.traffic not in TRAFFIC:
            raise InvalidArgument(
                f"traffic must be one of {', '.join(TRAFFIC)}, got {self.traffic!r}"
            )
        if n.k8s_name(self.namespace, 63) != self.namespace:
            raise InvalidArgument(f"namespace {self.namespace!r} is not a valid Kubernetes name; "
                                  f"try {n.k8s_name(self.namespace, 63)!r}")  # fmt: skip
        if self.traffic == "gateway-api" and not self.gateway:
            raise InvalidArgument("traffic='gateway-api' needs gateway='[namespace/]name' of the Gateway "
                                  "the HTTPRoute attaches to")  # fmt: skip
        if self.traffic == "argo-rollouts" and not self.prometheus:
            raise InvalidArgument(
                "traffic='argo-rollouts' needs prometheus='http://...': the analysis runs in the "
                "cluster and reads the servers' error rate from Prometheus"
            )
        if self.workspace_claim is not None and not re.fullmatch(
            r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", self.workspace_claim
        ):
            raise InvalidArgument(f"workspace_claim {self.workspace_claim!r} is not a valid "
                                  "PersistentVolumeClaim name; try "
                                  f"{n.k8s_name(self.workspace_claim, 253)!r}")  # fmt: skip
        folder, _, file = self.workspace_path.rpartition("/")
        if not self.workspace_path.startswith("/") or not folder or not file:
            raise InvalidArgument(f"workspace_path must be an absolute file path below a mount "
                                  f"folder, like '/workspace/mlops.duckdb', got "
                                  f"{self.workspace_path!r}")  # fmt: skip
        if self.autoscale is not None:
            low, high, cpu = _triple(self.autoscale)
            object.__setattr__(self, "autoscale", (low, high, cpu))
        object.__setattr__(self, "steps", tuple(int(s) for s in self.steps))

    def __repr__(self) -> str:
        return (f"Kubernetes(namespace={self.namespace!r}, context={self.context!r}, "
                f"image={self.image!r}, traffic={self.traffic!r})")  # fmt: skip

    # -- records -------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "api_client"
        }
        out["autoscale"] = list(self.autoscale) if self.autoscale else None
        out["steps"] = list(self.steps)
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Kubernetes:
        data = dict(record.get("target", record))
        if data.get("autoscale"):
            data["autoscale"] = tuple(data["autoscale"])
        data["steps"] = tuple(data.get("steps") or (10, 50, 100))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def cluster(self) -> Cluster:
        from .client import Cluster, connect

        return Cluster(self.api_client or connect(self.kubeconfig, self.context))

    # -- Target --------------------------------------------------------------------------

    def provision(self, ws: Workspace, name: str) -> KubernetesBackend:
        from .backend import KubernetesBackend

        backend = KubernetesBackend(self, ws, name)
        backend.check_namespace()
        return backend

    def attach(self, ws: Workspace, record: dict[str, Any]) -> Backend:
        from .backend import KubernetesBackend

        return KubernetesBackend(self, ws, str(record["name"]))

    # -- rendering without a cluster -----------------------------------------------------

    def _desired(self, v: ModelVersion, replicas: int, name: str | None) -> DesiredState:
        row = v.info()
        rev = RevisionSpec(revision=1, version=int(row["version"]), artifact_uri=str(row["artifact_uri"]),
                           digest=str(row["digest"]), replicas=replicas, weight=100)  # fmt: skip
        return DesiredState(name=name or v.model, model=v.model, revisions=(rev,))

    def manifests(self, v: ModelVersion, replicas: int = 1, resources: dict[str, str] | None = None,
                  autoscale: tuple[int, int, int] | None = None, name: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Every object a deployment of ``v`` consists of, as dicts (no cluster needed)."""
        from .render import render

        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise InvalidArgument(f"replicas must be a positive integer, got {replicas!r}")
        target = dataclasses.replace(self, resources=resources or self.resources,
                                     autoscale=autoscale or self.autoscale, api_client=None)  # fmt: skip
        return render(target, v._ws, self._desired(v, replicas, name), primary=1)

    def to_yaml(self, v: ModelVersion, replicas: int = 1, resources: dict[str, str] | None = None,
                autoscale: tuple[int, int, int] | None = None, name: str | None = None) -> str:  # fmt: skip
        """The manifests as one multi-document YAML (for GitOps)."""
        docs = self.manifests(
            v, replicas=replicas, resources=resources, autoscale=autoscale, name=name
        )
        return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)

    def plan(self, v: ModelVersion, replicas: int = 1, resources: dict[str, str] | None = None,
             autoscale: tuple[int, int, int] | None = None, name: str | None = None) -> Plan:  # fmt: skip
        """What applying ``v`` would create or change, against what is live (a dry run)."""
        from .plan import plan

        return plan(self.cluster(), self.manifests(v, replicas, resources, autoscale, name))

    def dockerfile(self, v: ModelVersion) -> str:
        """A serving image for ``v``'s flavor: this package, the flavor's libraries, non-root."""
        manifest = v.info()["manifest"]
        flavor = str(manifest.get("flavor", "python"))
        pins = {"sklearn": "scikit-learn", "python": None}
        extra = []
        lib = pins.get(flavor.split(".")[0])
        libver = (manifest.get("libraries") or {}).get(lib or "", None) if lib else None
        if lib:
            extra.append(f"{lib}=={libver}" if libver else lib)
        pip = " ".join([f"mlops-nb=={__version__}", *extra])
        return "\n".join([
            "# Serving image for " + f"{v.model} v{v.info()['version']} ({flavor})",
            "FROM python:3.11-slim",
            "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1",
            f"RUN pip install {pip}",
            "RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin mlops",
            "USER 10001",
            f"EXPOSE {n.PORT}",
            'CMD ["python", "-m", "mlops_nb.serve", "--help"]',
            "",
        ])  # fmt: skip


def _triple(value: Any) -> tuple[int, int, int]:
    try:
        low, high, cpu = (int(x) for x in value)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"autoscale must be (min, max, cpu_percent), got {value!r}") from e
    if not 1 <= low <= high or not 1 <= cpu <= 100:
        raise InvalidArgument(
            f"autoscale needs 1 <= min <= max and 1 <= cpu_percent <= 100, got {value!r}"
        )
    return low, high, cpu
