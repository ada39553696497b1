"""Kubernetes: manifests, apply/status/undo through the official client, an API emulator.

>>> from mlops_nb.kube import Kubernetes
>>> Kubernetes(namespace="ml").kind
'kubernetes'
"""

from .backend import KubernetesBackend, Undo
from .cron import cronjob, schedule
from .plan import Plan
from .status import RolloutStatus, rollout_status
from .target import TRAFFIC, Kubernetes

__all__ = [
    "TRAFFIC",
    "Kubernetes",
    "KubernetesBackend",
    "Plan",
    "RolloutStatus",
    "Undo",
    "cronjob",
    "rollout_status",
    "schedule",
]
