"""The backend through the official client against the emulator (pods simulated here)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mlops_nb as mnb
from mlops_nb.deploy.target import DesiredState, RevisionSpec
from mlops_nb.kube import Kubernetes, schedule
from mlops_nb.kube.backend import KubernetesBackend
from mlops_nb.kube.emulator import Emulator

from .test_emulator import kubectl


@pytest.fixture
def sim() -> Iterator[Emulator]:
    with Emulator(processes=False, namespaces=("default", "ml")) as emu:
        yield emu


@pytest.fixture
def sk8s(sim: Emulator, tmp_path: Path) -> Kubernetes:
    return Kubernetes(
        namespace="ml", image="img:1", kubeconfig=str(sim.kubeconfig(tmp_path / "kc"))
    )


def state(ws: mnb.Workspace, *revs: tuple[int, int, int, int]) -> DesiredState:
    """Revisions as (revision, version, replicas, weight)."""
    out = []
    for rev, version, replicas, weight in revs:
        info = ws.model("iris").version(version).info()
        out.append(
            RevisionSpec(
                rev, version, str(info["artifact_uri"]), str(info["digest"]), replicas, weight
            )
        )
    return DesiredState(name="iris", model="iris", revisions=tuple(out))


@pytest.fixture
def ws2(local_ws: mnb.Workspace, iris_data: Any) -> mnb.Workspace:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_data
    for c in (0.5, 0.25):
        local_ws.model("iris").register(
            LogisticRegression(max_iter=200, C=c).fit(X, y), input_example=X.head(5)
        )
    return local_ws


def ready(backend: KubernetesBackend, rev: int, n: int) -> bool:
    o = backend.observe()
    r = o.revision(rev)
    return bool(r and r.ready >= n and not o.message)


def serving(sim: Emulator, k8s: Kubernetes, ws: mnb.Workspace, replicas: int) -> KubernetesBackend:
    """A backend serving version 1 with ``replicas`` ready replicas."""
    b = k8s.provision(ws, "iris")
    assert isinstance(b, KubernetesBackend)
    b.apply(state(ws, (1, 1, replicas, 100)))
    sim.wait(lambda: ready(b, 1, replicas), what="version 1 ready")
    return b


def test_apply_observe_undo_to_previous_and_named_revision_and_kubectl_agrees(
    sim: Emulator, sk8s: Kubernetes, ws2: mnb.Workspace, tmp_path: Path
) -> None:
    b = sk8s.provision(ws2, "iris")
    assert isinstance(b, KubernetesBackend) and b.alive() is False
    for rev in (1, 2, 3):
        b.apply(state(ws2, (rev, rev, 2, 100)))
        sim.wait(lambda rev=rev: ready(b, rev, 2), what=f"revision {rev} ready")  # type: ignore[misc]
    assert b.alive()
    assert [(h["revision"], h["version"]) for h in b.history()] == [(1, 1), (2, 2), (3, 3)]
    undo = b.undo()
    assert (undo.from_revision, undo.to_revision, undo.version) == (3, 2, 2)
    sim.wait(lambda: ready(b, 2, 2), what="back on version 2")
    assert [(h["revision"], h["version"]) for h in b.history()] == [(1, 1), (3, 3), (4, 2)]
    undo = b.undo(to=1)
    assert undo.version == 1
    sim.wait(lambda: ready(b, 1, 2), what="back on version 1")
    with pytest.raises(mnb.RolloutFailed, match="no revision 9"):
        b.undo(to=9)
    if shutil.which("kubectl"):
        kc = str(tmp_path / "kc")
        out = subprocess.run(["kubectl", "--kubeconfig", kc, "-n", "ml", "rollout", "undo", "deploy/iris",
                              "--to-revision=4"], capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        assert "rolled back" in out.stdout
        sim.wait(lambda: ready(b, 2, 2), what="kubectl's undo to version 2")
        assert b.history()[-1]["version"] == 2
    # Paused: refused, as kubectl refuses it.
    from kubernetes import client

    client.AppsV1Api(b.cluster.api).patch_namespaced_deployment(
        "iris", "ml", {"spec": {"paused": True}}
    )
    with pytest.raises(mnb.RolloutFailed, match="paused: resume it first"):
        b.undo()


def test_canary_service_ratio_scale_dry_run_plan_and_stop(
    sim: Emulator, sk8s: Kubernetes, ws2: mnb.Workspace
) -> None:
    b = serving(sim, sk8s, ws2, 3)
    before = sim.store.rv
    objs = b.dry_run(state(ws2, (1, 1, 3, 90), (2, 2, 3, 10)))
    assert any(o["metadata"]["name"] == "iris-r2" for o in objs)
    assert sim.store.rv == before  # the dry run persisted nothing
    b.apply(state(ws2, (1, 1, 3, 90), (2, 2, 3, 10)))
    sim.wait(lambda: ready(b, 2, 1) and ready(b, 1, 3), what="canary ready")
    deps = {d["metadata"]["name"]: d["spec"]["replicas"] for d in b._deployments()}
    assert deps == {"iris": 3, "iris-r2": 1}
    b.scale(6)
    sim.wait(lambda: ready(b, 1, 5), what="scaled to 6 (5 + 1 at 90/10)")
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in b._deployments()} == {
        "iris": 5,
        "iris-r2": 1,
    }
    # Promotion: the primary takes version 2; the canary Deployment goes once it has.
    b.apply(state(ws2, (2, 2, 6, 100)))
    sim.wait(lambda: ready(b, 2, 6) and [d["metadata"]["name"] for d in b._deployments()] == ["iris"],
             what="promoted")  # fmt: skip
    v3 = ws2.model("iris").version(3)
    plan = sk8s.plan(v3, replicas=6)
    assert plan.count("update") >= 1 and "ConfigMap ml/iris-r1-spec" in str(plan)
    b.stop()
    assert not b.alive()

    def left() -> list[str]:
        kinds = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "Service": "v1",
                 "ConfigMap": "v1", "PodDisruptionBudget": "policy/v1"}  # fmt: skip
        return [f"{kind} {o['metadata']['name']}" for kind, api in kinds.items()
                for o in sim.store.list(sim.kind(api, kind), "ml")]  # fmt: skip

    # ReplicaSets go with their Deployment through the garbage collector, after the
    # Deployment itself (as in a cluster): wait for it rather than read at once.
    sim.wait(lambda: not left(), what="every object stopped")


def test_status_reports_deadline_exceeded_and_crash_loops(
    sim: Emulator, sk8s: Kubernetes, ws2: mnb.Workspace
) -> None:
    b = serving(sim, sk8s, ws2, 2)
    sim.outcome("ml", "iris", "fail")
    b.apply(state(ws2, (2, 2, 2, 100)))
    o = sim.wait(
        lambda: (x := b.observe()).message and "progress deadline" in x.message and x,
        what="deadline",
    )
    assert 'exceeded its progress deadline: ReplicaSet "iris-' in o.message
    assert o.revision(2).message and "timed out progressing" in o.revision(2).message
    assert o.revision(1).ready == 2  # the old revision keeps serving
    sim.outcome("ml", "iris-r3", "crash")
    b.apply(state(ws2, (2, 2, 2, 50), (3, 3, 2, 50)))
    o = sim.wait(lambda: (x := b.observe()).revision(3) and x.revision(3).crash_loop and x.revision(3).restarts > 1 and x,
                 what="crash loop")  # fmt: skip
    last = o.revision(3).replicas[0].detail["last_termination"]
    assert last == {"reason": "Error", "exit_code": 1, "message": None}


def test_api_errors_become_clear_sdk_errors(
    sim: Emulator, sk8s: Kubernetes, ws2: mnb.Workspace, tmp_path: Path
) -> None:
    b = sk8s.provision(ws2, "iris")
    desired = state(ws2, (1, 1, 1, 100))
    sim.fail(404, verb="patch", resource="configmaps")
    with pytest.raises(mnb.ClusterNotFound, match="deploy again"):
        b.apply(desired)
    sim.fail(403, verb="patch", resource="deployments")
    with pytest.raises(mnb.ClusterForbidden, match="Ask for a Role") as info:
        b.apply(desired)
    assert info.value.applied == ("ConfigMap ml/iris-r1-spec",)
    assert "Deployment ml/iris" in info.value.pending[0]
    assert "applied before the failure: ConfigMap ml/iris-r1-spec" in str(info.value)
    sim.fail(401)
    with pytest.raises(mnb.ClusterForbidden, match="log in again"):
        b.apply(desired)
    sim.fail(422, verb="patch", resource="services")
    with pytest.raises(mnb.ClusterInvalid, match="fix the manifest"):
        b.apply(desired)
    b.apply(desired)
    from kubernetes import client

    # Someone scales by hand: our next apply names them and the field instead of fighting.
    client.AppsV1Api(b.cluster.api).patch_namespaced_deployment_scale(
        "iris", "ml", {"spec": {"replicas": 4}}
    )
    with pytest.raises(
        mnb.ClusterConflict, match=r"\.spec\.replicas is managed by 'OpenAPI-Generator'"
    ) as c:
        b.apply(state(ws2, (1, 1, 2, 100)))
    assert c.value.field == ".spec.replicas" and c.value.manager == "OpenAPI-Generator"
    b.apply(state(ws2, (1, 1, 2, 100)), force=True)
    with pytest.raises(mnb.ClusterNotFound, match="kubectl create namespace nope"):
        dataclasses.replace(sk8s, namespace="nope").provision(ws2, "iris")
    with pytest.raises(mnb.KubeconfigError, match="no kubeconfig at"):
        Kubernetes(kubeconfig=str(tmp_path / "missing")).cluster()
    with pytest.raises(mnb.KubeconfigError, match=r"contexts in .*: emulator"):
        Kubernetes(kubeconfig=sk8s.kubeconfig, context="prod").cluster()
    dead = Emulator(processes=False)  # never started: nothing listens on its port
    kc = dead.kubeconfig(tmp_path / "dead")
    dead.stop()
    with pytest.raises(mnb.ClusterUnreachable, match="does not answer"):
        Kubernetes(kubeconfig=str(kc)).cluster()


def test_cronjob_is_applied_and_dry_run_persists_nothing(
    sim: Emulator, sk8s: Kubernetes, local_ws: mnb.Workspace
) -> None:
    k8s = dataclasses.replace(sk8s, spool="s3://b/spool", workspace_claim="mlops-ws")
    schedule("notebooks/monitoring.ipynb", k8s, model="iris", every="15m", dry_run=True)
    assert sim.store.list(sim.kind("batch/v1", "CronJob"), "ml") == []
    stored = schedule("notebooks/monitoring.ipynb", k8s, model="iris", every="15m")
    assert stored["spec"]["schedule"] == "*/15 * * * *"
    assert stored["metadata"]["managedFields"][0]["manager"] == "mlops-nb"
    [cj] = sim.store.list(sim.kind("batch/v1", "CronJob"), "ml")
    assert cj["spec"]["concurrencyPolicy"] == "Forbid"
    stored = local_ws.monitor("iris").schedule("nb/drift.ipynb", every="6h", target=k8s)
    assert stored["spec"]["schedule"] == "0 */6 * * *"
    args = stored["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:5] == ["monitor", "--workspace", "/workspace/mlops.duckdb", "--model", "iris"]
    assert args[args.index("--out") + 1] == "s3://b/spool/runs"
    assert len(sim.store.list(sim.kind("batch/v1", "CronJob"), "ml")) == 2
    if shutil.which("kubectl"):
        # kubectl reads back what the SDK applied: the pod runs mlops-nb on the mounted claim.
        name = stored["metadata"]["name"]
        shown = kubectl(Path(str(k8s.kubeconfig)), "get", "cronjob", name, "-o", "json")
        pod = json.loads(shown.stdout)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["command"] == ["mlops-nb"]
        assert pod["containers"][0]["args"] == args
        claim = {"name": "workspace", "persistentVolumeClaim": {"claimName": "mlops-ws"}}
        assert claim in pod["volumes"]


def test_blue_green_switches_the_service_selector_and_keeps_green_until_the_primary_has_it(
    ws2: mnb.Workspace, tmp_path: Path
) -> None:
    with Emulator(auto=False, processes=False, namespaces=("default", "ml")) as emu:
        k8s = Kubernetes(namespace="ml", kubeconfig=str(emu.kubeconfig(tmp_path / "kc")))
        b = serving(emu, k8s, ws2, 2)
        svc = emu.kind("v1", "Service")
        b.apply(state(ws2, (1, 1, 2, 100), (2, 2, 2, 0)))  # green runs, takes no traffic
        emu.wait(lambda: ready(b, 2, 2), what="green ready")
        assert emu.store.get(svc, "ml", "iris")["spec"]["selector"]["mlops-nb/revision"] == "1"
        b.apply(state(ws2, (2, 2, 2, 100)))
        assert emu.store.get(svc, "ml", "iris")["spec"]["selector"]["mlops-nb/revision"] == "2"
        names = lambda: sorted(d["metadata"]["name"] for d in b._deployments())  # noqa: E731
        assert names() == ["iris", "iris-r2"]  # green serves until the primary runs version 2
        # observe() is what retires green (the core calls it as it watches the rollout)
        emu.wait(lambda: ready(b, 2, 2) and names() == ["iris"], what="primary on version 2")
        assert [h["version"] for h in b.history()] == [1, 2]
