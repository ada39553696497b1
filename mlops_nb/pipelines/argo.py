"""Past one machine: the pipeline as an Argo ``Workflow`` or ``CronWorkflow``.

Each stage becomes a container template (its script run from ``code_dir`` in ``image``,
which must contain the pipeline's files) with ``activeDeadlineSeconds`` from its timeout
and a ``retryStrategy`` from its retries and backoff; a ``main`` DAG template wires them by
their dependencies. Params become workflow parameters (passed to the stage as
``MLOPS_NB_PARAM_<NAME>`` and ``MLOPS_NB_PARAMS``, as in local runs); each stage's working
folder is an output artifact (on S3 when ``s3=`` is given, else in the cluster's default
artifact repository) and an input artifact of its dependents at ``/work/inputs/<stage>``.
``MLOPS_NB_PARAMS`` comes from one more workflow parameter, ``mlops-nb-params``: the params
as JSON, encoded here so that no value can break it (Argo substitutes text as it is).
Overriding a param at submit time means setting both (``-p data=x -p
mlops-nb-params='{"data": "x"}'``). ``retry_on`` maps to a ``retryStrategy`` expression:
a timeout is an attempt whose message names its deadline.

>>> import mlops_nb as mnb
>>> p = mnb.Pipeline(name="nightly", stages=[mnb.Stage("a", script="echo hi", retry_count=2)])
>>> wf = p.to_argo(params={"data": "2026-11"})
>>> wf["kind"], wf["spec"]["templates"][1]["retryStrategy"]["limit"]
('Workflow', '2')
>>> p.to_argo_cron("0 * * * *")["spec"]["schedules"]
['0 * * * *']
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from ..errors import PipelineError
from .stage import Stage

if TYPE_CHECKING:
    from .pipeline import Pipeline

API_VERSION = "argoproj.io/v1alpha1"
WORK, INPUTS = "/work/out", "/work/inputs"
_POLICY = {
    "allow": "Allow",
    "wait": "Forbid",
    "skip": "Forbid",
    "forbid": "Forbid",
    "refuse": "Forbid",
}


PARAMS = "mlops-nb-params"
# Argo's node message when a template's activeDeadlineSeconds passes ("Pod was active on
# the node longer than the specified deadline", or "Step exceeded its deadline").
_DEADLINE = "lastRetry.message matches 'deadline'"


def _param(name: str) -> str:
    return "{{workflow.parameters." + name + "}}"


def _retry_expression(conditions: Sequence[str | int]) -> str | None:
    """An expression retrying just what ``retry_on`` accepts; None when it accepts all.

    >>> _retry_expression(["timeout"])
    "lastRetry.message matches 'deadline'"
    >>> _retry_expression([75])
    "!(lastRetry.message matches 'deadline') && asInt(lastRetry.exitCode) in [75]"
    """
    error, timeout = "error" in conditions, "timeout" in conditions
    if error and timeout:
        return None
    if error:
        return f"!({_DEADLINE})"
    codes = [c for c in conditions if isinstance(c, int)]
    failures = f"!({_DEADLINE}) && asInt(lastRetry.exitCode) in {codes}" if codes else None
    if timeout:
        return f"{_DEADLINE} || ({failures})" if failures else _DEADLINE
    return failures or "false"


def _command(stage: Stage, code: str, params: Mapping[str, Any]) -> list[str]:
    if stage.fn is not None:
        raise PipelineError(
            f"stage {stage.name!r} is a Python callable, which a container cannot run; "
            "give it a script= (a .py file in the image) to export the pipeline"
        )
    file = str(PurePosixPath(code) / stage.file) if stage.file else None
    if stage.kind == "notebook":
        assert file is not None
        out = f"{WORK}/{PurePosixPath(file).name}"
        args = ["papermill", file, out, "--cwd", str(PurePosixPath(file).parent)]
        for k in params:
            args += ["-p", k, _param(k)]
        if stage.parameters:
            args += ["-y", json.dumps(dict(stage.parameters))]
        return args
    assert stage.script is not None
    if file is None:
        return ["sh", "-c", stage.script]
    return ["python" if stage.kind == "python" else "bash", file, *shlex.split(stage.script)[1:]]


def _template(p: Pipeline, stage: Stage, image: str, code: str, params: Mapping[str, Any],
              s3: Mapping[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    env = {**p.environment_variables, **stage.env}
    values = [{"name": k, "value": v} for k, v in env.items()]
    values += [{"name": f"MLOPS_NB_PARAM_{k.upper()}", "value": _param(k)} for k in params]
    values += [
        {"name": "MLOPS_NB_PARAMS", "value": _param(PARAMS) if params else "{}"},
        {"name": "MLOPS_NB_PIPELINE_RUN", "value": "{{workflow.name}}"},
        {"name": "MLOPS_NB_PIPELINE", "value": p.name},
        {"name": "MLOPS_NB_STAGE", "value": stage.name},
        {"name": "MLOPS_NB_OUTPUT_DIR", "value": WORK},
        {"name": "MLOPS_NB_INPUTS_DIR", "value": INPUTS},
    ]
    output: dict[str, Any] = {"name": "outputs", "path": WORK, "optional": True}
    if s3:
        prefix = str(s3.get("key_prefix", "mlops-nb")).strip("/")
        location = {k: v for k, v in s3.items() if k != "key_prefix"}
        output["s3"] = {
            **location,
            "key": f"{prefix}/{p.name}/{{{{workflow.name}}}}/{stage.name}.tgz",
        }
    template: dict[str, Any] = {
        "name": stage.name,
        "container": {
            "image": stage.image or image,
            "command": _command(stage, code, params),
            "workingDir": WORK,
            "env": values,
        },
        "outputs": {"artifacts": [output]},
    }
    if stage.dependencies:
        template["inputs"] = {"artifacts": [{"name": d, "path": f"{INPUTS}/{d}", "optional": True}
                                            for d in stage.dependencies]}  # fmt: skip
    if stage.timeout_seconds is not None:
        # An IntOrString in Argo; its schema types it as a string.
        template["activeDeadlineSeconds"] = str(max(1, math.ceil(stage.timeout_seconds)))
    if stage.retry_count:
        # A callable cannot run in Argo's controller: every failure is retried there.
        conditions = stage.retry_on if not callable(stage.retry_on) else ("error", "timeout")
        strategy: dict[str, Any] = {
            "limit": str(stage.retry_count),
            "retryPolicy": "Always",
            "backoff": {"duration": f"{stage.retry_backoff:g}s", "factor": "2",
                        "cap": f"{stage.retry_backoff_max:g}s"},
        }  # fmt: skip
        expression = _retry_expression(tuple(conditions))
        if expression is not None:
            strategy["expression"] = expression
        template["retryStrategy"] = strategy
    return template


def _spec(p: Pipeline, *, params: Mapping[str, Any] | None, image: str, code_dir: str,
          s3: Mapping[str, Any] | None, service_account: str | None) -> dict[str, Any]:  # fmt: skip
    values = {**p.params, **(params or {})}
    tasks = []
    for s in p.stages:
        task: dict[str, Any] = {"name": s.name, "template": s.name}
        if s.dependencies:
            task["dependencies"] = list(s.dependencies)
            task["arguments"] = {"artifacts": [
                {"name": d, "from": f"{{{{tasks.{d}.outputs.artifacts.outputs}}}}"} for d in s.dependencies
            ]}  # fmt: skip
        tasks.append(task)
    spec: dict[str, Any] = {
        "entrypoint": "main",
        "templates": [{"name": "main", "dag": {"tasks": tasks}}]
        + [_template(p, s, image, code_dir, values, s3) for s in p.stages],
    }
    if PARAMS in values:
        raise PipelineError(f"{PARAMS!r} is the parameter that carries every param: rename yours")
    if values:
        spec["arguments"] = {"parameters": [
            {"name": k, "value": v if isinstance(v, str) else json.dumps(v)} for k, v in values.items()
        ] + [{"name": PARAMS, "value": json.dumps(values)}]}  # fmt: skip
    if service_account:
        spec["serviceAccountName"] = service_account
    return spec


def _metadata(p: Pipeline, namespace: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "generateName": f"{p.name.lower().replace('_', '-')}-",
        "labels": {"app.kubernetes.io/managed-by": "mlops-nb", "mlops-nb/pipeline": p.name.replace("_", "-")},
    }  # fmt: skip
    if namespace:
        meta["namespace"] = namespace
    return meta


def workflow(p: Pipeline, *, params: Mapping[str, Any] | None = None, image: str = "python:3.11-slim",
             code_dir: str = "/app", s3: Mapping[str, Any] | None = None,
             namespace: str | None = None, service_account: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The Workflow manifest. ``s3`` is an Argo S3 location (``bucket``, ``endpoint``,
    ``accessKeySecret`` ...) plus ``key_prefix``."""
    spec = _spec(
        p, params=params, image=image, code_dir=code_dir, s3=s3, service_account=service_account
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": _metadata(p, namespace),
        "spec": spec,
    }


