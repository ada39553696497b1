"""The registry view over a real workspace file: buttons clicked, the workspace checked."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import mlops_nb as mnb
from mlops_nb.widgets import RegistryView, view


def _promote(v: RegistryView, version: int, stage: str, reason: str) -> None:
    v.version_select.value = version
    v.stage_select.value = stage
    v.promote_button.click()
    v.confirm.reason.value = reason
    v.confirm.confirm.click()


def _audit(ws: mnb.Workspace) -> list[tuple[Any, ...]]:
    frame = ws.audit("iris")
    return list(frame[["action", "version", "to_value", "reason"]].itertuples(index=False))


def test_refused_promotion_shows_the_rule_and_numbers_and_changes_nothing(
    registry: mnb.Workspace,
) -> None:
    v = registry.model("iris").view()
    _promote(v, 1, "staging", "try the stump")
    assert "mnb-error" in v.message.value
    assert "min_metrics.accuracy" in v.message.value
    assert "0.667" in v.message.value and "0.9" in v.message.value
    assert registry.model("iris").version(1).stage == "development"
    assert _audit(registry)[-1][:3] == ("promote_refused", 1, "staging")
    # The refusal is part of the static copy too.
    assert "min_metrics.accuracy" in v._repr_mimebundle_()["text/html"]


def test_promote_asks_for_a_reason_and_a_confirmation(registry: mnb.Workspace) -> None:
    v = registry.view()
    v.model_select.value = "iris"
    v.version_select.value = 2
    v.stage_select.value = "staging"
    v.promote_button.click()
    assert v.confirm.pending and v.confirm.box.layout.display == ""
    assert "Promote iris v2 to staging?" in v.confirm.prompt.value
    v.confirm.confirm.click()  # no reason given: nothing happens
    assert "give a reason" in v.message.value
    assert registry.model("iris").version(2).stage == "development"
    v.confirm.cancel.click()
    assert not v.confirm.pending and v.confirm.box.layout.display == "none"

    _promote(v, 2, "staging", "best offline accuracy")
    assert "iris v2 is now staging" in v.message.value
    assert registry.model("iris").version(2).stage == "staging"
    assert _audit(registry)[-1] == ("promote", 2, "staging", "best offline accuracy")
    # The table and the card were redrawn from the workspace.
    assert "staging" in v._html["card"]
    # The next stage offered for v2 is production.
    assert v.stage_select.value == "production"


def test_archive_approve_and_alias(registry: mnb.Workspace) -> None:
    v = view(registry.model("iris"))
    v.version_select.value = 2
    v.approve_button.click()
    v.confirm.reason.value = "reviewed the eval"
    v.confirm.confirm.click()
    approvals = registry.model("iris").version(2).approvals()
    assert approvals[["approver", "comment"]].values.tolist() == [["tester", "reviewed the eval"]]

    v.alias_text.value = "@champion"
    v.alias_button.click()
    v.confirm.reason.value = "the better one"
    v.confirm.confirm.click()
    assert registry.model("iris").aliases() == {"champion": 2}
    assert _audit(registry)[-1] == ("alias", 2, "@champion", "the better one")
    assert "@champion -&gt; iris v2" in v.message.value
    assert "champion" in v._html["versions"]

    v.version_select.value = 1
    v.archive_button.click()
    v.confirm.reason.value = "superseded"
    v.confirm.confirm.click()
    assert registry.model("iris").version(1).stage == "archived"
    assert _audit(registry)[-1] == ("promote", 1, "archived", "superseded")


def test_a_bad_alias_is_refused_inline(registry: mnb.Workspace) -> None:
    v = registry.model("iris").view()
    v.alias_text.value = "production"
    v.alias_button.click()
    v.confirm.reason.value = "oops"
    v.confirm.confirm.click()
    assert "would be read as a version reference" in v.message.value
    assert registry.model("iris").aliases() == {}


def test_refresh_shows_another_process_change(registry: mnb.Workspace) -> None:
    v = registry.model("iris").view()
    v.version_select.value = 2
    assert "development" in v._html["card"]
    done = subprocess.run(
        [sys.executable, "-m", "mlops_nb.cli", "--workspace", registry.path, "promote", "iris",
         "2", "staging", "--reason", "from a terminal"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "staging" not in v._html["card"]
    v.refresh_button.click()
    assert "staging" in v._html["card"]
    assert "v2 1.1.0 (staging)" in [label for label, _ in v.version_select.options]


def test_static_copy_and_reprs(registry: mnb.Workspace) -> None:
    v = registry.view()
    bundle = v._repr_mimebundle_()
    assert bundle["text/plain"] == f"<RegistryView Registry {registry.path}>"
    assert "application/vnd.jupyter.widget-view+json" in bundle
    html = bundle["text/html"]
    assert "<script" not in html
    assert 'class="mnb-stage"' in html and "iris-v1" in html  # badges and lineage
    assert "parent version" in html
    v.close()
    assert v.closed


def test_empty_workspace(tmp_path: Any) -> None:
    with mnb.open(tmp_path / "empty.duckdb") as ws:
        v = ws.view()
        assert "no models registered yet" in v.static_html()
        v.promote_button.click()
        assert "choose a version first" in v.message.value
