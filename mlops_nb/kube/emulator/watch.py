"""Watches: newline-delimited JSON events streamed with chunked encoding.

Without ``resourceVersion`` the stream starts with an ``ADDED`` event per matching object,
as a real API server does; with one, it replays what happened since (410 Gone when that is
older than the emulator's event log).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from .resources import Kind
from .selectors import match_fields, match_labels
from .store import ApiError

if TYPE_CHECKING:
    from . import Emulator
    from .server import Handler


def stream(handler: Handler, emu: Emulator, kind: Kind, ns: str) -> None:
    """Answer a ``watch=true`` request: chunked JSON events until the timeout or shutdown."""
    store = emu.store
    labels, fsel = handler.query.get("labelSelector"), handler.query.get("fieldSelector")
    timeout = min(float(handler.query.get("timeoutSeconds") or 300), 300.0)
    rv = int(handler.query.get("resourceVersion") or 0)
    if rv and store.events and rv < store.events[0].rv - 1:
        raise ApiError(410, "Expired", f"too old resource version: {rv} ({store.events[0].rv})")
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    pending: list[dict[str, Any]] = []
    if not rv:
        with store.lock:  # the list and its resourceVersion in one step: no event falls between
            pending = [
                {"type": "ADDED", "object": o} for o in store.list(kind, ns or None, labels, fsel)
            ]
            rv = store.rv
    deadline = time.monotonic() + timeout
    try:
        while True:
            for event in pending:
                line = json.dumps(event).encode() + b"\n"
                handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            handler.wfile.flush()
            left = deadline - time.monotonic()
            if left <= 0 or emu.stopping:
                break
            with store.changed:
                if not store.events or store.events[-1].rv <= rv:
                    store.changed.wait(min(left, 0.5))
                new = [e for e in store.events if e.rv > rv]
                if new:
                    rv = new[-1].rv
            pending = [{"type": e.type, "object": store.render(kind, e.obj)} for e in new
                       if (e.kind.group, e.kind.plural) == (kind.group, kind.plural)
                       and (not ns or e.obj["metadata"].get("namespace") == ns)
                       and match_labels(labels, e.obj["metadata"].get("labels") or {})
                       and match_fields(fsel, e.obj)]  # fmt: skip
        handler.wfile.write(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    handler.close_connection = True
