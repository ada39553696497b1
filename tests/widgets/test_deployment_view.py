"""The deployment view over real local deployments: router and replicas on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import httpx

import mlops_nb as mnb
from mlops_nb import render
from mlops_nb.widgets import view
from mlops_nb.widgets.deployment import records
from tests.deploy.conftest import Traffic, wait_for


def _click(v: Any, button: Any, reason: str | None = None) -> None:
    button.click()
    if reason is not None or v.confirm.pending:
        v.confirm.reason.value = reason or ""
        v.confirm.confirm.click()
    assert v.action is not None
    assert v.action.result(timeout=180), v.message.value


def test_canary_controls_rollback_and_timer(dws: mnb.Workspace, versions: Any, iris: Any) -> None:
    X, _ = iris
    dep = versions["good"].deploy(replicas=1)
    v = view(dep, interval=0.2)
    assert not v.timer.running
    v._repr_mimebundle_()  # shown: the timer starts
    assert v.timer.running
    wait_for(lambda: v.timer.ticks >= 2, 60, "two refreshes")
    assert v.promote_button.disabled and not v.rollback_button.disabled

    versions["other"].deploy(strategy=mnb.Canary(steps=[50], pause=None))
    wait_for(lambda: dep.status()["traffic"] == {1: 50.0, 2: 50.0}, 120, "canary at 50%")
    wait_for(lambda: not v.promote_button.disabled, 30, "the view to see the canary")
    wait_for(lambda: "weight 50%" in v._html["summary"], 30, "the view to see its first step")
    assert "canary" in v._html["summary"]
    assert v._html["traffic"].startswith("<svg")

    v.pause_button.click()  # asks first: nothing happens on one click
    assert v.confirm.pending and v.action is None
    assert dep.status()["rollout"]["paused"] is False
    v.confirm.confirm.click()  # no reason given: refused
    assert "give a reason" in v.message.value and v.action is None
    _click(v, v.pause_button, reason="checking p95 by hand")
    assert dep.status()["rollout"]["paused"] is True
    _click(v, v.resume_button, reason="p95 is fine")
    assert dep.status()["rollout"]["paused"] is False
    with Traffic(dep.endpoint, X.head(1).to_dict("records")):
        _click(v, v.promote_button, reason="looks good")
        wait_for(lambda: dep.status()["traffic"] == {2: 100.0}, 120, "v2 at 100%")
    steered = dws.audit("iris").set_index("action")["reason"]
    assert steered["pause"] == "checking p95 by hand" and steered["resume"] == "p95 is fine"
    assert steered["promote_step"] == "looks good"

    _click(v, v.rollback_button, reason="v2 looks worse")
    assert dep.status()["traffic"] == {1: 100.0}
    audit = dws.audit("iris")
    assert audit.iloc[-1][["action", "reason"]].tolist() == ["rollback", "v2 looks worse"]
    assert "rollback to r1" in dep.revisions()["note"].fillna("").tolist()

    v.replicas.value = 2
    _click(v, v.scale_button, reason="more traffic")
    assert dep.status()["replicas"]["ready"] == 2
    assert dws.audit("iris").iloc[-1][["action", "to_value", "reason"]].tolist() == [
        "scale", "2", "more traffic"]  # fmt: skip
    v.close()
    assert not v.timer.running


def test_timer_stops_when_the_deployment_is_deleted(dws: mnb.Workspace, versions: Any) -> None:
    dep = versions["good"].deploy(replicas=1)
    v = view(dep, interval=0.2).start()
    wait_for(lambda: v.timer.ticks >= 1, 60, "a refresh")
    dep.delete()
    wait_for(lambda: not v.timer.running, 30, "the timer to stop")
    assert "deleted" in v.static_html()
    assert v.rollback_button.disabled


def test_live_section_shows_request_rate_p95_and_cpu_use(
    dws: mnb.Workspace, versions: Any, iris: Any
) -> None:
    X, _ = iris
    dep = versions["good"].deploy(replicas=1)
    v = view(dep, interval=60)  # refreshed by hand below
    assert "cpu_pct_core" in v._html["live"] and "…" in v._html["live"]  # one sample so far
    body = {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [float(X[c][0])]}
                       for c in X.columns]}  # fmt: skip
    with httpx.Client(timeout=10.0) as client:
        for _ in range(5):
            assert client.post(dep.endpoint + "/v2/models/iris/infer", json=body).is_success

    def counted() -> bool:
        v.refresh()
        stats = v.status["stats"]
        return bool(stats) and stats[0]["requests"] >= 5 and stats[0]["p95_ms"] is not None

    wait_for(counted, 60, "the five requests in the live stats")
    live = v._html["live"]
    stats = v.status["stats"][0]
    assert "rate_per_s" in live and render.fmt(stats["rate_per_s"]) in live
    assert "p95_ms" in live and render.fmt(stats["p95_ms"]) in live
    # Seen twice by now: a usage rate, not the cumulative seconds and not a placeholder.
    assert "cpu_pct_core" in live and "…" not in live and "cpu_seconds" not in live
    v.close()


def test_optional_status_parts_are_shown_when_present() -> None:
    from mlops_nb.widgets.deployment import live_html

    s = {"state": "healthy", "stats": {"versions": {"1": {"count": 30, "error_rate": 0.0,
                                                          "p95_ms": 4.5}}},
         "resources": [{"replica": "r1-0", "cpu_percent": 12.5, "rss_mb": 88.0}]}  # fmt: skip
    html = live_html(s)
    assert "live traffic" in html and "p95_ms" in html and "4.5" in html
    assert "resources per replica" in html and "r1-0" in html
    assert "not reported" in live_html({"state": "healthy"})
    assert records({"revisions": [{"revision": 1}]}) == [{"revision": 1}]
