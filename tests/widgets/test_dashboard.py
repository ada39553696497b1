"""The team dashboard built headless over real workspaces, one tab at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import mlops_nb as mnb
from mlops_nb.widgets.dashboard import TABS, Dashboard
from mlops_nb.widgets.deployment import DeploymentView
from mlops_nb.widgets.drift import DriftView
from mlops_nb.widgets.monitoring import MonitoringView


def _select(board: Dashboard, tab: str) -> Any:
    board.tabs.selected_index = TABS.index(tab)
    return board.tabs.children[TABS.index(tab)]


def _html(widget: Any) -> str:
    """Every HTML value under ``widget``: what the tab shows as text."""
    own = str(widget.value) if hasattr(widget, "value") and isinstance(widget.value, str) else ""
    return own + "".join(_html(child) for child in getattr(widget, "children", ()))


def test_every_tab_builds_its_view(dws: mnb.Workspace, versions: Any, iris: Any) -> None:
    X, y = iris
    versions["good"].promote("production")  # drift's training baseline is production's
    dep = versions["good"].deploy(replicas=1)
    rows = np.random.default_rng(0).integers(0, len(X), 200)
    dws.monitor("iris").log(X.iloc[rows], y.iloc[rows].to_numpy(), version=1)
    board = Dashboard(dws)
    assert set(board.views) == {"Models"}  # the other tabs are built when first opened

    _select(board, "Deployments")
    view = board.views["deployment"]
    assert isinstance(view, DeploymentView) and view.dep.name == dep.name
    assert view.timer.running and "replicas ready/desired" in view.static_html()

    tab = _select(board, "Drift")
    drift = board.views["model"]
    assert isinstance(drift, DriftView) and drift.report.model == "iris"
    assert drift.report.n_cur == 200 and "mnb-error" not in _html(tab)
    assert dws.monitor("iris").history().empty  # looking does not store a run

    _select(board, "Monitoring")
    monitoring = board.views["monitor"]
    assert isinstance(monitoring, MonitoringView)
    assert int(monitoring.frame["count"].sum()) == 200

    _select(board, "Deployments")  # opened once: the same view, not a second timer
    assert board.views["deployment"] is view
    board.close()
    assert not view.timer.running


def test_tabs_say_when_there_is_nothing_to_show(tmp_path: Path) -> None:
    with mnb.open(tmp_path / "empty.duckdb", create=True) as ws:
        board = Dashboard(ws)
        assert "no deployments in this workspace" in _html(_select(board, "Deployments"))
        assert "no models in this workspace" in _html(_select(board, "Drift"))
        assert "no monitors in this workspace" in _html(_select(board, "Monitoring"))
        assert set(board.views) == {"Models"}
        board.close()


def test_a_drift_that_cannot_run_is_shown_in_its_tab(registry: mnb.Workspace) -> None:
    """The registry's models were registered without reference data: no training baseline."""
    board = Dashboard(registry)
    tab = _select(board, "Drift")
    assert "mnb-error" in _html(tab) and "reference_data" in _html(tab)
    assert "model" not in board.views
    board.close()
