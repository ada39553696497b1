"""Argo Workflow / CronWorkflow manifests, validated against Argo's own JSON schema.

``submit`` goes through the official kubernetes client's CustomObjectsApi over HTTP to a
small stand-in API server on 127.0.0.1 that records the request: it checks the client call
(path, verb, body), not Argo's controller, which cannot run here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import mlops_nb as mnb

from .conftest import write

SCHEMA = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "schemas" / "argo-workflows.schema.json"
)
PREFIX = "io.argoproj.workflow.v1alpha1."


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].split("/")[-1]]
    return node


def _unknown_fields(
    schema: dict[str, Any], node: dict[str, Any], value: Any, path: str
) -> list[str]:
    """Fields the schema does not declare (its additionalProperties is open)."""
    node = _resolve(schema, node)
    found: list[str] = []
    if isinstance(value, dict) and "properties" in node:
        for k, v in value.items():
            if k not in node["properties"]:
                found.append(f"{path}.{k}")
            else:
                found += _unknown_fields(schema, node["properties"][k], v, f"{path}.{k}")
    elif isinstance(value, list) and "items" in node:
        for i, v in enumerate(value):
            found += _unknown_fields(schema, node["items"], v, f"{path}[{i}]")
    return found


def validate(schema: dict[str, Any], manifest: dict[str, Any]) -> None:
    kind = manifest["kind"]
    root = {"$ref": f"#/definitions/{PREFIX}{kind}", "definitions": schema["definitions"]}
    jsonschema.Draft202012Validator(root).validate(manifest)
    assert _unknown_fields(schema, root, manifest, kind) == []


@pytest.fixture
def pipeline(project: Path) -> mnb.Pipeline:
    write(project, "validate.py", "print(1)\n")
    write(project, "train.py", "print(1)\n")
    write(
        project,
        "report.ipynb",
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
    )
    return mnb.Pipeline(name="iris_training", base_dir=project, concurrency="skip",
                        environment_variables={"MODEL_NAME": "iris"}, params={"data": "2026-11"},
                        stages=[
        mnb.Stage("validate", script="validate.py --strict", timeout_minutes=0.5),
        mnb.Stage("train", script="train.py", dependencies=["validate"], retry_count=3,
                  retry_backoff=5, retry_backoff_max=120, environment="ghcr.io/acme/train:1.2",
                  timeout_minutes=30),
        mnb.Stage("flaky", script="sh -c 'exit 75'", retry_count=2, retry_on=[75]),
        mnb.Stage("report", notebook="report.ipynb", parameters={"top": 5},
                  dependencies=["train", "validate"]),
    ])  # fmt: skip


def test_workflow_manifest(schema: dict[str, Any], pipeline: mnb.Pipeline) -> None:
    s3 = {"bucket": "ml-artifacts", "endpoint": "minio:9000", "insecure": True, "key_prefix": "runs",
          "accessKeySecret": {"name": "s3", "key": "access"},
          "secretKeySecret": {"name": "s3", "key": "secret"}}  # fmt: skip
    wf = pipeline.to_argo(
        s3=s3, namespace="ml", service_account="runner", params={"data": "2026-12"}
    )
    validate(schema, wf)
    spec = wf["spec"]
    assert (
        wf["metadata"]["generateName"] == "iris-training-" and wf["metadata"]["namespace"] == "ml"
    )
    assert spec["arguments"]["parameters"] == [
        {"name": "data", "value": "2026-12"},
        {"name": "mlops-nb-params", "value": '{"data": "2026-12"}'},
    ]
    tasks = {t["name"]: t for t in spec["templates"][0]["dag"]["tasks"]}
    assert tasks["report"]["dependencies"] == ["train", "validate"]
    assert tasks["report"]["arguments"]["artifacts"][0] == {
        "name": "train", "from": "{{tasks.train.outputs.artifacts.outputs}}"}  # fmt: skip
    t = {x["name"]: x for x in spec["templates"][1:]}
    assert t["validate"]["activeDeadlineSeconds"] == "30"
    assert t["validate"]["container"]["command"] == ["python", "/app/validate.py", "--strict"]
    assert t["train"]["container"]["image"] == "ghcr.io/acme/train:1.2"
    assert t["train"]["retryStrategy"] == {"limit": "3", "retryPolicy": "Always",
                                           "backoff": {"duration": "5s", "factor": "2", "cap": "120s"}}  # fmt: skip
    assert t["flaky"]["retryStrategy"]["expression"] == (
        "!(lastRetry.message matches 'deadline') && asInt(lastRetry.exitCode) in [75]"
    )
    assert t["report"]["container"]["command"][:3] == [
        "papermill",
        "/app/report.ipynb",
        "/work/out/report.ipynb",
    ]
    env = {e["name"]: e["value"] for e in t["train"]["container"]["env"]}
    assert (
        env["MODEL_NAME"] == "iris" and env["MLOPS_NB_PARAM_DATA"] == "{{workflow.parameters.data}}"
    )
    assert env["MLOPS_NB_PIPELINE_RUN"] == "{{workflow.name}}"
    out = t["train"]["outputs"]["artifacts"][0]
    assert out["s3"]["bucket"] == "ml-artifacts"
    assert out["s3"]["key"] == "runs/iris_training/{{workflow.name}}/train.tgz"


def _substitute(text: str, wf: dict[str, Any]) -> str:
    """Argo's simple tags, replaced by the text of their values (no escaping, as Argo does)."""
    given = {p["name"]: p["value"] for p in wf["spec"].get("arguments", {}).get("parameters", [])}
    text = text.replace("{{workflow.name}}", "nightly-x7k2p")
    return re.sub(r"\{\{workflow\.parameters\.([^}]+)\}\}", lambda m: given[m[1]], text)


