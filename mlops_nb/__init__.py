"""mlops_nb: register, promote, deploy and monitor models from notebook cells.

>>> import mlops_nb as mnb
>>> ws = mnb.open(":memory:")
>>> ws.model("churn")
<Model churn>
"""

from .errors import (
    AliasNotFound,
    ArtifactError,
    ArtifactMissing,
    DuplicateLabel,
    FlavorError,
    IntegrityError,
    InvalidArgument,
    InvalidMetric,
    InvalidStage,
    MlopsError,
    ModelNotFound,
    NotAWorkspace,
    NotFound,
    PromotionRefused,
    SchemaTooNew,
    StorageError,
    VersionNotFound,
    WorkspaceBusy,
    WorkspaceError,
)
from .events import Event
from .monitor.core import Monitor
from .monitor.drift import DriftReport
from .monitor.windows import Window
from .policy import STAGES, Policy
from .registry import Model, ModelVersion
from .workspace import Workspace, open

__version__ = "0.1.0"

__all__ = [
    "STAGES",
    "AliasNotFound",
    "ArtifactError",
    "ArtifactMissing",
    "DriftReport",
    "DuplicateLabel",
    "Event",
    "FlavorError",
    "IntegrityError",
    "InvalidArgument",
    "InvalidMetric",
    "InvalidStage",
    "MlopsError",
    "Model",
    "ModelNotFound",
    "ModelVersion",
    "Monitor",
    "NotAWorkspace",
    "NotFound",
    "Policy",
    "PromotionRefused",
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
