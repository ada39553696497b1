"""Deployments that can be trusted: each way a rollout used to go wrong, on real processes.

Every test runs real routers, replicas and controllers on 127.0.0.1 and waits on
conditions with generous deadlines (the suite may share a loaded machine).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sklearn.linear_model import LogisticRegression

import mlops_nb as mnb
from mlops_nb.deploy import state as st
from mlops_nb.deploy.core import Status
from mlops_nb.deploy.rollout import spec_of
from mlops_nb.serve.spec import ServeSpec
from tests.deploy.conftest import Traffic, leftovers, wait_for


def _body(iris: Any) -> Any:
    return iris[0].head(1).to_dict("records")


class Flaky:
    """Fails about 40% of requests: an intermittently broken version."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def predict(self, frame: Any) -> Any:
        if random.random() < 0.4:
            raise RuntimeError("intermittent failure")
        return self.inner.predict(frame)


class CrashAtLoad:
    """Unpickling this object ends the process: a replica that dies at every start."""

    def __reduce__(self) -> Any:
        return (os._exit, (3,))


class Weights:
    """Samples the canary's weight in the background: the most it ever got."""

    def __init__(self, dep: mnb.Deployment, version: int) -> None:
        self.dep, self.version, self.most = dep, version, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 180
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                share = self.dep.status()["traffic"].get(self.version, 0.0)
            except mnb.MlopsError:
                share = 0.0
            self.most = max(self.most, share)
            self._stop.wait(0.2)

    def __enter__(self) -> Weights:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _phase(dep: mnb.Deployment) -> str | None:
    rollout = dep.status()["rollout"]
    return rollout["phase"] if rollout else None


def test_a_canary_failing_every_request_never_passes_its_first_step(dws, versions, iris) -> None:
    dep = versions["good"].deploy()
    guard = mnb.Guard(max_error_rate=0.05, interval="1s", failure_limit=2, min_samples=5)
    with Traffic(dep.endpoint, _body(iris), pause=0.01) as traffic, Weights(dep, 3) as weights:
        versions["failing"].deploy(strategy=mnb.Canary(steps=[50, 100], pause="3s", guard=guard))
        wait_for(lambda: _phase(dep) == "aborted", 90, "the canary to be aborted")
        after = len(traffic.results)
        wait_for(lambda: len(traffic.results) > after + 30, 30, "more traffic")
    assert weights.most <= 50.0
    assert all(code == 200 and v == "1" for code, v in traffic.results[after:])
    assert dep.status()["traffic"] == {1: 100.0}
    assert dep.revisions().set_index("revision").loc[2, "status"] == "rolled_back"
    assert "guard" in dep.status()["rollout"]["reason"]


def test_an_intermittently_failing_version_does_not_reach_full_traffic(dws, versions, iris) -> None:
    flaky = dws.model("iris").register(Flaky(versions["good"].load()), flavor="python",
                                       input_example=iris[0].head(5))  # fmt: skip
    dep = versions["good"].deploy()
    guard = mnb.Guard(max_error_rate=0.05, interval="0.5s", window="3s", failure_limit=3,
                      min_samples=5)  # fmt: skip
    canary = mnb.Canary(steps=[20, 50, 100], pause="2s", guard=guard)
    with Traffic(dep.endpoint, _body(iris), pause=0.005), Weights(dep, flaky.number) as weights:
        flaky.deploy(strategy=canary)
        wait_for(lambda: _phase(dep) in ("aborted", "succeeded"), 120, "the canary to end")
    assert _phase(dep) == "aborted"
    assert weights.most < 100.0
    assert dep.status()["traffic"] == {1: 100.0}
    verdicts = dep.checks()["verdict"].tolist()
    assert verdicts.count("fail") >= guard.failure_limit


