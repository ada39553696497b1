"""mlops_nb: register, promote, deploy and monitor models from notebook cells.

>>> import mlops_nb as mnb
>>> ws = mnb.open(":memory:")
>>> ws.model("churn")
<Model churn>
"""

import typing as _typing

from .errors import (
    AliasNotFound,
    ArtifactError,
    ArtifactMissing,
    ClusterConflict,
    ClusterForbidden,
    ClusterInvalid,
    ClusterNotFound,
    ClusterUnreachable,
    DeploymentConflict,
    DeploymentError,
    DeploymentNotFound,
    DestinationExists,
    DuplicateLabel,
    FlavorError,
    IntegrityError,
    InvalidArgument,
    InvalidMetric,
    InvalidStage,
    KubeconfigError,
    KubernetesError,
    MlopsError,
    ModelNotFound,
    NotAWorkspace,
    NotebookFailed,
    NotFound,
    PipelineBusy,
    PipelineError,
    PipelineRunNotFound,
    PipelineSpecError,
    PromotionRefused,
    RolloutFailed,
    SchemaTooNew,
    StorageError,
    ThresholdBreached,
    VersionNotFound,
    WorkspaceBusy,
    WorkspaceCorrupt,
    WorkspaceError,
    WorkspaceFull,
    WorkspaceMissing,
)

if _typing.TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from .deploy.core import Deployment
    from .deploy.local import Local
    from .deploy.strategies import ABTest, BlueGreen, Canary, Guard, Rolling
    from .events import Event
    from .kube import Kubernetes
    from .monitor.core import Monitor
    from .monitor.drift import DriftReport
    from .monitor.windows import Window
    from .pipelines import Email, Pipeline, Stage, Webhook
    from .policy import STAGES, Policy
    from .registry import Model, ModelVersion
    from .workspace import Workspace, open

__version__ = "0.1.0"

__all__ = [
    "STAGES",
    "ABTest",
    "AliasNotFound",
    "ArtifactError",
    "ArtifactMissing",
    "BlueGreen",
    "Canary",
    "ClusterConflict",
    "ClusterForbidden",
    "ClusterInvalid",
    "ClusterNotFound",
    "ClusterUnreachable",
    "Deployment",
    "DeploymentConflict",
    "DeploymentError",
    "DeploymentNotFound",
    "DestinationExists",
    "DriftReport",
    "DuplicateLabel",
    "Email",
    "Event",
    "FlavorError",
    "Guard",
    "IntegrityError",
    "InvalidArgument",
    "InvalidMetric",
    "InvalidStage",
    "KubeconfigError",
    "Kubernetes",
    "KubernetesError",
    "Local",
    "MlopsError",
    "Model",
    "ModelNotFound",
    "ModelVersion",
    "Monitor",
    "NotAWorkspace",
    "NotFound",
    "NotebookFailed",
    "Pipeline",
    "PipelineBusy",
    "PipelineError",
    "PipelineRunNotFound",
    "PipelineSpecError",
    "Policy",
    "PromotionRefused",
    "Rolling",
    "RolloutFailed",
    "SchemaTooNew",
    "Stage",
    "StorageError",
    "ThresholdBreached",
    "VersionNotFound",
    "Webhook",
    "Window",
    "Workspace",
    "WorkspaceBusy",
    "WorkspaceCorrupt",
    "WorkspaceError",
    "WorkspaceFull",
    "WorkspaceMissing",
    "__version__",
    "open",
]

# Everything but the errors loads on first use (pandas, DuckDB, scipy take seconds), so
# that `import mlops_nb.deploy.router` and the command line start quickly.
_LAZY = {
    "ABTest": "mlops_nb.deploy.strategies",
    "BlueGreen": "mlops_nb.deploy.strategies",
    "Canary": "mlops_nb.deploy.strategies",
    "Guard": "mlops_nb.deploy.strategies",
    "Rolling": "mlops_nb.deploy.strategies",
    "Deployment": "mlops_nb.deploy.core",
    "Local": "mlops_nb.deploy.local",
    "DriftReport": "mlops_nb.monitor.drift",
    "Kubernetes": "mlops_nb.kube",
    "Monitor": "mlops_nb.monitor.core",
    "Event": "mlops_nb.events",
    "Window": "mlops_nb.monitor.windows",
    "STAGES": "mlops_nb.policy",
    "Policy": "mlops_nb.policy",
    "Model": "mlops_nb.registry",
    "ModelVersion": "mlops_nb.registry",
    "Workspace": "mlops_nb.workspace",
    "open": "mlops_nb.workspace",
    "Pipeline": "mlops_nb.pipelines",
    "Stage": "mlops_nb.pipelines",
    "Webhook": "mlops_nb.pipelines",
    "Email": "mlops_nb.pipelines",
}


def __getattr__(name: str) -> object:
    import importlib

    if name == "pipelines":
        return importlib.import_module("mlops_nb.pipelines")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlops_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"pipelines"})
