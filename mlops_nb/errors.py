"""The one exception tree of mlops_nb.

Every error raised on purpose by the SDK derives from :class:`MlopsError`; where a
builtin fits, it is mixed in so ``except LookupError`` and friends keep working::

    MlopsError
    ├── WorkspaceError
    │   ├── WorkspaceBusy            (+ TimeoutError)
    │   ├── NotAWorkspace            (+ ValueError)
    │   ├── SchemaTooNew
    │   ├── WorkspaceMissing         (+ FileNotFoundError)
    │   ├── WorkspaceCorrupt         (a damaged or truncated file)
    │   └── WorkspaceFull            (the disk or a file-size limit ran out)
    ├── NotFound                     (+ LookupError)
    │   ├── ModelNotFound
    │   ├── VersionNotFound
    │   └── AliasNotFound
    ├── InvalidArgument              (+ ValueError)
    │   ├── InvalidStage
    │   ├── InvalidMetric
    │   └── DuplicateLabel
    ├── PromotionRefused             (a policy rule or role said no; not an OSError)
    ├── DeploymentError              (a deployment cannot start, change or be reached)
    │   ├── DeploymentNotFound       (+ LookupError)
    │   ├── DeploymentConflict       another writer changed the deployment first
    │   └── KubernetesError          (the cluster refused a request or cannot be reached)
    │       ├── KubeconfigError      (+ FileNotFoundError) no kubeconfig, or no such context
    │       ├── ClusterUnreachable   (+ ConnectionError)
    │       ├── ClusterForbidden     (+ PermissionError) 401 / 403
    │       ├── ClusterNotFound      (+ LookupError) 404
    │       ├── ClusterConflict      409: another field manager, or a stale write
    │       ├── ClusterInvalid       (+ ValueError) 422
    │       └── RolloutFailed        progress deadline exceeded, paused, no such revision
    ├── PipelineError                (a pipeline cannot be declared, started or exported)
    │   ├── PipelineSpecError        (+ ValueError; ``line``/``column`` where known)
    │   ├── PipelineBusy             (another run holds the pipeline, policy 'refuse')
    │   └── PipelineRunNotFound      (+ LookupError)
    ├── NotebookFailed               (a headless notebook run stopped at a cell)
    ├── ThresholdBreached            (a monitoring run found drift or a metric past its limit)
    └── ArtifactError
        ├── ArtifactMissing          (+ FileNotFoundError)
        ├── IntegrityError
        ├── StorageError             (S3 bucket, credentials, endpoint)
        ├── FlavorError              (saving or loading a model object)
        └── DestinationExists        (+ FileExistsError)

Messages say what went wrong and what to do about it. Every error survives a pickle round
trip (multiprocessing, papermill error reports), extra attributes included.
"""

from __future__ import annotations

__all__ = [
    "AliasNotFound",
    "ArtifactError",
    "ArtifactMissing",
    "ClusterConflict",
    "ClusterForbidden",
    "ClusterInvalid",
    "ClusterNotFound",
    "ClusterUnreachable",
    "DeploymentConflict",
    "DeploymentError",
    "DeploymentNotFound",
    "DestinationExists",
    "DuplicateLabel",
    "FlavorError",
    "IntegrityError",
    "InvalidArgument",
    "InvalidMetric",
    "InvalidStage",
    "KubeconfigError",
    "KubernetesError",
    "MlopsError",
    "ModelNotFound",
    "NotAWorkspace",
    "NotFound",
    "NotebookFailed",
    "PipelineBusy",
    "PipelineError",
    "PipelineRunNotFound",
    "PipelineSpecError",
    "PromotionRefused",
    "RolloutFailed",
    "SchemaTooNew",
    "StorageError",
    "ThresholdBreached",
    "VersionNotFound",
    "WorkspaceBusy",
    "WorkspaceCorrupt",
    "WorkspaceError",
    "WorkspaceFull",
    "WorkspaceMissing",
]


class MlopsError(Exception):
    """Root of every error raised by mlops_nb."""


class WorkspaceError(MlopsError):
    """The workspace file cannot be used."""


class WorkspaceBusy(WorkspaceError, TimeoutError):
    """Another process held the workspace's write lock for longer than the busy timeout."""


class NotAWorkspace(WorkspaceError, ValueError):
    """The path is not a DuckDB database."""


class SchemaTooNew(WorkspaceError):
    """The workspace was written by a newer mlops_nb than this one."""


class WorkspaceMissing(WorkspaceError, FileNotFoundError):
    """The workspace file does not exist (a typo, or it was deleted while open)."""


class WorkspaceCorrupt(WorkspaceError):
    """The workspace file is damaged or truncated; restore it from a backup."""


class WorkspaceFull(WorkspaceError):
    """A write failed because the disk (or a file-size limit) is full; nothing was kept."""


