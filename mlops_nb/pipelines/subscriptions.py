"""Registry events to pipeline notifiers, from whichever process emits them.

``ws.notify(notifier, events)`` stores the subscription in the workspace, so an event
reaches it wherever it happens: a rollback decided by a deployment's controller (a process
of its own), a drift found by a scheduled monitoring run, a promotion from the command
line or another kernel. The process that emits an event sends it, on the workspace's
delivery threads, and records the outcome in ``pipeline_notifications`` as a run's alerts
are. A webhook's signing secret is stored in the workspace, as those of
``ws.add_webhook`` are; an email password never is (``password_env`` names the
environment variable that holds it, in the process that sends).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from ..errors import InvalidArgument
from ..events import Event, check_event_name
from . import tables
from .alerts import _send, event_message
from .notify import Email, Notifier, Webhook

log = logging.getLogger("mlops_nb.pipelines")

if TYPE_CHECKING:
    from ..workspace import Workspace

KINDS: dict[str, type[Notifier]] = {"webhook": Webhook, "email": Email}


def _kind(notifier: Notifier) -> str:
    for name, cls in KINDS.items():
        if type(notifier) is cls:
            return name
    raise InvalidArgument(
        f"expected a notifier (mnb.Webhook, mnb.pipelines.Slack, mnb.Email), got "
        f"{type(notifier).__name__}"
    )


def subscribe(ws: Workspace, notifier: Notifier, events: str | Sequence[str]) -> int:
    """Store the subscription; returns its id (for :func:`unsubscribe`)."""
    kind = _kind(notifier)
    names = [events] if isinstance(events, str) else list(events)
    if not names:
        raise InvalidArgument("events must name at least one event, or '*' for all")
    for name in names:
        check_event_name(name)
    config = json.dumps(dataclasses.asdict(notifier), sort_keys=True)
    store = tables.ensure(ws._store)

    def write(con: duckdb.DuckDBPyConnection) -> int:
        # The same subscription again (a notebook cell run twice) is the one stored.
        same = con.execute(
            "SELECT id FROM event_notifiers WHERE kind = ? AND config = ?::JSON AND events = ? "
            "ORDER BY id LIMIT 1",
            [kind, config, names],
        ).fetchall()
        if same:
            return int(same[0][0])
        (row,) = con.execute(
            "INSERT INTO event_notifiers (kind, config, events, created_at) VALUES (?, ?, ?, ?) "
            "RETURNING id",
            [kind, config, names, ws.now()],
        ).fetchall()
        ws._audit(con, "notifier_added", None, None, None, repr(notifier), None, {"events": names})
        return int(row[0])

    return store.write(write)


def unsubscribe(ws: Workspace, subscription: int) -> None:
    """Remove a stored subscription; an unknown id is an error naming the known ones."""
    store = tables.ensure(ws._store)

    def write(con: duckdb.DuckDBPyConnection) -> None:
        known = [r[0] for r in con.execute("SELECT id FROM event_notifiers ORDER BY id").fetchall()]
        if subscription not in known:
            raise InvalidArgument(
                f"no notifier subscription {subscription!r}; ws.notifiers() lists them "
                f"(ids: {known})"
            )
        con.execute("DELETE FROM event_notifiers WHERE id = ?", [subscription])
        ws._audit(con, "notifier_removed", None, None, None, str(subscription), None, None)

    store.write(write)


def listed(ws: Workspace) -> pd.DataFrame:
    """The stored subscriptions: id, notifier, events, created_at."""
    store = tables.ensure(ws._store)
    rows = store.read(
        lambda con: con.execute(
            "SELECT id, kind, config, events, created_at FROM event_notifiers ORDER BY id"
        ).fetchall()
    )
    return pd.DataFrame(
        [(i, repr(_notifier(k, c)), list(e), at) for i, k, c, e, at in rows],
        columns=["id", "notifier", "events", "created_at"],
    )


def _notifier(kind: str, config: str) -> Notifier:
    return KINDS[kind](**json.loads(config))


def deliver(ws: Workspace, event: Event, rows: list[tuple[str, str]]) -> None:
    """Send ``event`` to each stored notifier in ``rows`` (kind, config), in the background:
    the registry operation that emitted it has committed, and nothing here may fail it."""
    for kind, config in rows:
        ws.events.submit(functools.partial(_deliver_one, ws, kind, config, event))


def _deliver_one(ws: Workspace, kind: str, config: str, event: Event) -> None:
    try:
        notifier = _notifier(kind, config)
    except Exception as e:  # a stored config this version cannot read
        log.warning("stored notifier (%s) cannot be built: %s", kind, e)
        return
    _send(ws, notifier, event_message(event), None, event.name)


__all__ = ["deliver", "listed", "subscribe", "unsubscribe"]
