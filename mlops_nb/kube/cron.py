"""Scheduled monitoring notebooks on the cluster: a CronJob that runs ``mlops-nb monitor``.

The pod mounts the target's ``workspace_claim`` (a PersistentVolumeClaim holding the
workspace file) read-write and runs ``mlops-nb monitor --workspace <workspace_path>
--model <model> --notebook <notebook> --out <output> -p key value ...``, which executes
the notebook with papermill and uploads the executed copy and its HTML report to
``output`` (``s3://...``) under ``<model>/<start time>/``. A breach fails the Job (exit
1), as does any other failure (exit 2); ``concurrencyPolicy: Forbid`` keeps a slow run
from overlapping the next. The root filesystem is read-only: HOME and the Jupyter and
XDG folders papermill's kernel writes point into the ``/tmp`` emptyDir.

>>> cron_schedule("1h"), cron_schedule("15m"), cron_schedule("1d"), cron_schedule("0 6 * * 1")
('0 * * * *', '*/15 * * * *', '0 0 * * *', '0 6 * * 1')
"""

from __future__ import annotations

import json
import posixpath
import re
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


# Jupyter, IPython and matplotlib write state under HOME and XDG folders; the root
# filesystem is read-only, so every one of them points into the /tmp emptyDir.
WRITABLE_ENV = {
    "HOME": "/tmp", "TMPDIR": "/tmp", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter/runtime",
    "JUPYTER_DATA_DIR": "/tmp/jupyter/data", "JUPYTER_CONFIG_DIR": "/tmp/jupyter/config",
    "IPYTHONDIR": "/tmp/ipython", "MPLCONFIGDIR": "/tmp/matplotlib",
    "XDG_CACHE_HOME": "/tmp/.cache", "XDG_CONFIG_HOME": "/tmp/.config",
    "XDG_DATA_HOME": "/tmp/.local/share", "XDG_RUNTIME_DIR": "/tmp/runtime",
}  # fmt: skip


def monitor_args(notebook: str, target: Kubernetes, *, model: str, output: str,
                 parameters: dict[str, Any] | None = None) -> list[str]:  # fmt: skip
    """The ``mlops-nb`` arguments the CronJob's container runs.

    >>> from mlops_nb.kube import Kubernetes
    >>> k8s = Kubernetes(workspace_claim="mlops-ws")
    >>> " ".join(monitor_args("nb.ipynb", k8s, model="iris", output="s3://b/runs",
    ...                       parameters={"current": "last 6h", "max_error_rate": 0.01}))
    'monitor --workspace /workspace/mlops.duckdb --model iris --notebook nb.ipynb --out s3://b/runs -p current last 6h -p max_error_rate 0.01'
    """
    taken = {"workspace", "model"} & set(parameters or {})
    if taken:
        raise InvalidArgument(f"parameters {sorted(taken)} are set by the schedule (model= and "
                              "the target's workspace_path); remove them")  # fmt: skip
    args = ["monitor", "--workspace", target.workspace_path, "--model", model,
            "--notebook", notebook, "--out", output]  # fmt: skip
    for key, value in sorted((parameters or {}).items()):
        args += ["-p", str(key), value if isinstance(value, str) else json.dumps(value)]
    return args


def cronjob(notebook: str, target: Kubernetes, *, model: str, every: str = "1h",
            output: str | None = None, name: str | None = None,
            parameters: dict[str, Any] | None = None, starting_deadline_s: int = 600,
            backoff_limit: int = 2) -> dict[str, Any]:  # fmt: skip
    """The CronJob monitoring ``model`` with ``notebook`` (a path in the image or
    ``s3://...``) every ``every``; needs the target's ``workspace_claim``."""
    if not target.workspace_claim:
        raise InvalidArgument(
            "scheduled monitoring needs the workspace in the pod: set "
            "mnb.Kubernetes(workspace_claim='<PersistentVolumeClaim holding the workspace>', "
            "workspace_path='/workspace/mlops.duckdb')"
        )
    out = output or (f"{target.spool.rstrip('/')}/runs" if target.spool else None)
    if not out:
        raise InvalidArgument(
            "say where executed notebooks go: output='s3://bucket/runs' (or set spool=)"
        )
    if not out.startswith("s3://"):
        raise InvalidArgument(f"output must be s3://bucket/prefix (a pod's own files go with "
                              f"it), got {out!r}")  # fmt: skip
    stem = notebook.rsplit("/", 1)[-1].removesuffix(".ipynb")
    job = name or n.k8s_name(f"monitor-{model}-{stem}", 52)
    labels = {n.MANAGED_BY: "mlops-nb", "mlops-nb/schedule": job}
    env = [{"name": k, "value": v} for k, v in WRITABLE_ENV.items()]
    container: dict[str, Any] = {
        "name": "monitor", "image": target.image, "imagePullPolicy": "IfNotPresent",
        "command": ["mlops-nb"],
        "args": monitor_args(notebook, target, model=model, output=out, parameters=parameters),
        "env": env, "resources": m._resources(target.resources),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": m.UID, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "workspace", "mountPath": posixpath.dirname(target.workspace_path)}],
    }  # fmt: skip
    if target.s3_secret:
        container["envFrom"] = [{"secretRef": {"name": target.s3_secret}}]
    volumes = [{"name": "tmp", "emptyDir": {}},
               {"name": "workspace", "persistentVolumeClaim": {"claimName": target.workspace_claim}}]  # fmt: skip
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container], "volumes": volumes,
                           "securityContext": {"runAsNonRoot": True, "runAsUser": m.UID,
                                               "runAsGroup": m.UID, "fsGroup": m.UID,
                                               "seccompProfile": {"type": "RuntimeDefault"}}}  # fmt: skip
    if target.service_account:
        pod["serviceAccountName"] = target.service_account
    annotations = {"mlops-nb/notebook": notebook, "mlops-nb/model": model, "mlops-nb/output": out}
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": job, "namespace": target.namespace, "labels": labels,
                         "annotations": annotations},
            "spec": {"schedule": cron_schedule(every), "concurrencyPolicy": "Forbid",
                     "startingDeadlineSeconds": starting_deadline_s, "successfulJobsHistoryLimit": 3,
                     "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"metadata": {"labels": labels},
                                     "spec": {"backoffLimit": backoff_limit, "activeDeadlineSeconds": 3600,
                                              "template": {"metadata": {"labels": labels}, "spec": pod}}}}}  # fmt: skip


def schedule(notebook: str, target: Kubernetes, *, model: str, every: str = "1h",
             dry_run: bool = False, **options: Any) -> dict[str, Any]:  # fmt: skip
    """Apply :func:`cronjob` to the target's cluster; returns the CronJob as stored."""
    obj = cronjob(notebook, target, model=model, every=every, **options)
    return target.cluster().apply([obj], dry_run=dry_run)[0]
