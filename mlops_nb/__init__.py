"""mlops_nb: register, promote, deploy and monitor models from notebook cells.

>>> import mlops_nb as mnb
>>> ws = mnb.open(":memory:")
>>> ws.model("churn")
<Model churn>
"""

from .deploy.strategies import ABTest, BlueGreen, Canary, Guard, Rolling
from .errors import (
    AliasNotFound,
    ArtifactError,
    ArtifactMissing,
    ClusterConflict,
    ClusterForbidden,
    ClusterInvalid,
    ClusterNotFound,
    ClusterUnreachable,
    DeploymentError,
    DeploymentNotFound,
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
    NotFound,
    PromotionRefused,
    RolloutFailed,
    SchemaTooNew,
    StorageError,
    VersionNotFound,
    WorkspaceBusy,
    WorkspaceError,
)
from .events import Event
from .monitor.windows import Window
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
    "DeploymentError",
    "DeploymentNotFound",
    "DriftReport",
    "DuplicateLabel",
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
    "MlopsError",
    "Model",
    "ModelNotFound",
    "ModelVersion",
    "Monitor",
    "NotAWorkspace",
    "NotFound",
    "Policy",
    "PromotionRefused",
    "Rolling",
    "RolloutFailed",
    "SchemaTooNew",
    "StorageError",
    "VersionNotFound",
    "Window",
    "Workspace",
    "WorkspaceBusy",
    "WorkspaceError",
    "__version__",
    "open",
]

# Heavier parts (scipy for drift, the deployment machinery) load on first use, so that
# `import mlops_nb` stays quick for model servers and the command line.
_LAZY = {
    "Deployment": "mlops_nb.deploy.core",
    "DriftReport": "mlops_nb.monitor.drift",
    "Kubernetes": "mlops_nb.kube",
    "Monitor": "mlops_nb.monitor.core",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlops_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
