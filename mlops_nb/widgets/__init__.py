"""Notebook views of workspaces, models, deployments, drift reports and monitors.

Every view is an ipywidgets box whose charts are SVG drawn offline (:mod:`.charts`), and
whose mimebundle also carries a static HTML copy, so saved and exported notebooks stay
readable without JavaScript. Reach them as ``ws.view()``, ``ws.model(name).view()``,
``report.view()``, ``mon.view()``, or ``view(obj)`` for any of them (deployments too).
"""

from __future__ import annotations

from typing import Any

from .base import View
from .registry import RegistryView

__all__ = ["RegistryView", "View", "view"]


def view(obj: Any, **options: Any) -> View:
    """The view of a Workspace, Model, Deployment, DriftReport or Monitor."""
    from ..errors import InvalidArgument
    from ..registry import Model
    from ..workspace import Workspace

    if isinstance(obj, Workspace):
        return RegistryView(obj, **options)
    if isinstance(obj, Model):
        return RegistryView(obj._ws, obj.name, **options)
    kind = type(obj).__name__
    if kind == "Deployment":
        from .deployment import DeploymentView

        return DeploymentView(obj, **options)
    if kind == "DriftReport":
        from .drift import DriftView

        return DriftView(obj, **options)
    if kind == "Monitor":
        from .monitoring import MonitoringView

        return MonitoringView(obj, **options)
    raise InvalidArgument(
        f"no view for {kind}; views exist for Workspace, Model, Deployment, DriftReport and Monitor"
    )