def test_params_with_quotes_and_backslashes_reach_the_stage_intact(
    schema: dict[str, Any], tmp_path: Path
) -> None:
    params = {"query": 'say "hi" \\ C:\\data\\', "n": 3, "when": {"from": 'a"b'}}
    p = mnb.Pipeline(name="nightly", stages=[mnb.Stage("a", script="python -m a")])
    wf = p.to_argo(params=params)
    validate(schema, wf)
    (template,) = wf["spec"]["templates"][1:]
    env = {e["name"]: _substitute(e["value"], wf) for e in template["container"]["env"]}
    env["MLOPS_NB_OUTPUT_DIR"] = env["MLOPS_NB_INPUTS_DIR"] = str(tmp_path)
    # The stage reads its params as a stage in the container would: through context().
    code = (
        "import json; from mlops_nb.pipelines import context; print(json.dumps(context().params))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": os.getcwd(), **env})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == params
    assert env["MLOPS_NB_PARAM_QUERY"] == params["query"] and env["MLOPS_NB_PARAM_N"] == "3"
    with pytest.raises(mnb.PipelineError, match="rename yours"):
        p.to_argo(params={"mlops-nb-params": "x"})


@pytest.mark.parametrize(
    ("retry_on", "expression"),
    [
        (["timeout"], "lastRetry.message matches 'deadline'"),
        (["error"], "!(lastRetry.message matches 'deadline')"),
        (["error", "timeout"], None),
        (["timeout", 75], "lastRetry.message matches 'deadline' || "
         "(!(lastRetry.message matches 'deadline') && asInt(lastRetry.exitCode) in [75])"),
    ],
)  # fmt: skip
def test_retry_on_maps_to_what_argo_retries(
    schema: dict[str, Any], retry_on: list[str | int], expression: str | None
) -> None:
    stage = mnb.Stage("a", script="python -m a", retry_count=2, timeout_minutes=1,
                      retry_on=retry_on)  # fmt: skip
    wf = mnb.Pipeline(name="nightly", stages=[stage]).to_argo()
    validate(schema, wf)
    strategy = wf["spec"]["templates"][1]["retryStrategy"]
    assert strategy["retryPolicy"] == "Always" and strategy.get("expression") == expression


def test_cron_workflow_manifest(schema: dict[str, Any], pipeline: mnb.Pipeline) -> None:
    cron = pipeline.to_argo_cron("0 * * * *", timezone="Europe/Berlin")
    validate(schema, cron)
    assert cron["metadata"]["name"] == "iris-training"
    assert (
        cron["spec"]["schedules"] == ["0 * * * *"] and cron["spec"]["concurrencyPolicy"] == "Forbid"
    )
    assert cron["spec"]["workflowSpec"]["entrypoint"] == "main"
    with pytest.raises(mnb.PipelineError, match="cron expression"):
        pipeline.to_argo_cron("hourly")


def test_yaml_example_exports(schema: dict[str, Any]) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "iris" / "pipeline.yaml"
    validate(schema, mnb.Pipeline.from_yaml(example).to_argo())
    validate(schema, mnb.Pipeline.from_yaml(example).to_argo_cron("@daily"))


def test_callable_stages_cannot_be_exported() -> None:
    p = mnb.Pipeline(stages=[mnb.Stage("fn", fn=print)])
    with pytest.raises(mnb.PipelineError, match="give it a script="):
        p.to_argo()


