"""What every deployment target implements: apply a desired state, observe it, report
its traffic, stop.

The deployment core (``core``, ``controller``) never knows how a target runs replicas:
it hands a :class:`DesiredState` to a :class:`Backend` and reads back
:class:`Observed` and :class:`Traffic`. A target is configured by a small frozen
object (``mnb.Local()``, ``mnb.Kubernetes(...)``) whose ``provision()`` makes the
endpoint of a new deployment and whose ``attach()`` re-creates the backend of an
existing one from the JSON record it left in the workspace (``deployments.admin``).

Desired state names artifacts by URI and digest, never by a local path, so the same
state can be applied to a router on this machine or to a cluster.

>>> rev = RevisionSpec(revision=1, version=3, artifact_uri="s3://b/blobs", digest="ab12",
...                    replicas=2, weight=100)
>>> DesiredState(name="iris", model="iris", revisions=(rev,)).weights()
{1: 100}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..workspace import Workspace


@dataclass(frozen=True)
class RevisionSpec:
    """One revision as it should run: which version, how many replicas, what weight."""

    revision: int
    version: int
    artifact_uri: str
    digest: str
    replicas: int
    weight: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DesiredState:
    """Everything a target needs to serve a deployment.

    ``routing`` is ``"weighted"`` (a request goes to a revision with probability
    proportional to its weight) or ``"ab"`` (a stable hash of ``key``, e.g.
    ``"header:x-user-id"``, picks the revision; requests without the key are weighted).
    ``server`` holds the model server options every replica starts with (see
    :data:`SERVER_OPTIONS`).
    """

    name: str
    model: str
    revisions: tuple[RevisionSpec, ...] = ()
    routing: str = "weighted"
    key: str | None = None
    server: dict[str, Any] = field(default_factory=dict)

    def with_revisions(self, revisions: list[RevisionSpec] | tuple[RevisionSpec, ...], *,
                       routing: str | None = None, key: str | bool | None = False) -> DesiredState:  # fmt: skip
        """The same deployment with other revisions (and routing, when given).

        >>> d = DesiredState(name="iris", model="iris", key="header:x")
        >>> d.with_revisions([], routing="ab").key
        'header:x'
        """
        return replace(self, revisions=tuple(revisions), routing=routing or self.routing,
                       key=self.key if key is False else key)  # type: ignore[arg-type]  # fmt: skip

    def weights(self) -> dict[int, int]:
        return {r.revision: r.weight for r in self.revisions}

    def revision(self, number: int) -> RevisionSpec | None:
        return next((r for r in self.revisions if r.revision == number), None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "routing": self.routing,
                "key": self.key, "revisions": [r.to_dict() for r in self.revisions],
                "server": dict(self.server)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesiredState:
        revisions = tuple(RevisionSpec(**r) for r in data.get("revisions", []))
        return cls(name=str(data["name"]), model=str(data["model"]), revisions=revisions,
                   routing=str(data.get("routing", "weighted")), key=data.get("key"),
                   server=dict(data.get("server") or {}))  # fmt: skip


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica (a process, a pod) as observed."""

    id: str
    ready: bool
    alive: bool
    restarts: int = 0
    cpu_seconds: float | None = None
    rss_bytes: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RevisionStatus:
    """A revision as observed: ready/desired replicas, restarts, crash loops (and the
    back-off before the next start, where the target says)."""

    revision: int
    version: int
    desired: int
    ready: int
    restarts: int = 0
    crash_loop: bool = False
    message: str | None = None
    replicas: tuple[ReplicaStatus, ...] = ()
    backoff_s: float | None = None


@dataclass(frozen=True)
class Observed:
    """What the target runs now. ``alive`` is False when the endpoint itself is gone."""

    alive: bool
    revisions: tuple[RevisionStatus, ...] = ()
    message: str | None = None

    def revision(self, number: int) -> RevisionStatus | None:
        return next((r for r in self.revisions if r.revision == number), None)

    def ready(self, number: int) -> int:
        rev = self.revision(number)
        return rev.ready if rev else 0