class NotFound(MlopsError, LookupError):
    """A named thing does not exist."""


class ModelNotFound(NotFound):
    """No model of that name is registered."""


class VersionNotFound(NotFound):
    """The model has no version matching the reference."""


class AliasNotFound(NotFound):
    """The model has no such alias."""


class InvalidArgument(MlopsError, ValueError):
    """An argument has the wrong type or value."""


class InvalidStage(InvalidArgument):
    """Not one of the lifecycle stages, or a transition that needs an opt-in."""


class InvalidMetric(InvalidArgument):
    """A metric that is not a finite number, or a malformed metric condition."""


class DuplicateLabel(InvalidArgument):
    """The semantic-version label or alias is already taken within the model."""


class PromotionRefused(MlopsError):
    """A policy rule (or a role the policy names) was not met; ``rule`` names it.

    Not a ``PermissionError``: that is an ``OSError``, which callers treat as a file or
    network problem and retry.

    >>> import pickle
    >>> e = pickle.loads(pickle.dumps(PromotionRefused("no reason given", "require_reason")))
    >>> (str(e), e.rule)
    ('no reason given', 'require_reason')
    """

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule

    def __reduce__(self) -> tuple[type[PromotionRefused], tuple[str, str]]:
        return type(self), (str(self), self.rule)


class DeploymentError(MlopsError):
    """A deployment cannot start, change or be reached."""


class DeploymentNotFound(DeploymentError, LookupError):
    """No deployment of that name in the workspace."""


class KubernetesError(DeploymentError):
    """The Kubernetes API refused a request or cannot be reached.

    ``status`` is the HTTP status (None when there was no answer); ``applied`` names the
    objects of a multi-object apply that exist on the cluster, ``pending`` those that do not.
    """

    def __init__(self, message: str, *, status: int | None = None,
                 applied: tuple[str, ...] = (), pending: tuple[str, ...] = ()) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.applied = applied
        self.pending = pending


class KubeconfigError(KubernetesError, FileNotFoundError):
    """No kubeconfig to read, or it has no such context."""


class ClusterUnreachable(KubernetesError, ConnectionError):
    """The API server does not answer."""


class ClusterForbidden(KubernetesError, PermissionError):
    """The API server refused the credentials (401) or the permission (403)."""


class ClusterNotFound(KubernetesError, LookupError):
    """The object, its namespace or its kind does not exist on the cluster (404)."""


class ClusterConflict(KubernetesError):
    """409: another field manager owns a field (``manager``, ``field``), or a stale write."""

    def __init__(self, message: str, *, manager: str | None = None, field: str | None = None,
                 **kwargs: object) -> None:  # fmt: skip
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.manager = manager
        self.field = field


class ClusterInvalid(KubernetesError, ValueError):
    """422: the API server found an object invalid."""


class RolloutFailed(KubernetesError):
    """A rollout cannot go on: progress deadline exceeded, paused, or no such revision."""


class DeploymentConflict(DeploymentError):
    """Another writer changed the deployment (its generation) first; nothing was applied."""


class PipelineError(MlopsError):
    """A pipeline cannot be declared, started, run or exported."""


class PipelineSpecError(PipelineError, ValueError):
    """A pipeline declaration is invalid; ``line`` and ``column`` (1-based) where known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class PipelineBusy(PipelineError):
    """Another run of the pipeline is in progress and its concurrency policy is 'refuse'."""


class PipelineRunNotFound(PipelineError, LookupError):
    """No pipeline run with that id in the workspace."""


class NotebookFailed(MlopsError):
    """A headless notebook run stopped at a cell that raised; its outputs were still written.

    ``ename`` and ``evalue`` are the cell's exception type and message."""

    def __init__(self, message: str, ename: str = "", evalue: str = "") -> None:
        super().__init__(message)
        self.ename = ename
        self.evalue = evalue


class ThresholdBreached(MlopsError):
    """A monitoring run found drift or a metric past its threshold; the message names each.

    ``mlops-nb monitor`` exits 1 when its notebook raises this (any other failure exits 2),
    so a scheduler tells a breach from a crash.
    """


class ArtifactError(MlopsError):
    """Storing or fetching artifact files failed."""


class ArtifactMissing(ArtifactError, FileNotFoundError):
    """An artifact file or a path given to register does not exist."""


class IntegrityError(ArtifactError):
    """An artifact's bytes do not match the digest recorded in the registry."""


class StorageError(ArtifactError):
    """The artifact store refused the operation (bucket, credentials, endpoint)."""


class FlavorError(ArtifactError):
    """A model object could not be saved or loaded by its flavor."""


class DestinationExists(ArtifactError, FileExistsError):
    """A download target exists and is not a folder the files can go into."""
