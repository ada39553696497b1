"""Scheduled monitoring notebooks on the cluster: a CronJob that runs papermill.

The executed notebook goes to ``output`` (``s3://...``), one file per run named by its
start time; ``concurrencyPolicy: Forbid`` keeps a slow run from overlapping the next.

>>> cron_schedule("1h"), cron_schedule("15m"), cron_schedule("1d"), cron_schedule("0 6 * * 1")
('0 * * * *', '*/15 * * * *', '0 0 * * *', '0 6 * * 1')
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from . import manifests as m
from . import names as n

if TYPE_CHECKING:
    from .target import Kubernetes


def cron_schedule(every: str) -> str:
    """A cron expression from ``"15m"``, ``"1h"``, ``"6h"``, ``"1d"`` (or a cron expression)."""
    if len(every.split()) == 5:
        return every
    match = re.fullmatch(r"(\d+)\s*([mhd])", every.strip())
    if not match or int(match.group(1)) < 1:
        raise InvalidArgument(
            f"every must look like '15m', '1h', '1d' or a cron expression, got {every!r}"
        )
    k, unit = int(match.group(1)), match.group(2)
    limit = {"m": 60, "h": 24, "d": 31}[unit]
    if (unit != "d" and limit % k) or k > limit:
        raise InvalidArgument(f"every={every!r} does not divide the {'hour' if unit == 'm' else 'day'}; "
                              "use a cron expression instead")  # fmt: skip
    step = "*" if k == 1 else f"*/{k}"
    return {"m": f"{step} * * * *", "h": f"0 {step} * * *", "d": f"0 0 {step} * *"}[unit]


def cronjob(notebook: str, target: Kubernetes, *, every: str = "1h", output: str | None = None,
            name: str | None = None, parameters: dict[str, Any] | None = None,
            starting_deadline_s: int = 600, backoff_limit: int = 2) -> dict[str, Any]:  # fmt: skip
    """The CronJob running ``notebook`` (a path in the image or ``s3://...``) every ``every``."""
    out = output or (f"{target.spool.rstrip('/')}/runs" if target.spool else None)
    if not out:
        raise InvalidArgument(
            "say where executed notebooks go: output='s3://bucket/runs' (or set spool=)"
        )
    job = name or n.k8s_name("monitor-" + notebook.rsplit("/", 1)[-1].removesuffix(".ipynb"), 52)
    params = " ".join(
        f"-p {shlex.quote(str(k))} {shlex.quote(str(v))}"
        for k, v in sorted((parameters or {}).items())
    )
    script = (f'exec papermill --log-output {shlex.quote(notebook)} '
              f'"{out.rstrip("/")}/{job}/$(date -u +%Y%m%dT%H%M%SZ).ipynb" {params}').strip()  # fmt: skip
    labels = {n.MANAGED_BY: "mlops-nb", "mlops-nb/schedule": job}
    container: dict[str, Any] = {
        "name": "monitor", "image": target.image, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script], "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": m._resources(target.resources),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": m.UID, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }  # fmt: skip
    if target.s3_secret:
        container["envFrom"] = [{"secretRef": {"name": target.s3_secret}}]
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container],
                           "volumes": [{"name": "tmp", "emptyDir": {}}],
                           "securityContext": {"runAsNonRoot": True, "runAsUser": m.UID,
                                               "seccompProfile": {"type": "RuntimeDefault"}}}  # fmt: skip
    if target.service_account:
        pod["serviceAccountName"] = target.service_account
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": job, "namespace": target.namespace, "labels": labels,
                         "annotations": {"mlops-nb/notebook": notebook, "mlops-nb/output": out}},
            "spec": {"schedule": cron_schedule(every), "concurrencyPolicy": "Forbid",
                     "startingDeadlineSeconds": starting_deadline_s, "successfulJobsHistoryLimit": 3,
                     "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"metadata": {"labels": labels},
                                     "spec": {"backoffLimit": backoff_limit, "activeDeadlineSeconds": 3600,
                                              "template": {"metadata": {"labels": labels}, "spec": pod}}}}}  # fmt: skip


def schedule(notebook: str, target: Kubernetes, *, every: str = "1h", dry_run: bool = False,
             **options: Any) -> dict[str, Any]:  # fmt: skip
    """Apply :func:`cronjob` to the target's cluster; returns the CronJob as stored."""
    obj = cronjob(notebook, target, every=every, **options)
    return target.cluster().apply([obj], dry_run=dry_run)[0]
