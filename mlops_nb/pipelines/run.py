"""A handle on one pipeline run: status, logs, attempts, a view, wait and cancel.

The handle reads the workspace, so one made in another process
(``ws.pipeline_run(run_id)``) sees the same run while it goes on.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import InvalidArgument, MlopsError, PipelineError
from . import records

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .view import RunView


class Run:
    def __init__(self, ws: Workspace, run_id: str, *, done: threading.Event | None = None,
                 cancel: threading.Event | None = None) -> None:  # fmt: skip
        self.ws, self.id = ws, run_id
        # An Event, not Thread.join: a join interrupted by Ctrl-C can leave the thread
        # looking finished while it still runs.
        self._done, self._cancel = done, cancel

    def status(self) -> records.RunStatus:
        """The run and its stages as stored now."""
        return records.read_status(self.ws._store, self.id)

    def attempts(self, stage: str | None = None) -> list[records.Attempt]:
        """Every attempt of every stage (or of ``stage``), in the order they started."""
        return records.read_attempts(self.ws._store, self.id, stage)

    def logs(self, stage: str, attempt: int | None = None) -> str:
        """The log of ``stage``'s latest attempt (or of ``attempt``): the file when present,
        else the tail kept in the workspace."""
        status = self.status()
        if stage not in status.stages:
            raise InvalidArgument(
                f"no stage {stage!r} in this run; stages: {', '.join(status.stages)}"
            )
        tried = self.attempts(stage)
        if not tried:
            return ""
        chosen = (
            tried[-1] if attempt is None else next((a for a in tried if a.attempt == attempt), None)
        )
        if chosen is None:
            raise InvalidArgument(f"stage {stage!r} has attempts 1..{len(tried)}, not {attempt}")
        path = Path(chosen.log_path)
        if path.exists():
            return path.read_text(errors="replace")
        return records.read_tail(self.ws._store, self.id, stage, chosen.attempt) or ""

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run finishes (``timeout`` seconds at most); returns the handle."""
        if self._done is not None:
            if not self._done.wait(timeout):
                raise PipelineError(f"run {self.id} still running after {timeout:g}s")
            return self
        from .runner import wait_until

        if not wait_until(lambda: self.status().finished, timeout, 0.5):
            raise PipelineError(f"run {self.id} still running after {timeout:g}s")
        return self

    def cancel(self) -> Run:
        """Stop the run: running stages' process groups are killed, the rest cancelled."""
        if self._cancel is None:
            raise PipelineError("this run is driven by another process; cancel it from there")
        self._cancel.set()
        return self

    def audit(self) -> pd.DataFrame:
        """Registry actions (register, promote, deploy ...) made by this run's stages."""
        return self.ws._store.query_df(
            "SELECT id, happened_at, actor, action, model, version, from_value, to_value "
            "FROM audit WHERE json_extract_string(details, '$.pipeline_run') = ? ORDER BY id",
            [self.id],
        )

    def view(self) -> RunView | Any:
        """The stage graph with status, attempts, durations and a log pane: a live widget
        when ipywidgets is installed, else a static view."""
        from .view import RunView

        return RunView(self).widget()

    def __repr__(self) -> str:
        try:
            return f"<Run {self.id} {self.status().status}>"
        except MlopsError:  # a closed workspace: the repr still shows which run
            return f"<Run {self.id}>"

    def _repr_html_(self) -> str:
        from .view import RunView

        return RunView(self)._repr_html_()
