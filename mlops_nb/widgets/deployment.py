"""The deployment view: revisions, rollout, traffic, live numbers, guard decisions, controls.

Built on the deployment's public surface only: ``status()`` (read by key, so a typed
status that also reads as a mapping fits), ``checks()``, ``revisions()`` and the actions
``pause()``, ``resume()``, ``promote()``, ``rollback()``, ``scale()``, each asked for with
a reason (it goes into the audit log) and a confirmation. Optional parts of
the status (``stats``, ``resources``) are shown when the deployment reports them.

While shown, a daemon thread refreshes the view every ``interval`` seconds; ``close()``
stops it, and so does the deployment being deleted. Actions run on a worker thread too
(a rollback waits for the canary to stop), so the kernel never waits for them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from .. import render
from . import charts
from .base import Confirm, Timer, View, button

if TYPE_CHECKING:
    from ..deploy.core import Deployment

STATE_COLORS = {
    "healthy": "#1a7f37",
    "progressing": "#0969da",
    "degraded": "#bf8700",
    "stale": "#cf222e",
    "deleted": "#6e7781",
}
DECISION_BAD = {"rollback", "abort", "rolled_back", "fail", "failed"}
CHECKS_SHOWN = 10
SAMPLES_KEPT = 120


def records(value: Any) -> list[dict[str, Any]]:
    """Rows out of a status part, whatever its shape: dataclasses, lists, nested dicts.

    >>> records({"versions": {"1": {"count": 3}}})
    [{'key': '1', 'count': 3}]
    >>> records([{"replica": "a", "cpu": 0.5}])
    [{'replica': 'a', 'cpu': 0.5}]
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [records(v)[0] if not isinstance(v, dict) else dict(v) for v in value]
    if isinstance(value, dict):
        for key in ("revisions", "versions", "replicas"):
            if key in value and isinstance(value[key], list | tuple | dict):
                return records(value[key])
        if value and all(isinstance(v, dict) for v in value.values()):
            return [{"key": k, **v} for k, v in value.items()]
        return [value]
    return [{"value": value}]


def _get(status: Any, key: str) -> Any:
    try:
        return status[key]
    except (KeyError, TypeError):
        return None


def summary_html(name: str, s: Any) -> str:
    state = str(_get(s, "state"))
    head = (
        f"<p><b>{escape(name)}</b> {render.badge(state, STATE_COLORS.get(state, '#6e7781'))} "
        f"<code>{escape(str(_get(s, 'endpoint') or ''))}</code></p>"
    )
    if state in ("deleted", "stale"):
        return head + render.note(str(_get(s, "message") or f"deployment is {state}"))
    replicas = _get(s, "replicas") or {}
    rollout = _get(s, "rollout")
    pairs = [
        ("revision", f"r{_get(s, 'revision')} (v{_get(s, 'version')})"),
        ("replicas ready/desired", f"{replicas.get('ready', 0)}/{replicas.get('desired', 0)}"),
        ("traffic", render.fmt([f"v{v}: {p:g}%" for v, p in (_get(s, "traffic") or {}).items()])),
    ]
    if rollout:
        r = dict(rollout)
        pairs += [
            ("strategy", render.fmt(r.get("strategy"))),
            (
                "step",
                f"{render.fmt(r.get('step'))} · weight {render.fmt(r.get('weight'))}% · "
                f"{render.fmt(r.get('phase'))}",
            ),
            ("message", render.fmt(r.get("message"))),
        ]
    return head + render.card("status", pairs)


def revisions_html(s: Any) -> str:
    rows = [
        [
            f"r{r['revision']}",
            f"v{r['version']}",
            render.fmt(r.get("weight")),
            f"{r.get('ready', 0)}/{r.get('desired', 0)}",
            render.fmt(r.get("restarts")),
        ]
        for r in (_get(s, "revisions") or [])
    ]
    if not rows:
        return ""
    return "<h4>revisions</h4>" + render.table(
        ["revision", "version", "weight", "ready/desired", "restarts"], rows
    )


def traffic_chart(s: Any) -> str:
    traffic = _get(s, "traffic") or {}
    if not traffic:
        return charts.empty("no traffic is routed")
    data = pd.DataFrame({"version": [f"v{v}" for v in traffic], "percent": list(traffic.values())})
    return charts.svg(
        charts.bars(data, "version", "percent", title="traffic per version (%)", horizontal=True)
    )


