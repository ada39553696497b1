"""The run view: static HTML and text always, a live ipywidgets view when installed.

The widget is a thin shell (an HTML pane redrawn from :mod:`.render`, a stage picker, a
log pane) refreshed by a thread until the run finishes.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from ..errors import WorkspaceError
from . import render

if TYPE_CHECKING:
    from .run import Run


class RunView:
    def __init__(self, run: Run, stage: str | None = None) -> None:
        self.run, self.stage = run, stage

    def _log_stage(self, status: Any) -> str | None:
        if self.stage is not None:
            return self.stage
        # The most interesting log: a failed stage's, else the last one that ran.
        names = [n for n, s in status.stages.items() if s.attempts]
        failed = [n for n in names if status.stages[n].status == "failed"]
        chosen: list[str] = failed or names
        return chosen[-1] if chosen else None

    def _repr_html_(self) -> str:
        status = self.run.status()
        stage = self._log_stage(status)
        log = self.run.logs(stage) if stage else None
        return render.html(status, self.run.attempts(), stage, log)

    def __repr__(self) -> str:
        status = self.run.status()
        stages = " ".join(f"{n}={s.status}" for n, s in status.stages.items())
        return f"<RunView {status.pipeline} {status.status}: {stages}>"

    def text(self) -> str:
        return render.text(self.run.status())

    def widget(self) -> Any:
        """An ipywidgets view when importable, else this static view."""
        try:
            import ipywidgets as w
        except ImportError:
            return self
        status = self.run.status()
        graph = w.HTML()
        picker = w.Dropdown(options=list(status.stages), description="log")
        pane = w.Textarea(layout=w.Layout(width="100%", height="200px"), disabled=True)
        box = w.VBox([graph, picker, pane])
        box.add_class("mnb-run-view")

        def draw(*_: Any) -> bool:
            current = self.run.status()
            graph.value = render.html(current, self.run.attempts())
            if picker.value:
                pane.value = self.run.logs(picker.value)[-8000:]
            return current.finished

        picker.observe(draw, names="value")
        if not draw():

            def refresh() -> None:
                # Follows the run until it ends, or until its workspace is closed.
                with contextlib.suppress(WorkspaceError):
                    while not draw():
                        threading.Event().wait(1.0)

            threading.Thread(target=refresh, daemon=True, name="mlops-nb-run-view").start()
        return box
