"""The API emulator, checked with kubectl v1.32 and the official client over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from mlops_nb.kube.emulator import Emulator
from mlops_nb.kube.emulator.store import ApiError

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ml}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: "nginx:1"}]
"""


@pytest.fixture
def sim() -> Any:
    with Emulator(processes=False, namespaces=("default", "ml")) as emu:
        yield emu


def kubectl(kc: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), "-n", "ml", *args], capture_output=True,
                          text=True, timeout=120, check=check)  # fmt: skip


def test_kubectl_apply_rollout_history_undo_and_scale(sim: Emulator, tmp_path: Path) -> None:
    kc = sim.kubeconfig(tmp_path / "kc", namespace="ml")
    (tmp_path / "d.yaml").write_text(MANIFEST)
    assert (
        "serverside-applied"
        in kubectl(kc, "apply", "--server-side", "-f", str(tmp_path / "d.yaml")).stdout
    )
    assert (
        "successfully rolled out"
        in kubectl(kc, "rollout", "status", "deploy/web", "--timeout=60s").stdout
    )
    table = kubectl(kc, "get", "deploy", "web").stdout.split()
    assert table[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] and table[6:9] == [
        "2/2",
        "2",
        "2",
    ]
    kubectl(kc, "set", "image", "deploy/web", "c=nginx:2")
    kubectl(kc, "rollout", "status", "deploy/web", "--timeout=60s")
    history = kubectl(kc, "rollout", "history", "deploy/web").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
    assert "rolled back" in kubectl(kc, "rollout", "undo", "deploy/web").stdout
    kubectl(kc, "rollout", "status", "deploy/web", "--timeout=60s")
    image = kubectl(
        kc, "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    )
    assert image.stdout == "nginx:1"
    history = kubectl(kc, "rollout", "history", "deploy/web").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]
    kubectl(kc, "scale", "deploy/web", "--replicas=3")
    sim.wait(lambda: kubectl(kc, "get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}").stdout == "3",
             what="3 ready replicas")  # fmt: skip
    pods = kubectl(kc, "get", "pods", "-l", "app=web", "-o", "name").stdout.split()
    assert len(pods) == 3


def test_server_side_apply_conflicts_name_the_other_manager_and_change_nothing(
    sim: Emulator, tmp_path: Path
) -> None:
    kc = sim.kubeconfig(tmp_path / "kc", namespace="ml")
    api = client.AppsV1Api(config.new_client_from_config(str(kc)))
    body = json.loads(json.dumps(__import__("yaml").safe_load(MANIFEST)))
    api.api_client.call_api(
        "/apis/apps/v1/namespaces/ml/deployments/web", "PATCH", body=body,
        query_params=[("fieldManager", "tool-a")], header_params={"Content-Type": "application/apply-patch+yaml"},
        auth_settings=["BearerToken"], _preload_content=False)  # fmt: skip
    body["spec"]["replicas"] = 5
    with pytest.raises(ApiException) as info:
        api.api_client.call_api(
            "/apis/apps/v1/namespaces/ml/deployments/web", "PATCH", body=body,
            query_params=[("fieldManager", "tool-b")], header_params={"Content-Type": "application/apply-patch+yaml"},
            auth_settings=["BearerToken"], _preload_content=False)  # fmt: skip
    assert info.value.status == 409
    status = json.loads(info.value.body)
    assert status["details"]["causes"][0]["field"] == ".spec.replicas"
    assert 'conflict with "tool-a"' in status["message"]
    assert api.read_namespaced_deployment("web", "ml").spec.replicas == 2


def test_injected_errors_change_nothing(sim: Emulator, tmp_path: Path) -> None:
    kc = sim.kubeconfig(tmp_path / "kc", namespace="ml")
    core = client.CoreV1Api(config.new_client_from_config(str(kc)))
    cm = {"metadata": {"name": "x"}, "data": {"a": "1"}}
    for code in (403, 404, 409, 422):
        sim.fail(code, verb="create", resource="configmaps")
        with pytest.raises(ApiException) as info:
            core.create_namespaced_config_map("ml", cm)
        assert info.value.status == code
        assert core.list_namespaced_config_map("ml").items == []
    core.create_namespaced_config_map("ml", cm)
    assert [c.metadata.name for c in core.list_namespaced_config_map("ml").items] == ["x"]