def cpu_usage(
    rows: list[dict[str, Any]], before: dict[str, tuple[float, float]], now: float
) -> list[dict[str, Any]]:
    """Replica rows with ``cpu_pct_core``, the share of one core used since ``before`` (a
    replica's (time, cpu_seconds) at the previous refresh), in place of the cumulative
    ``cpu_seconds``; "…" until a replica has been seen twice. ``before`` is updated.

    >>> seen = {}
    >>> cpu_usage([{"replica": "a", "cpu_seconds": 4.0}], seen, now=10.0)
    [{'replica': 'a', 'cpu_pct_core': '…'}]
    >>> cpu_usage([{"replica": "a", "cpu_seconds": 4.5}], seen, now=12.0)
    [{'replica': 'a', 'cpu_pct_core': 25.0}]
    """
    out = []
    for row in rows:
        row = dict(row)
        key, total = str(row.get("replica")), row.pop("cpu_seconds", None)
        usage: Any = "…"
        if total is not None:
            last = before.get(key)
            # A replica that restarted counts from zero again: wait for its next sample.
            if last is not None and now > last[0] and total >= last[1]:
                usage = round(100 * (total - last[1]) / (now - last[0]), 1)
            before[key] = (now, float(total))
        out.append({**row, "cpu_pct_core": usage})
    return out


def live_html(s: Any, cpu: dict[str, tuple[float, float]] | None = None) -> str:
    """Request rate, errors and latency per revision, and resources per replica, if
    reported; with ``cpu`` (the previous refresh's samples) CPU shows as a usage rate."""
    out = ""
    for key, title in (("stats", "live traffic"), ("resources", "resources per replica")):
        part = s.get(key) if hasattr(s, "get") else None
        if part:
            rows = records(part)
            if key == "resources" and cpu is not None:
                rows = cpu_usage(rows, cpu, time.monotonic())
            out += f"<h4>{title}</h4>" + render.frame_table(pd.DataFrame(rows))
    return out or render.note("live traffic and resources: not reported by this deployment")


def checks_html(checks: pd.DataFrame) -> str:
    if checks.empty:
        return "<h4>guard checks</h4>" + render.note("no guard checks recorded")
    rows = []
    for c in checks.tail(CHECKS_SHOWN).iloc[::-1].to_dict("records"):
        verdict, decision = str(c["verdict"]), str(c["decision"])
        bad_verdict = {"fail": True, "pass": False}.get(verdict)
        rows.append(
            [
                render.fmt(c["checked_at"]),
                f"r{c['revision']}" if c["revision"] else "",
                f"v{c['version']}",
                render.verdict_badge(bad_verdict, verdict),
                render.verdict_badge(decision in DECISION_BAD, decision),
                render.fmt(_evidence(c["evidence"])),
            ]
        )
    more = f"<p>{len(checks)} checks in all; dep.checks() has every one</p>"
    head = ["checked", "revision", "version", "verdict", "decision", "evidence"]
    return "<h4>guard checks</h4>" + render.table(head, rows) + more


def _evidence(raw: Any) -> str:
    import json

    data = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    parts = list(data.get("breaches") or [])
    router = data.get("router") or {}
    if router:
        parts.append(
            f"{router.get('count', 0)} requests, error rate "
            f"{router.get('error_rate', 0):.3g}, p95 {router.get('p95_ms', 0):.3g} ms"
        )
    if data.get("reason"):
        parts.append(str(data["reason"]))
    for key in ("accuracy", "drift_share", "labelled"):
        if data.get(key) is not None:
            parts.append(
                f"{key} {data[key]:.4g}" if isinstance(data[key], float) else f"{key} {data[key]}"
            )
    return "; ".join(parts)


