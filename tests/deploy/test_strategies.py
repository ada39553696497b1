"""Rolling, blue-green, canary (success and automatic rollback) and A/B, end to end."""

from __future__ import annotations

import collections
import json
import time
from typing import Any

import httpx
import pytest

import mlops_nb as mnb
from tests.deploy.conftest import Traffic, wait_for


def _body(iris: Any) -> Any:
    return iris[0].head(1).to_dict("records")


def test_deploy_rolling_update_and_rollback(dws, versions, iris) -> None:
    dep = versions["good"].deploy(replicas=2)
    status = dep.status()
    assert status["state"] == "healthy"
    assert (status["revision"], status["version"]) == (1, 1)
    assert status["replicas"] == {"ready": 2, "desired": 2}
    assert status["traffic"] == {1: 100.0}
    assert dep.endpoint.startswith("http://127.0.0.1:")
    r = httpx.post(dep.endpoint + "/v2/models/iris/infer", json=_body(iris))
    assert r.status_code == 200 and r.headers["x-mlops-version"] == "1"
    with Traffic(dep.endpoint, _body(iris)) as traffic:
        versions["other"].deploy(replicas=2)  # Rolling by default
        time.sleep(0.3)
    assert traffic.failures() == []
    seen = traffic.versions()
    assert seen[0] == "1" and seen[-1] == "2"
    assert dep.status()["traffic"] == {2: 100.0}
    dep.rollback(reason="v2 looks worse")
    status = dep.status()
    assert (status["revision"], status["traffic"]) == (3, {1: 100.0})
    revs = dep.revisions()
    assert revs[["revision", "version", "status"]].values.tolist() == [
        [1, 1, "superseded"],
        [2, 2, "rolled_back"],
        [3, 1, "active"],
    ]
    assert revs.iloc[-1]["note"] == "rollback to r1"
    audit = dws.audit(model="iris")
    assert audit["action"].tolist()[-3:] == ["deploy", "deploy", "rollback"]
    frame = dws.deployments()
    assert frame[["name", "versions", "state"]].values.tolist() == [["iris", "v1", "healthy"]]


def test_blue_green_switch_loses_no_request(dws, versions, iris) -> None:
    dep = versions["good"].deploy()
    with Traffic(dep.endpoint, _body(iris), pause=0.0) as traffic:
        time.sleep(0.3)
        versions["other"].deploy(strategy=mnb.BlueGreen())
        time.sleep(0.3)
    assert traffic.failures() == []
    seen = traffic.versions()
    switch = seen.index("2")
    assert set(seen[:switch]) == {"1"} and set(seen[switch:]) == {"2"}  # one atomic switch
    assert len(seen) > 50


def test_canary_succeeds_to_full_traffic(dws, versions, iris) -> None:
    dep = versions["good"].deploy()
    guard = mnb.Guard(max_error_rate=0.05, interval="0.3s", window="5s", min_samples=5)
    with Traffic(dep.endpoint, _body(iris)) as traffic:
        versions["other"].deploy(strategy=mnb.Canary(steps=[30, 100], pause="1.5s", guard=guard))
        rollout = dep.status()["rollout"]
        assert rollout["weight"] == 30 and rollout["strategy"] == "canary"
        dep.wait(timeout=60)
    assert traffic.failures() == []
    assert dep.status()["traffic"] == {2: 100.0}
    assert dep.status()["rollout"]["phase"] == "succeeded"
    checks = dep.checks()
    assert not checks.empty and set(checks["verdict"]) <= {"pass", "inconclusive"}
    assert "pass" in set(checks["verdict"])
    counts = collections.Counter(traffic.versions())
    assert counts["1"] > 0 and counts["2"] > 0


@pytest.mark.parametrize(
    ("bad", "guard"),
    [
        ("failing", mnb.Guard(max_error_rate=0.01, interval="0.3s", window="3s",
                              failure_limit=2, min_samples=5)),
        ("slow", mnb.Guard(max_p95_latency_ms=40, interval="0.3s", window="3s",
                           failure_limit=2, min_samples=5)),
    ],
)  # fmt: skip
def test_canary_rolls_back_automatically(dws, versions, iris, bad, guard, receiver) -> None:
    dep = versions["good"].deploy()
    dws.add_webhook(receiver.url, secret=receiver.secret, events=["rolled_back"])
    canary = mnb.Canary(steps=[50, 100], pause="30s", guard=guard)
    with Traffic(dep.endpoint, _body(iris), pause=0.01) as traffic:
        versions[bad].deploy(strategy=canary)
        wait_for(lambda: dep.status()["rollout"]["phase"] == "aborted", 30, "the rollback")
        rolled_at = len(traffic.results)
        time.sleep(1.0)
    after = traffic.results[rolled_at:]
    assert after and all(code == 200 and v == "1" for code, v in after)
    assert dep.status()["traffic"] == {1: 100.0}
    revs = dep.revisions().set_index("revision")
    assert revs.loc[2, "status"] == "rolled_back"
    checks = dep.checks()
    assert checks["decision"].iloc[-1] == "rollback"
    assert (checks["verdict"] == "fail").sum() >= 2
    wait_for(lambda: bool(receiver.received), 30, "the rolled_back webhook")
    event = receiver.received[-1]["body"]
    assert event["data"]["deployment"] == "iris" and event["data"]["to_version"] == 1
    assert "rollback" in dws.audit()["action"].tolist()