def test_rollback_skips_a_rejected_canary(dws, versions, iris) -> None:
    dep = versions["good"].deploy()
    guard = mnb.Guard(max_error_rate=0.05, interval="0.5s", window="3s", failure_limit=2,
                      min_samples=5)  # fmt: skip
    with Traffic(dep.endpoint, _body(iris), pause=0.01):
        versions["failing"].deploy(strategy=mnb.Canary(steps=[50, 100], pause="5s", guard=guard))
        wait_for(lambda: _phase(dep) == "aborted", 90, "the canary to be aborted")
    versions["other"].deploy()  # r3: v2, rolling
    assert dep.status()["traffic"] == {2: 100.0}
    dep.rollback(reason="v2 looks worse")  # back to v1 (r1), never to the rejected v3 (r2)
    assert dep.status()["traffic"] == {1: 100.0}
    revs = dep.revisions().set_index("revision")
    assert revs.loc[2, "status"] == "rolled_back" and revs.loc[3, "status"] == "rolled_back"
    assert revs.loc[4, "version"] == 1 and revs.loc[4, "note"] == "rollback to r1"
    with pytest.raises(mnb.DeploymentError, match="no earlier healthy revision"):
        dep.rollback()  # v2 was rolled back and v1 serves: nothing healthy is left to go to
    with pytest.raises(mnb.DeploymentError, match="never became healthy"):
        dep.rollback(to=2)
    with pytest.raises(mnb.InvalidArgument, match="no revision 9"):
        dep.rollback(to=9)
    audit = dws.audit(model="iris")
    row = audit[audit["action"] == "rollback"].iloc[-1]
    assert (row["from_value"], row["to_value"]) == ("r3 (v2)", "r4 (v1)")
    assert row["reason"] == "v2 looks worse"
    # Named and forced, the rejected revision's version comes back, as a new revision.
    dep.rollback(to=2, force=True, reason="reproduce the failure")
    assert dep.status()["traffic"] == {3: 100.0}
    assert dep.revisions().set_index("revision").loc[5, "note"] == "rollback to r2"


def test_rollback_during_a_canary_aborts_it(dws, versions) -> None:
    dep = versions["good"].deploy()
    versions["other"].deploy(strategy=mnb.Canary(steps=[50, 100], pause="1h"))
    assert dep.status()["traffic"] == {1: 50.0, 2: 50.0}
    with pytest.raises(mnb.DeploymentError, match="without `to` aborts it first"):
        dep.rollback(to=1)
    assert dep.status()["traffic"] == {1: 50.0, 2: 50.0}  # refused: nothing changed
    dep.rollback(reason="not now")
    assert _phase(dep) == "aborted"
    assert dep.status()["traffic"] == {1: 100.0}
    assert dep.revisions().set_index("revision").loc[2, "status"] == "rolled_back"


@pytest.mark.parametrize("who", ["bystander", "look-alike"])
def test_delete_of_a_stale_deployment_leaves_a_bystander_alone(dws, versions, who) -> None:
    dep = versions["good"].deploy()
    admin = dep._record().admin
    router = psutil.Process(admin["pid"])
    replicas = router.children(recursive=True)
    router.kill()
    psutil.wait_procs([router, *replicas], timeout=60)
    # After a crash or a reboot the recorded pid may belong to someone else. The look-alike
    # names the router module and the state folder on its command line and is recorded with
    # its own start time: only the router's token can tell it apart.
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    if who == "look-alike":
        argv += ["-m", "mlops_nb.deploy.router", "--state-dir", admin["state_dir"]]
    env = {**os.environ, "MLOPS_NB_ROUTER_TOKEN": "not-the-token"}
    bystander = subprocess.Popen(argv, start_new_session=True, env=env)
    try:
        forged = {**admin, "pid": bystander.pid}
        if who == "look-alike":
            forged["create_time"] = psutil.Process(bystander.pid).create_time()
        dws._store.write(lambda con: con.execute(
            "UPDATE deployments SET admin = ?, pid = ? WHERE name = 'iris'",
            [json.dumps(forged), bystander.pid]))  # fmt: skip
        assert dep.status()["state"] == "stale"
        dep.delete()
        time.sleep(0.5)  # a signal, had one been sent, would have landed by now
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait(timeout=10)
    assert dep.status()["state"] == "deleted"


@pytest.mark.parametrize("hidden", ["empty", "denied"])
def test_a_router_whose_environment_is_hidden_proves_itself(dws, versions, monkeypatch,
                                                            hidden) -> None:  # fmt: skip
    # macOS hides other processes' environments (psutil returns {} or raises AccessDenied);
    # that cannot happen on Linux, so psutil is patched to behave so here.
    def environ(self: psutil.Process) -> dict[str, str]:
        if hidden == "denied":
            raise psutil.AccessDenied(self.pid)
        return {}

    dep = versions["good"].deploy()
    router = psutil.Process(dep._record().admin["pid"])
    monkeypatch.setattr(psutil.Process, "environ", environ)
    assert dep.status()["state"] == "healthy"  # the router answered our token and its pid
    dep.delete()
    assert not router.is_running() or router.status() == psutil.STATUS_ZOMBIE