def cron_workflow(
    p: Pipeline, schedule: str, *, timezone: str | None = None, **options: Any
) -> dict[str, Any]:
    """A CronWorkflow running the Workflow on ``schedule`` (cron syntax); the pipeline's
    concurrency policy maps to ``concurrencyPolicy`` (Allow, or Forbid for the others)."""
    if not isinstance(schedule, str) or (
        len(schedule.split()) not in (5, 6) and not schedule.startswith("@")
    ):
        raise PipelineError(
            f"schedule must be a cron expression such as '0 * * * *', got {schedule!r}"
        )
    wf = workflow(p, **options)
    meta = wf["metadata"]
    name = meta.pop("generateName").rstrip("-")
    spec: dict[str, Any] = {
        "schedules": [schedule],
        "concurrencyPolicy": _POLICY[p.concurrency],
        "workflowSpec": wf["spec"],
    }
    if timezone:
        spec["timezone"] = timezone
    return {
        "apiVersion": API_VERSION,
        "kind": "CronWorkflow",
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


def _api_client(target: Any) -> Any:
    from kubernetes import client, config

    if isinstance(target, client.ApiClient):
        return target
    context = None
    if target is not None and hasattr(target, "api_client"):
        found = target.api_client
        if found is not None:
            return found() if callable(found) else found
        # A Kubernetes target without a client of its own: its kubeconfig and context.
        target, context = getattr(target, "kubeconfig", None), getattr(target, "context", None)
    try:
        return config.new_client_from_config(config_file=target, context=context)
    except config.ConfigException as e:
        raise PipelineError(f"no Kubernetes configuration ({e}); pass target= an ApiClient, a "
                            "kubeconfig path, or set KUBECONFIG") from e  # fmt: skip


def _namespace(target: Any, namespace: str | None) -> str:
    """The namespace given, else the target's (a Kubernetes target has one), else default."""
    if namespace is not None:
        return namespace
    own = getattr(target, "namespace", None)
    return own if isinstance(own, str) and own else "default"


def submit(p: Pipeline, target: Any = None, *, namespace: str | None = None,
           schedule: str | None = None, **options: Any) -> dict[str, Any]:  # fmt: skip
    """Create the Workflow (or, with ``schedule``, the CronWorkflow) through the official
    client's CustomObjectsApi; ``target`` is an ApiClient, an object with an ``api_client``
    (such as a Kubernetes target), or a kubeconfig path (None: the default kubeconfig).
    It goes to ``namespace``, else the target's namespace (``mnb.Kubernetes(namespace=)``),
    else ``default``. Returns the created object as the API server answered it."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    namespace = _namespace(target, namespace)
    body = cron_workflow(p, schedule, **options) if schedule else workflow(p, **options)
    plural = "cronworkflows" if schedule else "workflows"
    api = client.CustomObjectsApi(_api_client(target))
    try:
        created: dict[str, Any] = api.create_namespaced_custom_object(
            "argoproj.io", "v1alpha1", namespace, plural, body
        )
    except ApiException as e:
        hint = " (is Argo Workflows installed? its CRDs must exist)" if e.status == 404 else ""
        raise PipelineError(
            f"the API server refused the {body['kind']}: {e.status} {e.reason}{hint}"
        ) from e
    return created
