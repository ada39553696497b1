"""Manifests, validated strictly against the Kubernetes schemas and the CRDs' own schemas."""

from __future__ import annotations

import dataclasses
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

import mlops_nb as mnb
from mlops_nb.kube import Kubernetes, cronjob
from mlops_nb.kube.backend import KubernetesBackend
from mlops_nb.kube.render import render

from .conftest import SCHEMAS

VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_FILES = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway-api-httproutes.crd.yaml",
    ("networking.istio.io/v1", "VirtualService"): "istio-virtualservice-destinationrule.crd.yaml",
    ("networking.istio.io/v1", "DestinationRule"): "istio-virtualservice-destinationrule.crd.yaml",
    ("argoproj.io/v1alpha1", "Rollout"): "argo-rollouts-rollout.crd.yaml",
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): "argo-rollouts-analysistemplate.crd.yaml",
}


def _crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    group, _, version = api_version.rpartition("/")
    for doc in yaml.safe_load_all((SCHEMAS / CRD_FILES[(api_version, kind)]).read_text()):
        if doc and doc["spec"]["group"] == group and doc["spec"]["names"]["kind"] == kind:
            for v in doc["spec"]["versions"]:
                if v["name"] == version:
                    return dict(v["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no schema for {api_version} {kind}")


def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields refused where it lists the properties (strict)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def validate(obj: dict[str, Any]) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_FILES:
        schema = _closed(_crd_schema(*key))
        # The API server checks these three itself; some CRD schemas leave them out.
        schema["properties"].update(apiVersion={"type": "string"}, kind={"type": "string"},
                                    metadata={"type": "object"})  # fmt: skip
        jsonschema.Draft7Validator(schema).validate(obj)
        return
    for version in VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def kinds(objs: list[dict[str, Any]]) -> list[str]:
    return [o["kind"] for o in objs]


def test_service_mode_manifests_validate_and_carry_what_the_pod_needs(
    local_ws: mnb.Workspace,
) -> None:
    v = local_ws.model("iris").version(1)
    k8s = Kubernetes(namespace="ml", image="registry.example/mlops-nb:0.2", spool="s3://b/spool")
    objs = k8s.manifests(v, replicas=3, resources={"cpu": "500m", "memory": "1Gi"})
    assert kinds(objs) == ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
    for obj in objs:
        validate(obj)
    cm, dep, svc, _ = objs
    assert dep["spec"]["replicas"] == 3
    ann = dep["metadata"]["annotations"]
    assert ann["mlops-nb/model"] == "iris" and ann["mlops-nb/version"] == "1"
    assert ann["mlops-nb/digest"] == v.info()["digest"]
    assert ann["mlops-nb/workspace"] == local_ws.path
    pod = dep["spec"]["template"]["spec"]
    server, init = pod["containers"][0], pod["initContainers"][0]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert init["command"] == ["python", "-m", "mlops_nb.kube.fetch"]
    assert server["command"] == ["python", "-m", "mlops_nb.serve"]
    spec = yaml.safe_load(cm["data"]["spec.json"])
    assert spec["spool"] == "s3://b/spool" and spec["digest"] == v.info()["digest"]
    # Stuck on a prediction (stuck_after_s, 30 s) and unready for replace_unready_after_s
    # (30 s): /v2/health/live fails, and the liveness probe restarts the pod.
    assert spec["live_stuck_after_s"] == 60.0
    assert svc["spec"]["selector"] == {
        "app.kubernetes.io/instance": "iris",
        "mlops-nb/revision": "1",
    }


def test_a_pod_stuck_as_long_as_the_deployment_allows_fails_its_liveness_probe(
    local_ws: mnb.Workspace,
) -> None:
    import dataclasses

    from mlops_nb.kube.render import render

    desired = dataclasses.replace(
        _canary_state(local_ws), server={"stuck_after_s": 5.0, "replace_unready_after_s": 10.0}
    )
    objs = render(Kubernetes(namespace="ml"), local_ws, desired, primary=1)
    specs = [yaml.safe_load(o["data"]["spec.json"]) for o in objs if o["kind"] == "ConfigMap"]
    assert len(specs) == 2  # one per revision
    for spec in specs:
        assert (spec["stuck_after_s"], spec["live_stuck_after_s"]) == (5.0, 15.0)
        assert "replace_unready_after_s" not in spec  # the target's option, not the server's
    for dep in (o for o in objs if o["kind"] == "Deployment"):
        (server,) = dep["spec"]["template"]["spec"]["containers"]
        assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_autoscale_adds_an_hpa_and_the_deployment_leaves_replicas_to_it(
    local_ws: mnb.Workspace,
) -> None:
    v = local_ws.model("iris").version(1)
    objs = Kubernetes(namespace="ml").manifests(v, replicas=3, autoscale=(2, 10, 70))
    for obj in objs:
        validate(obj)
    dep = next(o for o in objs if o["kind"] == "Deployment")
    hpa = next(o for o in objs if o["kind"] == "HorizontalPodAutoscaler")
    assert "replicas" not in dep["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_manifests_refuse_a_version_whose_redaction_rules_no_server_can_apply(
    local_ws: mnb.Workspace,
) -> None:
    v = local_ws.model("iris").version(1)
    odd = local_ws.model("iris").register(v.load(), input_example=None,
                                          params={"mlops.redact": {"email": "blur"}})  # fmt: skip
    with pytest.raises(
        mnb.InvalidArgument, match=r"iris v\d+ has params\['mlops.redact'\].*'email'"
    ):
        Kubernetes(namespace="ml").manifests(odd)


def _canary_state(local_ws: mnb.Workspace) -> Any:
    from mlops_nb.deploy.target import DesiredState, RevisionSpec

    info = local_ws.model("iris").version(1).info()
    revs = tuple(RevisionSpec(r, 1, str(info["artifact_uri"]), str(info["digest"]), 4, w)
                 for r, w in ((1, 90), (2, 10)))  # fmt: skip
    return DesiredState(name="iris", model="iris", revisions=revs)


@pytest.mark.parametrize("traffic", ["service", "gateway-api", "istio", "argo-rollouts"])
def test_every_traffic_mode_renders_valid_objects(local_ws: mnb.Workspace, traffic: str) -> None:
    k8s = Kubernetes(namespace="ml", traffic=traffic, gateway="infra/public",
                     prometheus="http://prometheus.monitoring:9090")  # fmt: skip
    objs = render(k8s, local_ws, _canary_state(local_ws), primary=1)
    for obj in objs:
        validate(obj)
    found = kinds(objs)
    if traffic == "service":
        deps = [o for o in objs if o["kind"] == "Deployment"]
        assert [d["spec"]["replicas"] for d in deps] == [4, 1]  # 90/10 as a replica ratio
        svc = next(o for o in objs if o["kind"] == "Service")
        assert "mlops-nb/revision" not in svc["spec"]["selector"]
    elif traffic == "gateway-api":
        route = next(o for o in objs if o["kind"] == "HTTPRoute")
        refs = route["spec"]["rules"][0]["backendRefs"]
        assert [(r["name"], r["weight"]) for r in refs] == [("iris-r1", 90), ("iris-r2", 10)]
        assert route["spec"]["parentRefs"][0] == {"group": "gateway.networking.k8s.io",
                                                  "kind": "Gateway", "name": "public", "namespace": "infra"}  # fmt: skip
    elif traffic == "istio":
        vs = next(o for o in objs if o["kind"] == "VirtualService")
        dr = next(o for o in objs if o["kind"] == "DestinationRule")
        assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [90, 10]
        assert [s["labels"] for s in dr["spec"]["subsets"]] == [{"mlops-nb/revision": "1"},
                                                                 {"mlops-nb/revision": "2"}]  # fmt: skip
    else:
        assert "Deployment" not in found and "Rollout" in found and "AnalysisTemplate" in found
        ro = next(o for o in objs if o["kind"] == "Rollout")
        assert ro["spec"]["strategy"]["canary"]["steps"][:2] == [
            {"setWeight": 10},
            {"pause": {"duration": "1m"}},
        ]
        at = next(o for o in objs if o["kind"] == "AnalysisTemplate")
        assert at["spec"]["metrics"][0]["provider"]["prometheus"]["address"].startswith(
            "http://prometheus"
        )


def test_a_typo_in_a_crd_object_is_caught_by_the_schema_check() -> None:
    from mlops_nb.kube import routing

    route = routing.httproute("iris", "ml", {1: 100}, "gw")
    route["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 5
    with pytest.raises(jsonschema.ValidationError, match="wieght"):
        validate(route)


def test_cronjob_runs_mlops_nb_monitor_on_the_mounted_workspace(local_ws: mnb.Workspace) -> None:
    k8s = Kubernetes(namespace="ml", image="img:1", s3_secret="s3-creds",
                     workspace_claim="mlops-ws", workspace_path="/data/ws/mlops.duckdb")  # fmt: skip
    cj = cronjob("s3://b/notebooks/monitoring.ipynb", k8s, model="iris", every="1h",
                 output="s3://b/runs", parameters={"max_error_rate": 0.01, "current": "last 6h"})  # fmt: skip
    validate(cj)
    spec = cj["spec"]
    assert spec["schedule"] == "0 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    assert (
        spec["startingDeadlineSeconds"] == 600 and spec["jobTemplate"]["spec"]["backoffLimit"] == 2
    )
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["mlops-nb"]
    assert container["args"] == [
        "monitor", "--workspace", "/data/ws/mlops.duckdb", "--model", "iris",
        "--notebook", "s3://b/notebooks/monitoring.ipynb", "--out", "s3://b/runs",
        "-p", "current", "last 6h", "-p", "max_error_rate", "0.01",
    ]  # fmt: skip
    # The claim is mounted read-write where workspace_path points; /tmp is the only other
    # writable place, and HOME and the Jupyter folders are in it.
    claim = {"name": "workspace", "persistentVolumeClaim": {"claimName": "mlops-ws"}}
    assert claim in pod["volumes"]
    mounts = {v["name"]: v for v in container["volumeMounts"]}
    assert mounts["workspace"] == {"name": "workspace", "mountPath": "/data/ws"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HOME"] == "/tmp" and env["JUPYTER_RUNTIME_DIR"].startswith("/tmp/")
    assert all(v.startswith("/tmp") for v in env.values())
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert cj["metadata"]["name"] == "monitor-iris-monitoring"


def test_cronjob_refuses_what_cannot_run_with_the_fix() -> None:
    k8s = Kubernetes(namespace="ml", workspace_claim="mlops-ws")
    with pytest.raises(mnb.InvalidArgument, match=r"workspace_claim='<PersistentVolumeClaim"):
        cronjob("nb.ipynb", Kubernetes(), model="iris", output="s3://b/r")
    with pytest.raises(mnb.InvalidArgument, match="output="):
        cronjob("nb.ipynb", k8s, model="iris")
    with pytest.raises(mnb.InvalidArgument, match="output must be s3://"):
        cronjob("nb.ipynb", k8s, model="iris", output="/runs")
    with pytest.raises(mnb.InvalidArgument, match="every"):
        cronjob("nb.ipynb", k8s, model="iris", every="7m", output="s3://b/r")
    with pytest.raises(mnb.InvalidArgument, match=r"\['model'\] are set by the schedule"):
        cronjob("nb.ipynb", k8s, model="iris", output="s3://b/r", parameters={"model": "x"})
    with pytest.raises(mnb.InvalidArgument, match="workspace_claim 'My_WS'"):
        Kubernetes(workspace_claim="My_WS")
    with pytest.raises(mnb.InvalidArgument, match="workspace_path must be an absolute"):
        Kubernetes(workspace_claim="ws", workspace_path="mlops.duckdb")


def test_bad_configuration_is_refused_with_the_fix() -> None:
    with pytest.raises(mnb.InvalidArgument, match="traffic must be one of"):
        Kubernetes(traffic="nginx")
    with pytest.raises(mnb.InvalidArgument, match="gateway="):
        Kubernetes(traffic="gateway-api")
    with pytest.raises(mnb.InvalidArgument, match="prometheus="):
        Kubernetes(traffic="argo-rollouts")
    with pytest.raises(mnb.InvalidArgument, match="'my-ns'"):
        Kubernetes(namespace="My_NS")
    with pytest.raises(mnb.InvalidArgument, match="autoscale"):
        Kubernetes(autoscale=(5, 2, 70))


def test_yaml_and_dockerfile_and_record_round_trip(local_ws: mnb.Workspace) -> None:
    v = local_ws.model("iris").version(1)
    k8s = Kubernetes(namespace="ml", autoscale=(2, 4, 60))
    docs = list(yaml.safe_load_all(k8s.to_yaml(v, replicas=2)))
    assert docs == k8s.manifests(v, replicas=2)
    text = k8s.dockerfile(v)
    assert "USER 10001" in text and "scikit-learn" in text and "mlops-nb==" in text
    backend = KubernetesBackend(k8s, local_ws, "iris")
    assert Kubernetes.from_record(backend.record()) == k8s
    assert dataclasses.replace(k8s, image="x") != k8s


def test_a_recorded_deployment_re_attaches_through_the_target_registry(
    local_ws: mnb.Workspace,
) -> None:
    from mlops_nb.deploy.target import backend_for

    k8s = Kubernetes(namespace="ml", traffic="istio", autoscale=(1, 3, 50), resources={"cpu": "1"})
    record = KubernetesBackend(k8s, local_ws, "Iris Model").record()
    again = backend_for(local_ws, "kubernetes", record)
    assert (
        isinstance(again, KubernetesBackend) and again.target == k8s and again.name == "iris-model"
    )
    assert hash(again.target) == hash(k8s)