def test_ab_split_matches_weights(dws, versions, iris) -> None:
    dep = versions["good"].deploy()
    versions["other"].deploy(strategy=mnb.ABTest(split={1: 70, 2: 30}, key="header:x-user-id"))
    assert dep.status()["traffic"] == {1: 70.0, 2: 30.0}
    n = 600
    with httpx.Client(timeout=10) as client:
        seen = [client.post(dep.endpoint + "/v2/models/iris/infer", json=_body(iris))
                .headers["x-mlops-version"] for _ in range(n)]  # fmt: skip
        share = seen.count("2") / n
        # Binomial sd at p=0.3, n=600 is 1.9 points: 6 points is a 3-sd tolerance.
        assert abs(share - 0.30) < 0.06
        sticky = {
            user: {client.post(dep.endpoint + "/v2/models/iris/infer", json=_body(iris),
                               headers={"x-user-id": user}).headers["x-mlops-version"]
                   for _ in range(5)}
            for user in [f"user-{i}" for i in range(40)]
        }  # fmt: skip
    assert all(len(v) == 1 for v in sticky.values())
    assert {next(iter(v)) for v in sticky.values()} == {"1", "2"}


def test_pause_resume_promote(dws, versions, iris) -> None:
    dep = versions["good"].deploy()
    versions["other"].deploy(strategy=mnb.Canary(steps=[10, 50], pause=None))
    wait_for(lambda: dep.status()["rollout"]["phase"] == "paused", 10, "the pause")
    assert dep.status()["traffic"] == {1: 90.0, 2: 10.0}
    dep.promote()
    wait_for(lambda: dep.status()["rollout"]["weight"] == 50, 10, "step 2")
    dep.pause()
    time.sleep(0.5)
    assert dep.status()["rollout"]["weight"] == 50
    dep.resume()
    dep.promote()
    dep.wait(timeout=30)
    assert dep.status()["traffic"] == {2: 100.0}
    with pytest.raises(mnb.DeploymentError, match="no rollout in progress"):
        dep.promote()


def test_each_canary_step_waits_for_a_check_of_its_own(dws, versions, iris) -> None:
    # Checks come every 2 s, pauses last 0.2 s: a step must not advance on the check that
    # let the previous step advance, so each of the two steps is passed by its own check.
    dep = versions["good"].deploy()
    guard = mnb.Guard(max_error_rate=0.05, interval="2s", window="5s", min_samples=5)
    with Traffic(dep.endpoint, _body(iris), pause=0.01) as traffic:
        versions["other"].deploy(strategy=mnb.Canary(steps=[20, 50], pause="0.2s", guard=guard))
        dep.wait(timeout=90)
    assert traffic.failures() == []
    assert dep.status()["rollout"]["phase"] == "succeeded"
    verdicts = dep.checks()["verdict"].tolist()
    assert verdicts.count("pass") >= 2, verdicts  # 20% -> 50%, then 50% -> 100%
    assert verdicts[-1] == "pass"


def test_the_bake_after_full_traffic_rolls_back_a_failing_version(dws, versions, iris) -> None:
    # The bake ends after 0.5 s, but its checks keep failing: it must hold at 100% until
    # failure_limit failed checks roll it back, not finish because its time ran out.
    dep = versions["good"].deploy()
    guard = mnb.Guard(max_error_rate=0.01, interval="0.3s", window="2s", failure_limit=5,
                      min_samples=5)  # fmt: skip
    canary = mnb.Canary(steps=[100], pause="0.1s", bake="0.5s", guard=guard)
    with Traffic(dep.endpoint, _body(iris), pause=0.01):
        versions["failing"].deploy(strategy=canary)
        wait_for(lambda: dep.status()["rollout"]["phase"] in ("aborted", "succeeded"), 60,
                 "the bake's end")  # fmt: skip
    assert dep.status()["rollout"]["phase"] == "aborted"
    assert dep.status()["traffic"] == {1: 100.0}
    checks = dep.checks()
    assert (checks["verdict"] == "fail").sum() >= 5 and checks["decision"].iloc[-1] == "rollback"
    row = dws.audit().query("action == 'rollback'").iloc[-1]
    assert (row["from_value"], row["to_value"]) == ("r2 (v3)", "r1 (v1)")
    details = json.loads(row["details"])
    assert (details["from_version"], details["to_version"], details["deployment"]) == (3, 1, "iris")
