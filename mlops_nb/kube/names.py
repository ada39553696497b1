"""Names, labels and annotations the Kubernetes target puts on what it creates.

>>> k8s_name("Churn_Model v2")
'churn-model-v2'
>>> selector({"a": "1", "b": "x"})
'a=1,b=x'
"""

from __future__ import annotations

import hashlib
import re

from ..errors import InvalidArgument

MANAGED_BY = "app.kubernetes.io/managed-by"
NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
VERSION_LABEL = "app.kubernetes.io/version"
DEPLOYMENT = "mlops-nb/deployment"
REVISION = "mlops-nb/revision"
ROLE = "mlops-nb/role"
MODEL_ANN = "mlops-nb/model"
VERSION_ANN = "mlops-nb/version"
DIGEST_ANN = "mlops-nb/digest"
WORKSPACE_ANN = "mlops-nb/workspace"
ARTIFACT_ANN = "mlops-nb/artifact-uri"
PORT = 8080


def k8s_name(text: str, limit: int = 50) -> str:
    """A DNS-1123 label from any model or deployment name (a hash keeps long ones unique)."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not out:
        raise InvalidArgument(f"{text!r} has no letter or digit to make a Kubernetes name from")
    if len(out) > limit:
        out = out[: limit - 9].rstrip("-") + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return out


def common(deployment: str) -> dict[str, str]:
    """Labels on every object of a deployment: what ``stop()`` deletes by."""
    return {MANAGED_BY: "mlops-nb", INSTANCE: deployment, DEPLOYMENT: deployment}


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