_DEPLOY = textwrap.dedent(
    """
    import sys, time, json
    import mlops_nb as mnb
    ws = mnb.open(sys.argv[1])
    go = float(sys.argv[2])
    while time.time() < go:
        time.sleep(0.005)
    try:
        dep = ws.model("iris").version(int(sys.argv[3])).deploy(timeout=120)
        print(json.dumps({"ok": dep.endpoint}))
    except mnb.MlopsError as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    ws.close()
    """
)


def test_two_processes_deploying_one_name(dws, versions) -> None:
    path = dws._store.path
    go = time.time() + 4.0
    procs = [subprocess.Popen([sys.executable, "-c", _DEPLOY, path, str(go), str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in (1, 2)]  # fmt: skip
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(o[0].strip() for o in outs), [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    winners = [r for r in results if "ok" in r]
    losers = [r for r in results if "error" in r]
    assert len(winners) == 1 and len(losers) == 1, results
    assert losers[0]["error"] in ("DeploymentConflict", "DeploymentError", "WorkspaceBusy")
    frame = dws.deployments()
    assert frame["name"].tolist() == ["iris"] and frame["state"].tolist() == ["healthy"]
    routers = [p for p in leftovers(Path(path).parent, timeout=0)
               if "mlops_nb.deploy.router" in " ".join(p.cmdline())]  # fmt: skip
    assert len(routers) == 1


_KERNEL = textwrap.dedent(
    """
    import os, sys
    import mlops_nb as mnb
    ws = mnb.open(sys.argv[1])
    guard = mnb.Guard(max_error_rate=0.05, interval="0.5s", window="3s", failure_limit=2,
                      min_samples=5)
    v = ws.model("iris").version(int(sys.argv[2]))
    v.deploy(strategy=mnb.Canary(steps=[30, 100], pause="4s", guard=guard))
    print("canary started", flush=True)
    os.kill(os.getpid(), 9)  # the kernel dies mid-canary
    """
)


@pytest.mark.parametrize(
    ("version", "outcome", "serving"), [(2, "succeeded", 2), (3, "aborted", 1)]
)
def test_a_killed_kernel_does_not_stop_a_canary(dws, versions, iris, version, outcome,
                                                serving) -> None:  # fmt: skip
    dep = versions["good"].deploy()
    with Traffic(dep.endpoint, _body(iris), pause=0.01):
        out = subprocess.run([sys.executable, "-c", _KERNEL, dws._store.path, str(version)],
                             capture_output=True, text=True, timeout=240)  # fmt: skip
        assert "canary started" in out.stdout, out.stderr
        assert out.returncode == -signal.SIGKILL
        # Read the recorded rollout only: status() would start a controller if none ran,
        # and the canary must go on by itself.
        wait_for(lambda: (st.read(dws, "iris").rollout or {}).get("phase") == outcome, 120,
                 f"the canary to be {outcome} with no help from this process")  # fmt: skip
    assert dep.status()["traffic"] == {serving: 100.0}


def test_a_version_rejecting_valid_requests_with_4xx_is_caught(dws, versions, iris) -> None:
    X = iris[0]
    renamed = X.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    strict = dws.model("iris").register(versions["good"].load(), input_example=renamed.head(5))
    dep = versions["good"].deploy()
    guard = mnb.Guard(max_error_rate=0.05, interval="0.5s", window="3s", failure_limit=2,
                      min_samples=5)  # fmt: skip
    with Traffic(dep.endpoint, _body(iris), pause=0.01) as traffic:
        strict.deploy(strategy=mnb.Canary(steps=[50, 100], pause="3s", guard=guard))
        wait_for(lambda: _phase(dep) in ("aborted", "succeeded"), 90, "the canary to end")
    assert _phase(dep) == "aborted"
    assert any(code == 400 for code, _ in traffic.results)
    evidence = dep.checks()[lambda c: c["verdict"] == "fail"]["evidence"].iloc[-1]
    assert "errors_4xx" in evidence


def test_clients_sending_garbage_do_not_fail_a_healthy_canary(dws, versions, iris) -> None:
    dep = versions["good"].deploy()
    guard = mnb.Guard(max_error_rate=0.05, interval="0.5s", window="4s", failure_limit=2,
                      min_samples=5)  # fmt: skip
    garbage = json.dumps([{c: math.nan for c in iris[0].columns}]).encode()  # NaN: not JSON
    with Traffic(dep.endpoint, _body(iris), pause=0.01), \
            Traffic(dep.endpoint, garbage, pause=0.01) as bad:  # fmt: skip
        versions["other"].deploy(strategy=mnb.Canary(steps=[50, 100], pause="3s", guard=guard))
        wait_for(lambda: _phase(dep) in ("aborted", "succeeded"), 120, "the canary to end")
    assert bad.failures(), "the garbage requests should have failed"
    assert _phase(dep) == "succeeded", dep.status()["rollout"]
    assert dep.status()["traffic"] == {2: 100.0}


def test_a_crash_looping_canary_fails_fast_with_backoff(dws, versions, iris) -> None:
    crashing = dws.model("iris").register(CrashAtLoad(), flavor="python",
                                          input_example=iris[0].head(5))  # fmt: skip
    dep = versions["good"].deploy()
    with pytest.raises(mnb.DeploymentError, match=r"crash loop|cannot become ready"):
        crashing.deploy(strategy=mnb.Canary(steps=[50, 100], pause="3s"), timeout=90)
    assert dep.status()["traffic"] == {1: 100.0}
    assert _phase(dep) == "failed"
    assert dep.revisions().set_index("revision").loc[2, "status"] == "failed"
    # Its replicas are stopped with it: the router runs only revision 1 again.
    wait_for(lambda: [r["revision"] for r in dep.status()["revisions"]] == [1], 60,
             "the failed revision to stop")  # fmt: skip


@pytest.mark.parametrize(
    "strategy", [mnb.Rolling(), mnb.BlueGreen()], ids=["rolling", "blue-green"]
)
def test_a_failed_start_stops_what_it_started_and_says_why(dws, versions, iris, strategy) -> None:
    crashing = dws.model("iris").register(CrashAtLoad(), flavor="python",
                                          input_example=iris[0].head(5))  # fmt: skip
    dep = versions["good"].deploy(replicas=2)
    with pytest.raises(mnb.DeploymentError, match=r"crash loop|cannot become ready"):
        crashing.deploy(strategy=strategy, timeout=90)
    assert dep.status()["traffic"] == {1: 100.0}
    assert dep.status()["replicas"] == {"ready": 2, "desired": 2}
    assert _phase(dep) == "failed"
    assert re.search(r"crash loop|cannot become ready", dep.status()["rollout"]["message"])
    assert dep.revisions().set_index("revision").loc[2, "status"] == "failed"
    wait_for(lambda: [r["revision"] for r in dep.status()["revisions"]] == [1], 60,
             "the failed revision to stop")  # fmt: skip


def test_router_backs_off_a_crash_looping_replica(dws, versions, iris) -> None:
    from mlops_nb.deploy import router as router_module

    crashing = dws.model("iris").register(CrashAtLoad(), flavor="python",
                                          input_example=iris[0].head(5))  # fmt: skip
    dep = versions["good"].deploy()
    backend = dep._backend_of(dep._record())
    desired = st.read(dws, "iris").desired
    spec = spec_of(crashing, 99, 1, 0)
    backend.apply(desired.with_revisions([*desired.revisions, spec]), generation=10**6)
    # The wait before each restart doubles: 0.5 s, 1 s, 2 s, 4 s (and so on, to a cap).
    waits: dict[int, float] = {}

    def four_restarts() -> bool:
        rev = backend.observe().revision(99)
        if rev is not None and rev.restarts:
            waits.setdefault(rev.restarts, rev.backoff_s)
            if rev.restarts >= 3:
                assert rev.crash_loop, rev
        return max(waits, default=0) >= 4 and len(waits) >= 3

    wait_for(four_restarts, 120, "four restarts of the crashing replica")
    first = router_module.BACKOFF_FIRST
    # Each restart seen (a slow poll may miss one) waited twice as long as the one before.
    assert waits == {n: first * 2 ** (n - 1) for n in waits}, waits
    assert dep.status()["state"] == "degraded"
    (crashing_status,) = [r for r in dep.status()["revisions"] if r["revision"] == 99]
    assert crashing_status["crash_loop"] and crashing_status["backoff_s"] >= first * 8
    # The generation guard: an older configuration does not replace a newer one.
    backend.apply(desired, generation=1)
    assert backend.observe().revision(99) is not None
    backend.apply(desired, generation=10**6 + 1)
    wait_for(lambda: backend.observe().revision(99) is None, 30, "the newer configuration")


def test_a_replica_stuck_on_a_prediction_is_replaced(dws, iris) -> None:
    X, y = iris

    class Hanging:
        """Answers like the classifier, but hangs on a sepal length over 100."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def predict(self, frame: Any) -> Any:
            if float(frame["sepal length (cm)"].max()) > 100:
                time.sleep(600)
            return self.inner.predict(frame)

    v = dws.model("iris").register(Hanging(LogisticRegression(max_iter=500).fit(X, y)),
                                   flavor="python", input_example=X.head(5))  # fmt: skip
    dep = v.deploy(server={"stuck_after_s": 1, "timeout_s": 3, "replace_unready_after_s": 2})
    (first,) = dep.status()["revisions"][0]["replicas"]
    hung = _body(iris)
    hung[0]["sepal length (cm)"] = 1000.0
    url = dep.endpoint + "/v2/models/iris/infer"
    # The request itself gets the server's timeout; the predict goes on hanging.
    r = httpx.post(url, json=hung, timeout=60)
    assert r.status_code == 504 and "timeout_s=3" in r.json()["error"], r.text

    def replaced() -> bool:
        (rev,) = dep.status()["revisions"]
        reps = rev["replicas"]
        return rev["restarts"] >= 1 and len(reps) == 1 and reps[0]["pid"] != first["pid"] \
            and reps[0]["ready"]  # fmt: skip

    wait_for(replaced, 120, "the stuck replica to be replaced")
    assert not psutil.pid_exists(first["pid"]) or \
        psutil.Process(first["pid"]).status() == psutil.STATUS_ZOMBIE  # fmt: skip
    ok = httpx.post(url, json=_body(iris), timeout=30)
    assert ok.status_code == 200, ok.text


def test_server_options_are_checked_and_kept(dws, versions) -> None:
    with pytest.raises(mnb.InvalidArgument, match=r"unknown server option 'worker'.*workers"):
        versions["good"].deploy(server={"worker": 2})
    with pytest.raises(mnb.InvalidArgument, match=r"'timeout_s'.*from 0.01"):
        versions["good"].deploy(server={"timeout_s": -1})
    with pytest.raises(mnb.InvalidArgument, match=r"'batching'.*True or False"):
        versions["good"].deploy(server={"batching": "yes"})
    with pytest.raises(mnb.InvalidArgument, match=r"must be a dict"):
        versions["good"].deploy(server=["workers", 2])
    assert dws.deployments().empty  # nothing was started or recorded
    dep = versions["good"].deploy(server={"workers": 3, "max_body_bytes": 4096})
    assert st.read(dws, "iris").desired.server == {"max_body_bytes": 4096, "workers": 3}
    (rep,) = dep.status()["revisions"][0]["replicas"]
    stats = httpx.get(f"http://127.0.0.1:{rep['port']}/v2/health/stats", timeout=10).json()
    assert stats["workers"] == 3
    # The router holds bodies to the deployment's limit too.
    big = httpx.post(dep.endpoint + "/v2/models/iris/infer", content=b"x" * 5000, timeout=30)
    assert big.status_code == 413
    # A later deploy without `server` keeps the deployment's options.
    versions["other"].deploy()
    assert st.read(dws, "iris").desired.server == {"max_body_bytes": 4096, "workers": 3}
    # The target is fixed at creation: other settings, or another kind, are refused with
    # nothing applied; naming the same target again is fine.
    before = st.read(dws, "iris").generation
    with pytest.raises(mnb.InvalidArgument, match=r"flush_seconds=2\.0 \(asked 5\.0\).*delete"):
        versions["good"].deploy(target=mnb.Local(flush_seconds=5.0))
    with pytest.raises(mnb.InvalidArgument, match=r"runs on 'local'; delete it first"):
        versions["good"].deploy(target=mnb.Kubernetes())
    assert st.read(dws, "iris").generation == before
    versions["good"].deploy(target=mnb.Local())
    assert (dep.status()["revision"], dep.status()["traffic"]) == (3, {1: 100.0})


def test_redaction_set_on_the_deployment_merges_over_the_versions(dws, versions, iris) -> None:
    X, _ = iris
    with pytest.raises(mnb.InvalidArgument, match=r"redaction rule for 'petal width \(cm\)'"):
        versions["good"].deploy(server={"redact": {"petal width (cm)": "blur"}})
    odd = dws.model("iris").register(versions["good"].load(), input_example=X.head(5),
                                     params={"mlops.redact": {"sepal width (cm)": "mask"}})  # fmt: skip
    with pytest.raises(mnb.InvalidArgument, match=r"params\['mlops.redact'\].*server=\{'redact'"):
        odd.deploy()
    # A rule for a feature the version does not have (misspelled) would redact nothing.
    misspelled = r"'petal widht \(cm\)', which iris v\d+ has no feature of: its features are"
    with pytest.raises(mnb.InvalidArgument, match=misspelled):
        versions["good"].deploy(server={"redact": {"petal widht (cm)": "drop"}})
    typo = dws.model("iris").register(versions["good"].load(), input_example=X.head(5),
                                      params={"mlops.redact": {"petal widht (cm)": "drop"}})  # fmt: skip
    with pytest.raises(mnb.InvalidArgument, match=misspelled):
        typo.deploy()
    with pytest.raises(mnb.InvalidArgument, match=misspelled):
        ServeSpec.of(typo)
    assert dws.deployments().empty  # nothing was started or recorded
    # The deployment's rule for that feature replaces the version's unusable one.
    odd.deploy(name="odd", server={"redact": {"sepal width (cm)": "drop"}}).delete()
    # The version drops two features; the deployment coarsens one of them instead, and
    # another one.
    private = dws.model("iris").register(
        versions["good"].load(), input_example=X.head(5),
        params={"mlops.redact": {"petal width (cm)": "drop", "sepal width (cm)": "drop"}},
    )  # fmt: skip
    coarse = {"coarse": 1}
    dep = private.deploy(
        server={"redact": {"sepal length (cm)": coarse, "sepal width (cm)": coarse}}
    )
    # New server options keep the deployment's redaction.
    private.deploy(server={"workers": 3})
    assert st.read(dws, "iris").desired.server == {
        "redact": {"sepal length (cm)": coarse, "sepal width (cm)": coarse}, "workers": 3,
    }  # fmt: skip
    with httpx.Client(timeout=30) as client:
        r = client.post(dep.endpoint + "/v2/models/iris/infer", json=X.head(8).to_dict("records"))
        assert r.status_code == 200, r.text
    mon = dws.monitor("iris")

    def logged() -> bool:
        dep.flush_logs()
        return len(mon.predictions()) == 8

    wait_for(logged, 60, "the 8 predictions to reach the log")
    rows = mon.predictions()
    for feature in ("sepal length (cm)", "sepal width (cm)"):
        assert rows["feature." + feature].tolist() == (X[feature].head(8) // 1).tolist()
    assert "feature.petal width (cm)" not in rows.columns
    assert rows["feature.petal length (cm)"].tolist() == X["petal length (cm)"].head(8).tolist()
    assert mon.redaction()[["feature", "rule"]].values.tolist() == [
        ["petal width (cm)", "drop"], ["sepal length (cm)", "coarse:1"],
        ["sepal width (cm)", "coarse:1"],
    ]  # fmt: skip


def test_a_post_is_not_retried_once_sent(dws, versions, iris, tmp_path) -> None:
    marker = tmp_path / "calls.txt"

    class Recording:
        def __init__(self, path: str, owner: int) -> None:
            self.path, self.owner = path, owner

        def predict(self, frame: Any) -> Any:
            if os.getpid() == self.owner:  # registration infers the signature here
                return [0] * len(frame)
            with open(self.path, "a") as fh:
                fh.write(f"{os.getpid()}\n")
            time.sleep(3.0)
            return [0] * len(frame)

    v = dws.model("iris").register(Recording(str(marker), os.getpid()), flavor="python",
                                   input_example=iris[0].head(5))  # fmt: skip
    dep = v.deploy(replicas=2)
    result: dict[str, Any] = {}

    def call() -> None:
        result["r"] = httpx.post(dep.endpoint + "/v2/models/iris/infer", json=_body(iris),
                                 timeout=60)  # fmt: skip

    thread = threading.Thread(target=call)
    thread.start()
    wait_for(lambda: marker.exists() and marker.read_text().strip() != "", 60, "the prediction")
    os.kill(int(marker.read_text().split()[0]), signal.SIGKILL)
    thread.join(timeout=60)
    assert result["r"].status_code == 502
    time.sleep(1.0)
    assert len(marker.read_text().split()) == 1  # never sent to the other replica


def test_the_router_refuses_large_bodies_without_buffering_them(dws, versions) -> None:
    dep = versions["good"].deploy()
    router = psutil.Process(dep._record().admin["pid"])
    before = router.memory_info().rss
    body = b"[" + b"1.0," * (50 * 1024 * 1024 // 4) + b"1.0]"  # ~50 MB
    r = httpx.post(dep.endpoint + "/v2/models/iris/infer", content=body, timeout=60,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413 and "larger than" in r.json()["error"]

    def chunks() -> Any:
        for _ in range(50):
            yield b"1.0," * (1024 * 1024 // 4)

    r = httpx.post(dep.endpoint + "/v2/models/iris/infer", content=chunks(), timeout=60)
    assert r.status_code == 413
    assert router.memory_info().rss - before < 30 * 1024 * 1024
    ok = httpx.post(
        dep.endpoint + "/v2/models/iris/infer",
        json=[
            dict.fromkeys(
                ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
                1.0,
            )
        ],
    )
    assert ok.status_code == 200


def test_deploy_keeps_the_replica_count_and_status_reads_both_ways(dws, versions) -> None:
    dep = versions["good"].deploy(replicas=2)
    versions["other"].deploy()
    status = dep.status()
    assert status.replicas == status["replicas"] == {"ready": 2, "desired": 2}
    assert isinstance(status, Status)
    assert status.to_dict()["traffic"] == {2: 100.0} and set(status) >= {"state", "rollout"}
    assert all(r["rss_bytes"] > 0 for r in status.revisions[0]["replicas"])
    body = [dict.fromkeys(["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                           "petal width (cm)"], 1.0)]  # fmt: skip
    with httpx.Client(timeout=10) as client:
        for _ in range(10):
            assert client.post(dep.endpoint + "/v2/models/iris/infer", json=body).status_code == 200
    status = dep.status()
    assert [(s["revision"], s["requests"], s["error_rate"]) for s in status.stats] == [(2, 10, 0.0)]
    assert len(status.resources) == 2
    assert all(r["rss_mb"] > 0 and r["stuck"] is False and r["dropped"] == {}
               for r in status.resources)  # fmt: skip
    # Three clients keep a connection open to one replica: its status counts them. (The
    # server closes a connection idle for 5 s: on a slow machine, touch them again.)
    first = status.revisions[0]["replicas"][0]
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{first['port']}", timeout=10)
               for _ in range(3)]  # fmt: skip

    def counted() -> bool:
        for c in clients:
            assert c.get("/v2/health/live").status_code == 200
        counts = {r["replica"]: r["open_connections"] for r in dep.status().resources}
        return counts[first["id"]] >= 3

    try:
        wait_for(counted, 60, "the replica's status to count three open connections")
    finally:
        for c in clients:
            c.close()


def test_proxy_settings_do_not_reroute_calls_to_the_router(dws, versions, monkeypatch) -> None:
    # A proxy in the environment (as on many company laptops) that nothing answers: the
    # workspace's own calls to its routers on 127.0.0.1 must not go through it.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    dep = versions["good"].deploy()
    assert dep.status().replicas == {"ready": 1, "desired": 1}
    dep.delete()
    assert dep.status()["state"] == "deleted"


def test_an_in_memory_workspace_refuses_to_deploy(iris) -> None:
    ws = mnb.open(":memory:")
    v = ws.model("iris").register(lambda frame: [0] * len(frame), flavor="python")
    with pytest.raises(mnb.InvalidArgument, match="open a file"):
        v.deploy()
    ws.close()


def test_a_stale_writer_gets_a_conflict_and_changes_nothing(dws, versions) -> None:
    dep = versions["good"].deploy()
    old = st.read(dws, "iris")
    dep.scale(2)
    with pytest.raises(mnb.DeploymentConflict, match=r"changed meanwhile.*scale to 2"):
        st.commit(dws, old, st.Change("scale to 5", replicas=5))
    assert dep.status()["replicas"] == {"ready": 2, "desired": 2}
    assert st.read(dws, "iris").replicas == 2


def test_a_failed_ab_start_stops_what_it_started(dws, versions, iris) -> None:
    crashing = dws.model("iris").register(CrashAtLoad(), flavor="python",
                                          input_example=iris[0].head(5))  # fmt: skip
    dep = versions["good"].deploy()
    with pytest.raises(mnb.DeploymentError, match=r"cannot become ready|crash"):
        crashing.deploy(strategy=mnb.ABTest(split={1: 50, crashing.number: 50}), timeout=60)
    assert dep.status()["traffic"] == {1: 100.0}
    wait_for(lambda: [r["revision"] for r in dep.status()["revisions"]] == [1], 60,
             "the A/B revision to stop")  # fmt: skip


def test_a_router_whose_workspace_is_gone_stops(tmp_path, versions) -> None:
    folder = tmp_path / "gone"
    folder.mkdir()
    ws = mnb.open(folder / "ws.duckdb")
    v = ws.model("iris").register(versions["good"].load(), input_example=None)
    dep = v.deploy()
    router = psutil.Process(dep._record().admin["pid"])
    procs = [router, *router.children(recursive=True)]
    ws.close()
    for p in folder.glob("ws.duckdb*"):
        p.unlink()
    _, alive = psutil.wait_procs(procs, timeout=60)
    assert alive == []


@pytest.mark.parametrize(("on_inconclusive", "phase"), [("abort", "aborted"), ("pause", "paused")])
def test_inconclusive_analysis_holds_until_the_progress_deadline(dws, versions, on_inconclusive,
                                                                 phase) -> None:  # fmt: skip
    dep = versions["good"].deploy()
    guard = mnb.Guard(max_error_rate=0.05, interval="0.3s", min_samples=1000)  # no traffic
    canary = mnb.Canary(steps=[50, 100], pause="1s", guard=guard, progress_deadline="3s",
                        on_inconclusive=on_inconclusive)  # fmt: skip
    versions["other"].deploy(strategy=canary)
    wait_for(lambda: _phase(dep) in ("holding", phase), 60, "the hold")
    wait_for(lambda: _phase(dep) == phase, 90, f"the canary to be {phase}")
    status = dep.status()
    assert "inconclusive analysis" in status["rollout"]["message"]
    assert set(dep.checks()["verdict"]) == {"inconclusive"}
    if phase == "paused":
        assert status["state"] == "paused" and status["traffic"] == {1: 50.0, 2: 50.0}
        dep.promote()
        dep.wait(timeout=60)
        assert dep.status()["traffic"] == {2: 100.0}
    else:
        assert status["traffic"] == {1: 100.0}


_STEER = textwrap.dedent(
    """
    import sys
    import mlops_nb as mnb
    ws = mnb.open(sys.argv[1])
    dep = ws.deployment("iris")
    print(dep.status()["rollout"]["phase"])
    dep.promote()
    dep.wait(timeout=120)
    print(dep.status()["traffic"])
    """
)


def test_a_canary_is_steered_from_another_process(dws, versions) -> None:
    dep = versions["good"].deploy()
    versions["other"].deploy(strategy=mnb.Canary(steps=[30], pause=None))
    wait_for(lambda: _phase(dep) == "paused", 60, "the canary to wait for promote()")
    out = subprocess.run([sys.executable, "-c", _STEER, dws._store.path], capture_output=True,
                         text=True, timeout=240)  # fmt: skip
    assert out.stdout.split("\n")[:2] == ["paused", "{2: 100.0}"], out.stderr
    assert dep.status()["rollout"]["phase"] == "succeeded"


def test_delete_during_a_canary_returns_once_its_controller_has_stopped(dws, versions) -> None:
    from mlops_nb.deploy import controller

    dep = versions["good"].deploy()
    versions["other"].deploy(strategy=mnb.Canary(steps=[50, 100], pause="10m"))
    wait_for(lambda: controller.running(dws, "iris"), 60, "the canary's controller")
    dep.delete()
    # The controller has closed the workspace and let go of its lock once delete() has
    # returned, so nothing writes in the workspace's folders (a notebook may remove them
    # next); its process then only has to exit.
    assert not controller.running(dws, "iris")
    assert leftovers(Path(dws.path).parent) == []


def test_a_deployment_can_predict_in_worker_processes(dws, versions, iris) -> None:
    with pytest.raises(mnb.InvalidArgument, match=r"'pool'.*'threads', 'processes'"):
        versions["good"].deploy(server={"pool": "forked"})
    dep = versions["good"].deploy(server={"pool": "processes", "workers": 2})
    r = httpx.post(dep.endpoint + "/v2/models/iris/infer", json=_body(iris), timeout=30)
    assert r.status_code == 200, r.text
    (rep,) = dep.status()["revisions"][0]["replicas"]
    stats = httpx.get(f"http://127.0.0.1:{rep['port']}/v2/health/stats", timeout=10).json()
    assert stats["pool"] == "processes" and len(stats["worker_pids"]) == 2
    workers = [psutil.Process(p) for p in stats["worker_pids"]]
    replica = psutil.Process(rep["pid"])
    assert all(w.ppid() == replica.pid for w in workers)
    # The replica's memory in status() is its own and its worker processes'.
    (usage,) = dep.status()["resources"]
    assert (
        usage["rss_mb"] * 2**20
        > replica.memory_info().rss + sum(w.memory_info().rss for w in workers) * 0.8
    )
    dep.delete()
    wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE
                             for w in workers), 30, "worker processes to stop")  # fmt: skip
