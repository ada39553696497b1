"""Who may promote and approve, upper metric bounds, and who acted in the audit log."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import duckdb
import pytest

import mlops_nb as mnb
from mlops_nb import schema


def _stages(ws: mnb.Workspace) -> dict[int, str]:
    return dict(ws.model("churn").versions()[["version", "stage"]].itertuples(index=False))


def test_promoters_are_checked_before_anything_changes(
    ws: mnb.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = ws.model("churn")
    m.register({"v": 1})
    m.register({"v": 2})
    m.version(1).promote("production")
    ws.set_policy(mnb.Policy(promoters={"production": ["ana", "raj"]}))
    monkeypatch.setenv("MLOPS_NB_USER", "bob")
    assert m.version(2).promote("staging").stage == "staging"  # no role for staging
    before = _stages(ws)
    with pytest.raises(mnb.PromotionRefused, match="bob may not promote to production") as err:
        m.version(2).promote("production", reason="ship")
    assert err.value.rule == "promoters"
    assert _stages(ws) == before  # v1 still production, v2 not archived or moved
    last = ws.audit(model="churn").iloc[-1]
    assert (last["action"], last["actor"], last["to_value"]) == ("promote_refused", "bob",
                                                                 "production")  # fmt: skip
    monkeypatch.setenv("MLOPS_NB_USER", "raj")
    assert m.version(2).promote("production").stage == "production"
    assert _stages(ws) == {2: "production", 1: "archived"}


def test_only_named_approvers_count(ws: mnb.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    m = ws.model("churn")
    v = m.register({"v": 1})
    m.set_policy(mnb.Policy(approvals=1, approvers=["lee"]))
    monkeypatch.setenv("MLOPS_NB_USER", "bob")
    with pytest.raises(mnb.PromotionRefused, match=r"bob is not an approver.*lee") as err:
        v.approve(comment="looks fine")
    assert err.value.rule == "approvers"
    assert v.approvals().empty
    assert ws.audit(model="churn")["action"].tolist()[-1] == "approve_refused"
    with pytest.raises(mnb.PromotionRefused, match="has 0"):
        v.promote("production")
    monkeypatch.setenv("MLOPS_NB_USER", "lee")
    v.approve()
    assert v.promote("production").stage == "production"


def test_max_metrics(ws: mnb.Workspace) -> None:
    m = ws.model("reg")
    rough = m.register({"v": 1}, metrics={"rmse": 4.2})
    fine = m.register({"v": 2}, metrics={"rmse": 2.5})
    bare = m.register({"v": 3})
    m.set_policy(mnb.Policy(max_metrics={"rmse": 3.0}))
    with pytest.raises(mnb.PromotionRefused, match=r"4\.2, above the maximum 3") as err:
        rough.promote("staging")
    assert err.value.rule == "max_metrics.rmse"
    with pytest.raises(mnb.PromotionRefused, match="required"):
        bare.promote("staging")
    assert fine.promote("staging").stage == "staging"
    assert m.policy == mnb.Policy(max_metrics={"rmse": 3.0})
    assert repr(m.policy).endswith("max_metrics={'rmse': 3.0})")


def test_audit_keeps_the_login_beside_an_override(
    ws: mnb.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.model("churn").register({"v": 1})  # MLOPS_NB_USER=tester (conftest)
    monkeypatch.delenv("MLOPS_NB_USER")
    ws.model("churn").version(1).promote("staging")
    rows = ws.audit()[["actor", "os_user", "action"]].to_dict("records")
    me = getpass.getuser()
    assert rows == [
        {"actor": "tester", "os_user": me, "action": "register"},
        {"actor": me, "os_user": me, "action": "promote"},
    ]


def test_schema_4_file_gains_the_os_user_column(tmp_path: Path) -> None:
    path = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(path))
    schema.migrate(con, str(path), target=4)
    con.execute(
        "INSERT INTO audit (happened_at, actor, action, details) VALUES (now(), 'old', "
        "'policy', ?)",
        [json.dumps({})],
    )
    con.close()
    with mnb.open(path) as ws:
        assert ws._store.read(schema.current_version) == schema.SCHEMA_VERSION
        ws.model("m").register({"v": 1})
        frame = ws.audit()
        assert frame["actor"].tolist() == ["old", "tester"]
        assert frame["os_user"].isna().tolist() == [True, False]
