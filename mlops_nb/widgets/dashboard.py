"""The team dashboard behind ``mlops-nb ui``: every view of one workspace, in tabs.

Models (the registry view), deployments (one view per deployment, refreshing while
shown), drift (the latest stored run of a model, or a new run on demand) and monitoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .. import render
from ..errors import MlopsError
from ..workspace import Workspace
from ..workspace import open as open_workspace
from .deployment import DeploymentView
from .drift import DriftView
from .monitoring import MonitoringView
from .registry import RegistryView

TABS = ("Models", "Deployments", "Drift", "Monitoring")


class Dashboard:
    """Tabs of views over one workspace; each tab is built when first opened."""

    def __init__(self, ws: Workspace, current: str = "last 24h") -> None:
        self.ws = ws
        self.current = current
        self.registry = RegistryView(ws)
        self.tabs = widgets.Tab(children=[self.registry.root, *(widgets.VBox() for _ in TABS[1:])])
        self.tabs.add_class("mnb-dashboard")
        for i, title in enumerate(TABS):
            self.tabs.set_title(i, title)
        self.views: dict[str, Any] = {"Models": self.registry}
        self.tabs.observe(lambda _c: self._open(TABS[self.tabs.selected_index or 0]),
                          names="selected_index")  # fmt: skip

    def _picker(self, what: str, names: list[str], show: Any) -> widgets.VBox:
        select = widgets.Dropdown(options=names, description=what)
        select.add_class(f"mnb-{what}-select")
        holder = widgets.VBox()
        message = widgets.HTML()

        def pick(_change: object = None) -> None:
            if select.value is None:
                message.value = render.note(f"no {what}s in this workspace")
                return
            old = self.views.pop(what, None)
            if old is not None:
                old.close()
            try:
                self.views[what] = view = show(select.value)
            except MlopsError as e:
                message.value = render.note(str(e), "error")
                holder.children = []
                return
            message.value = ""
            holder.children = [view.root]

        select.observe(pick, names="value")
        pick()
        return widgets.VBox([select, message, holder])

    def _open(self, tab: str) -> None:
        index = TABS.index(tab)
        if tab == "Models" or self.tabs.children[index].children:
            return
        models = self.ws.models()["name"].tolist()
        if tab == "Deployments":
            names = self.ws.deployments()["name"].tolist()
            box = self._picker("deployment", names,
                               lambda n: DeploymentView(self.ws.deployment(n)).start())  # fmt: skip
        elif tab == "Drift":
            box = self._picker("model", models, self._drift)
        else:
            box = self._picker("monitor", models, lambda n: MonitoringView(self.ws.monitor(n)))
        self.tabs.children[index].children = [box]

    def _drift(self, model: str) -> DriftView:
        # Not stored: looking at the dashboard should not add runs to the history.
        return DriftView(self.ws.monitor(model).drift("training", self.current, store=False))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.tabs._repr_mimebundle_(**kwargs)
        bundle["text/html"] = self.registry.static_html()
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return f"<Dashboard {self.ws.path}>"

    def close(self) -> None:
        for view in self.views.values():
            view.close()
        self.tabs.close()


def show(path: str | Path) -> Dashboard:
    """Open the workspace at ``path`` and build its dashboard (the ``ui`` notebook's cell)."""
    return Dashboard(open_workspace(path))