def test_generation_grows_on_spec_change_only_and_watch_streams_changes(
    sim: Emulator, tmp_path: Path
) -> None:
    kc = sim.kubeconfig(tmp_path / "kc", namespace="ml")
    api = client.AppsV1Api(config.new_client_from_config(str(kc)))
    import yaml
    from kubernetes import watch

    api.create_namespaced_deployment("ml", yaml.safe_load(MANIFEST))
    d = api.read_namespaced_deployment("web", "ml")
    assert d.metadata.generation == 1 and d.metadata.uid
    api.patch_namespaced_deployment("web", "ml", {"metadata": {"labels": {"x": "y"}}})
    assert api.read_namespaced_deployment("web", "ml").metadata.generation == 1
    api.patch_namespaced_deployment("web", "ml", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "nginx:3"}]}}}})  # fmt: skip
    d = api.read_namespaced_deployment("web", "ml")
    assert d.metadata.generation == 2
    assert d.spec.template.spec.containers[0].image == "nginx:3"  # merged by name
    seen = []
    for event in watch.Watch().stream(api.list_namespaced_deployment, "ml", label_selector="x=y",
                                      timeout_seconds=30):  # fmt: skip
        seen.append(event["type"])
        status = event["object"].status
        if (
            status
            and status.observed_generation == 2
            and status.updated_replicas == 2
            and status.ready_replicas == 2
        ):
            break
    assert seen[0] == "ADDED"
    assert api.list_namespaced_deployment("ml", label_selector="x=z").items == []


def test_the_command_line_emulator_serves_kubectl_and_stops_cleanly(tmp_path: Path) -> None:
    import signal
    import sys

    from tests.conftest import _wait_port, free_port

    port = free_port()
    kc = tmp_path / "kube.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "mlops_nb.kube.emulator", "--port", str(port),
                             "--namespace", "ml", "--kubeconfig", str(kc), "--simulate"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_port(port, proc)
        out = subprocess.run(["kubectl", "--kubeconfig", str(kc), "get", "namespaces", "-o", "name"],
                             capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
        assert out.split() == ["namespace/default", "namespace/ml"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout is not None and b"emulator on http://127.0.0.1:" in proc.stdout.read()
        proc.stdout.close()


def test_the_controller_moves_only_when_stepped(tmp_path: Path) -> None:
    import yaml

    with Emulator(auto=False, processes=False, namespaces=("default", "ml")) as emu:
        kc = emu.kubeconfig(tmp_path / "kc")
        api = client.AppsV1Api(config.new_client_from_config(str(kc)))
        api.create_namespaced_deployment("ml", yaml.safe_load(MANIFEST))
        rs = emu.kind("apps/v1", "ReplicaSet")
        assert emu.store.list(rs, "ml") == []
        assert api.read_namespaced_deployment("web", "ml").status is None
        emu.step()
        [first] = emu.store.list(rs, "ml")
        assert first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        assert first["metadata"]["ownerReferences"][0]["name"] == "web"
        emu.step(2)
        d = api.read_namespaced_deployment("web", "ml")
        assert (d.status.observed_generation, d.status.ready_replicas) == (1, 2)
        conditions = {c.type: c.reason for c in d.status.conditions}
        assert conditions == {
            "Available": "MinimumReplicasAvailable",
            "Progressing": "NewReplicaSetAvailable",
        }
        emu.outcome("ml", "web", "stall")
        api.patch_namespaced_deployment(
            "web", "ml", {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}
        )
        emu.step(3)
        d = api.read_namespaced_deployment("web", "ml")
        assert (d.metadata.generation, d.status.updated_replicas, d.status.ready_replicas) == (
            2,
            2,
            2,
        )
        assert {c.type: c.reason for c in d.status.conditions}["Progressing"] == "ReplicaSetUpdated"
        assert sorted(r["spec"]["replicas"] for r in emu.store.list(rs, "ml")) == [
            2,
            2,
        ]  # old pods stay


def test_a_replicaset_made_for_a_deployment_being_deleted_is_collected(tmp_path: Path) -> None:
    """The controller read the Deployment, then it was deleted, then the controller made
    its ReplicaSet: the next step collects that orphan, as the cluster's collector does."""
    import yaml

    with Emulator(auto=False, processes=False, namespaces=("default", "ml")) as emu:
        kc = emu.kubeconfig(tmp_path / "kc")
        api = client.AppsV1Api(config.new_client_from_config(str(kc)))
        api.create_namespaced_deployment("ml", yaml.safe_load(MANIFEST))
        deploy, rs = emu.kind("apps/v1", "Deployment"), emu.kind("apps/v1", "ReplicaSet")
        stale = emu.store.get(deploy, "ml", "web")
        api.delete_namespaced_deployment("web", "ml")
        with pytest.raises(ApiError, match="not found"):  # its status write then fails
            emu.controller._deployment(stale)  # acting on what it read before the delete
        [orphan] = emu.store.list(rs, "ml")
        assert orphan["metadata"]["ownerReferences"][0]["uid"] == stale["metadata"]["uid"]
        emu.step()
        assert emu.store.list(rs, "ml") == []
        assert emu.store.list(emu.kind("v1", "Pod"), "ml") == []