class DeploymentView(View):
    """``dep.view()``: status, traffic, live numbers, guard checks; canary controls."""

    def __init__(self, dep: Deployment, interval: float = 2.0, autostart: bool = True) -> None:
        super().__init__(["summary", "traffic", "revisions", "live", "checks"])
        self.dep = dep
        self.title = f"Deployment {dep.name}"
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-nb-view-action")
        self.action: Future[bool] | None = None
        self.samples: deque[dict[str, Any]] = deque(maxlen=SAMPLES_KEPT)
        self._cpu: dict[str, tuple[float, float]] = {}
        self.timer = Timer(interval, self._tick, self._closed)
        self._autostart = autostart
        self.promote_button = button("Promote step", "promote", style="primary")
        self.pause_button = button("Pause", "pause")
        self.resume_button = button("Resume", "resume")
        self.rollback_button = button("Roll back", "rollback", style="danger")
        self.replicas = widgets.BoundedIntText(value=1, min=1, max=32, description="replicas")
        self.replicas.add_class("mnb-replicas")
        self.scale_button = button("Scale", "scale")
        self.refresh_button = button("Refresh", "refresh")
        self.confirm = Confirm().attach(self)
        for b, what, question, fn in (
            (self.promote_button, "promote", "Move the canary of {} to its next step?",
             self.dep.promote),
            (self.pause_button, "pause", "Pause the canary of {} at its step?", self.dep.pause),
            (self.resume_button, "resume", "Resume the canary of {}?", self.dep.resume),
        ):  # fmt: skip
            b.on_click(
                lambda _b, w=what, q=question, fn=fn: self.ask_steer(w, q.format(dep.name), fn)
            )
        self.rollback_button.on_click(lambda _b: self.ask_rollback())
        self.scale_button.on_click(lambda _b: self.ask_scale())
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.root.children = [
            self._panes["summary"],
            widgets.HBox(
                [
                    self.promote_button,
                    self.pause_button,
                    self.resume_button,
                    self.rollback_button,
                    self.replicas,
                    self.scale_button,
                    self.refresh_button,
                ]
            ),
            self.confirm.box,
            self.message,
            widgets.HBox([self._panes["traffic"], self._panes["revisions"]]),
            self._panes["live"],
            self._panes["checks"],
        ]
        self.refresh()

    # -- reading -------------------------------------------------------------------------

    def refresh(self) -> None:
        with self._lock:
            s = self.dep.status()
            self.status = s
            state = str(_get(s, "state"))
            self._set("summary", summary_html(self.dep.name, s))
            self._set("traffic", traffic_chart(s) if state not in ("deleted", "stale") else "")
            self._set("revisions", revisions_html(s))
            self._set("live", live_html(s, self._cpu) if state not in ("deleted", "stale") else "")
            self._set("checks", checks_html(self.dep.checks()))
            rollout = _get(s, "rollout")
            running = bool(rollout) and dict(rollout).get("phase") not in (
                "done",
                "rolled_back",
                "failed",
            )
            for b in (self.promote_button, self.pause_button, self.resume_button):
                b.disabled = not running
            for b in (self.rollback_button, self.scale_button):
                b.disabled = state in ("deleted", "stale")
            self.samples.append({"t": time.time(), "state": state})
            if state == "deleted":
                # Nothing left to watch: the timer ends with the deployment.
                self._closed.set()

    def _tick(self) -> None:
        self.refresh_shown()

    def start(self) -> DeploymentView:
        """Start refreshing every ``interval`` seconds (done on first display)."""
        if not self.closed:
            self.timer.start()
        return self

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        if self._autostart:
            self.start()
        return super()._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        super().close()
        if self.timer.thread is not None:
            self.timer.thread.join(timeout=10)
        self._pool.shutdown(wait=False)

    # -- actions -------------------------------------------------------------------------

    def _run(self, what: str, fn: Any) -> Future[bool]:
        """Run an action on the worker thread; its outcome shows when it ends."""
        self.say(f"{what}…")

        def work() -> bool:
            ok = self._act(lambda: (fn(), f"{what}: done")[1])
            self._tick()
            return ok

        self.action = self._pool.submit(work)
        return self.action

    def ask_steer(self, what: str, question: str, fn: Any) -> None:
        """Ask ``question`` with a reason box; on Confirm, steer the rollout (audited)."""

        def steer(reason: str) -> None:
            self._run(what, lambda: fn(reason=reason))

        self.confirm.ask(question, steer)

    def ask_rollback(self) -> None:
        def rollback(reason: str) -> None:
            self._run("roll back", lambda: self.dep.rollback(reason=reason))

        self.confirm.ask(f"Roll {self.dep.name} back?", rollback)

    def ask_scale(self) -> None:
        n = int(self.replicas.value)

        def scale(reason: str) -> None:
            self._run(f"scale to {n}", lambda: self.dep.scale(n, reason=reason))

        self.confirm.ask(f"Scale {self.dep.name} to {n} replica(s)?", scale)