@dataclass(frozen=True)
class RevisionTraffic:
    """Requests answered by one revision in a window, by outcome, with latency."""

    revision: int
    version: int
    requests: int
    errors_5xx: int
    errors_4xx: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors_5xx / self.requests if self.requests else None

    @property
    def client_error_rate(self) -> float | None:
        return self.errors_4xx / self.requests if self.requests else None


@dataclass(frozen=True)
class Traffic:
    """Live traffic of a deployment over the last ``window_s`` seconds.

    ``no_replica`` counts requests the endpoint refused (503) because no replica was
    ready, by the revision they were meant for (``None`` when none was meant for one).
    """

    window_s: float
    revisions: tuple[RevisionTraffic, ...] = ()
    no_replica: dict[int, int] = field(default_factory=dict)

    def of(self, revision: int) -> RevisionTraffic | None:
        return next((r for r in self.revisions if r.revision == revision), None)


class Backend(ABC):
    """A deployment's handle on its target (one per deployment)."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where clients send requests."""

    @abstractmethod
    def record(self) -> dict[str, Any]:
        """JSON kept in the workspace so :meth:`Target.attach` can re-create this backend."""

    @abstractmethod
    def apply(self, desired: DesiredState, generation: int = 0) -> None:
        """Make the target run ``desired`` (idempotent; replicas follow asynchronously).

        ``generation`` is the workspace's generation of this state: a target that can
        refuses to go back to an older one (a slow writer never undoes a newer state)."""

    @abstractmethod
    def observe(self) -> Observed:
        """Ready/desired replicas per revision, restarts, crash loops."""

    @abstractmethod
    def traffic(self, window_s: float) -> Traffic:
        """Requests per revision in the last ``window_s`` seconds."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether the endpoint still exists (a stale deployment's does not)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop everything this deployment runs; only what is verifiably its own."""

    def explain(self, revision: int) -> str | None:
        """Why a revision cannot become ready (a load error, a log tail), if known."""
        return None

    def replica_report(self, replica: ReplicaStatus) -> dict[str, Any] | None:
        """What a replica says of itself (payload log, queue, process), if it can be asked."""
        return None

    def load_error(self, revision: int) -> str | None:
        """A definite failure to load (a corrupt artifact): waiting will not help."""
        return None


class Target(ABC):
    """Where deployments run. Subclasses are frozen dataclasses (cheap, comparable)."""

    kind: ClassVar[str]

    @abstractmethod
    def provision(self, ws: Workspace, name: str) -> Backend:
        """Create the endpoint of a new deployment (no revision serves yet)."""

    @abstractmethod
    def attach(self, ws: Workspace, record: dict[str, Any]) -> Backend:
        """The backend of an existing deployment, from :meth:`Backend.record`."""

    @classmethod
    @abstractmethod
    def from_record(cls, record: dict[str, Any]) -> Target:
        """The target configuration kept in a backend's :meth:`Backend.record`."""

    def check(self, ws: Workspace) -> None:  # noqa: B027 - optional hook
        """Refuse early, with a clear error, what this target cannot serve."""


# Target kinds by the name recorded in ``deployments.target``; imported on first use.
KINDS = {"local": "mlops_nb.deploy.local:Local", "kubernetes": "mlops_nb.kube:Kubernetes"}


def backend_for(ws: Workspace, kind: str, record: dict[str, Any]) -> Backend:
    """Re-attach to a deployment's backend from its recorded kind and record."""
    import importlib

    from ..errors import DeploymentError

    if kind not in KINDS:
        raise DeploymentError(f"unknown deployment target {kind!r} (known: {', '.join(KINDS)})")
    module, _, name = KINDS[kind].partition(":")
    cls: type[Target] = getattr(importlib.import_module(module), name)
    return cls.from_record(record).attach(ws, record)