class _Api:
    """Records what the kubernetes client sends; answers like an API server would."""

    def __init__(self, status: int = 201) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append(("POST", self.path, body))
                reply = dict(
                    body, metadata={**body["metadata"], "name": "iris-training-x7k2p", "uid": "1"}
                )
                if status != 201:
                    reply = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                             "reason": "NotFound", "message": "the server could not find the requested resource"}  # fmt: skip
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self) -> Any:
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        return client.ApiClient(config)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def api() -> Iterator[_Api]:
    a = _Api()
    yield a
    a.close()


def test_submit_creates_the_workflow_through_the_official_client(
    api: _Api, pipeline: mnb.Pipeline
) -> None:
    created = pipeline.submit(api.client(), namespace="ml")
    assert created["metadata"]["name"] == "iris-training-x7k2p"
    ((verb, path, body),) = api.requests
    assert (verb, path) == ("POST", "/apis/argoproj.io/v1alpha1/namespaces/ml/workflows")
    assert body == pipeline.to_argo()
    pipeline.submit(api.client(), namespace="ml", schedule="0 3 * * *")
    assert api.requests[1][1] == "/apis/argoproj.io/v1alpha1/namespaces/ml/cronworkflows"
    assert api.requests[1][2]["kind"] == "CronWorkflow"


def test_submit_reports_a_refusal(pipeline: mnb.Pipeline) -> None:
    refusing = _Api(status=404)
    try:
        with pytest.raises(mnb.PipelineError, match=r"404 Not Found.*Argo Workflows installed"):
            pipeline.submit(refusing.client())
    finally:
        refusing.close()
    with pytest.raises(mnb.PipelineError, match="no Kubernetes configuration"):
        pipeline.submit("/nonexistent/kubeconfig")


def test_submit_reaches_an_api_server_and_kubectl_reads_it_back(
    pipeline: mnb.Pipeline, tmp_path: Path
) -> None:
    """The local API emulator stands in for a cluster with Argo Workflows' CRDs (no
    workflow controller runs the pods here); kubectl, a real client, reads the objects."""
    import shutil
    import subprocess

    from mlops_nb.kube.emulator import Emulator

    kubectl = shutil.which("kubectl")
    with Emulator(namespaces=("default", "ml")) as emu:
        kubeconfig = emu.kubeconfig(tmp_path / "kubeconfig", namespace="ml")
        created = pipeline.submit(str(kubeconfig), namespace="ml")
        name = created["metadata"]["name"]
        assert name.startswith(pipeline.to_argo()["metadata"]["generateName"])
        assert created["spec"] == pipeline.to_argo()["spec"]
        cron = pipeline.submit(str(kubeconfig), namespace="ml", schedule="0 3 * * *")
        assert cron["kind"] == "CronWorkflow" and cron["spec"]["schedules"] == ["0 3 * * *"]
        if kubectl is None:
            pytest.skip("kubectl is not on PATH: the objects were created, not read back")
        got = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "get", "workflows", "-n", "ml", "-o", "json"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        (item,) = json.loads(got.stdout)["items"]
        assert item["metadata"]["name"] == name and item["spec"] == created["spec"]
        got = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "get", "cronworkflows", "-n", "ml", "-o",
             "jsonpath={.items[0].spec.schedules[0]}"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert got.stdout == "0 3 * * *"


def test_submit_to_a_kubernetes_target_uses_its_namespace(
    pipeline: mnb.Pipeline, tmp_path: Path
) -> None:
    """The target's namespace wins over the kubeconfig's (default) and an explicit one over
    both; the emulator lists what was created, namespace by namespace."""
    from kubernetes import client

    from mlops_nb.kube.emulator import Emulator

    with Emulator(namespaces=("default", "ml", "other")) as emu:
        kubeconfig = emu.kubeconfig(tmp_path / "kubeconfig")
        target = mnb.Kubernetes(namespace="ml", kubeconfig=str(kubeconfig))
        created = pipeline.submit(target)
        explicit = pipeline.submit(target, namespace="other")
        config = client.Configuration()
        config.host = emu.url
        read = client.CustomObjectsApi(client.ApiClient(config))

        def names(namespace: str) -> list[str]:
            found = read.list_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "workflows"
            )
            return [item["metadata"]["name"] for item in found["items"]]

        assert names("ml") == [created["metadata"]["name"]]
        assert names("other") == [explicit["metadata"]["name"]]
        assert names("default") == []
