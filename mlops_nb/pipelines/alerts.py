"""Alerts: a finished run's summary to its notifiers, and registry events to the same.

Each notifier is tried once; its outcome (ok, or the error) is stored in
``pipeline_notifications``. A notifier that raises never changes the run's verdict.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..events import Event, now
from . import records, render, tables
from .notify import Attachment, Message, Notifier

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .pipeline import Pipeline

log = logging.getLogger("mlops_nb.pipelines")


def run_message(ws: Workspace, run_id: str) -> Message:
    status = records.read_status(ws._store, run_id)
    attempts = records.read_attempts(ws._store, run_id)
    failed = status.status != "succeeded"
    subject = f"[mlops-nb] pipeline {status.pipeline} {status.status} ({run_id})"
    page = render.html(status, attempts, chart=True)
    files: list[Attachment] = []
    for name, s in status.stages.items():
        if s.kind == "notebook":
            for nb in sorted((Path(status.run_dir) / name).glob("*.ipynb")):
                files.append(
                    Attachment(f"{name}-{nb.name}", nb.read_bytes(), "application/x-ipynb+json")
                )
    if not files:
        doc = f"<!doctype html><html><meta charset='utf-8'><body>{page}</body></html>"
        files.append(Attachment("summary.html", doc.encode(), "text/html"))
    payload = {"event": "pipeline_finished", "run": status.to_json()}
    return Message(subject, render.text(status), json.loads(json.dumps(payload, default=str)),
                   page, tuple(files), failed)  # fmt: skip


def _send(
    ws: Workspace, notifier: Notifier, message: Message, run_id: str | None, event: str
) -> None:
    error: str | None = None
    try:
        notifier.send(message)
    except Exception as e:  # any failure of an alert is recorded, never raised
        error = f"{type(e).__name__}: {e}"
        log.warning("notifier %r failed: %s", notifier, error)
    store = tables.ensure(ws._store)
    store.write(
        lambda con: con.execute(
            "INSERT INTO pipeline_notifications (run_id, event, notifier, ok, error, sent_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [run_id, event, repr(notifier), error is None, error, now()],
        )
    )


def send_all(pipeline: Pipeline, ws: Workspace, run_id: str) -> None:
    wanted = [n for n in pipeline.notifications]
    if not wanted:
        return
    try:
        message = run_message(ws, run_id)
    except Exception as e:
        log.warning("cannot build the run summary of %s: %s", run_id, e)
        return
    for notifier in wanted:
        if notifier.wants(message.failed):
            _send(ws, notifier, message, run_id, "pipeline_finished")


def event_message(event: Event) -> Message:
    what = f"{event.model} v{event.version}" if event.version is not None else str(event.model)
    subject = f"[mlops-nb] {event.name}: {what}"
    text = f"{subject}\nby {event.actor} at {event.at.isoformat()}\n{json.dumps(event.data, default=str)}"
    failed = event.name in ("rolled_back", "promotion_refused", "drift")
    return Message(subject, text, json.loads(json.dumps(event.to_json(), default=str)),
                   failed=failed)  # fmt: skip
