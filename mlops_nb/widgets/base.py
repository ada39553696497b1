"""What every view shares: sections of HTML rendered once, shown live and as a static copy.

A view renders its object into named *sections* (HTML strings from :mod:`mlops_nb.render`
and SVG charts from :mod:`.charts`). The live widget shows each section in an
``ipywidgets.HTML``; the static fallback in the mimebundle is the same sections joined,
so a saved or exported notebook shows what the widget showed, without JavaScript.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as widgets

from .. import render
from ..errors import MlopsError

STYLE = (
    "<style>.mnb-view table{margin:4px 0}.mnb-view h4{margin:8px 0 2px}"
    ".mnb-view .mnb-charts{display:flex;flex-wrap:wrap;gap:8px}</style>"
)


def button(description: str, css: str, *, style: str = "", tooltip: str = "") -> widgets.Button:
    """A button with a stable CSS class (``mnb-<css>``) for browsers and tests to find."""
    b = widgets.Button(description=description, button_style=style, tooltip=tooltip)
    b.add_class(f"mnb-{css}")
    return b


class View:
    """A live view of one object, with a static HTML copy of what it shows."""

    title = "view"

    def __init__(self, sections: list[str]) -> None:
        self._order = sections
        self._html: dict[str, str] = dict.fromkeys(sections, "")
        self._panes = {name: widgets.HTML() for name in sections}
        for name, pane in self._panes.items():
            pane.add_class(f"mnb-{name}")
        self.message = widgets.HTML()
        self.message.add_class("mnb-message")
        self.root = widgets.VBox()
        self.root.add_class("mnb-view")
        # mnb-registryview, mnb-driftview, ...: hooks for browsers, tests and styles.
        self.root.add_class(f"mnb-{type(self).__name__.lower()}")
        self._closed = threading.Event()

    # -- rendering -----------------------------------------------------------------------

    def _set(self, name: str, html: str) -> None:
        self._html[name] = html
        self._panes[name].value = html

    def say(self, text: str, kind: str = "info") -> None:
        """Show a one-line message (an action's outcome, a refusal) under the controls."""
        self.message.value = render.note(text, kind)

    def refresh(self) -> None:
        """Read the object again and redraw every section."""
        raise NotImplementedError

    def refresh_shown(self) -> bool:
        """Refresh for a control or a timer: an error is shown in the view, not raised.

        Raised from a widget's handler it would only reach the kernel's log, out of sight.
        True when the refresh succeeded.
        """
        try:
            self.refresh()
        except Exception as e:  # whatever failed, the user must see it
            shown = str(e) if isinstance(e, MlopsError) else f"{type(e).__name__}: {e}"
            self.say(f"refresh failed: {shown}", "error")
            return False
        return True

    def static_html(self) -> str:
        """Every section as one static HTML document fragment (no script)."""
        body = "".join(self._html[name] for name in self._order if self._html[name])
        return (
            f'{STYLE}<div class="mnb-view mnb-static"><h3>{escape(self.title)}</h3>{body}'
            f"{self.message.value}</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.root._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)
        bundle["text/html"] = self.static_html()
        return bundle

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.title}>"

    # -- actions -------------------------------------------------------------------------

    def _act(self, fn: Callable[[], str | None]) -> bool:
        """Run an action; show its outcome (None: it reports itself) or its error inline.
        True when it succeeded."""
        try:
            text = fn()
        except MlopsError as e:
            self.say(str(e), "error")
            return False
        if text is not None:
            self.say(text, "ok")
        return True

    def close(self) -> None:
        """Stop timers and close the widgets (the front-end view goes away)."""
        self._closed.set()
        _close_tree(self.root)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()


def _close_tree(widget: widgets.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    with contextlib.suppress(Exception):
        widget.close()


class Confirm:
    """A reason box and Confirm / Cancel buttons that appear when an action is asked for."""

    def __init__(self) -> None:
        self.prompt = widgets.HTML()
        self.reason = widgets.Text(placeholder="reason (goes into the audit log)")
        self.reason.add_class("mnb-reason")
        self.confirm = button("Confirm", "confirm", style="danger")
        self.cancel = button("Cancel", "cancel")
        self.box = widgets.VBox(
            [self.prompt, widgets.HBox([self.reason, self.confirm, self.cancel])]
        )
        self.box.add_class("mnb-confirm-box")
        self.box.layout.display = "none"
        self._pending: Callable[[str], str | None] | None = None
        self._view: View | None = None
        self.cancel.on_click(lambda _b: self.hide())

    def attach(self, view: View) -> Confirm:
        self._view = view
        self.confirm.on_click(lambda _b: self.run())
        return self

    def ask(
        self, question: str, action: Callable[[str], str | None], *, needs_reason: bool = True
    ) -> None:
        """Show ``question``; on Confirm, ``action(reason)`` runs and returns what it did."""
        self.prompt.value = f"<b>{escape(question)}</b>"
        self.reason.layout.display = "" if needs_reason else "none"
        self._needs_reason = needs_reason
        self._pending = action
        self.box.layout.display = ""

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def hide(self) -> None:
        self._pending = None
        self.reason.value = ""
        self.box.layout.display = "none"

    def run(self) -> None:
        assert self._view is not None
        if self._pending is None:
            return
        reason = self.reason.value.strip()
        if self._needs_reason and not reason:
            self._view.say("give a reason first: it is recorded in the audit log", "error")
            return
        action = self._pending
        self.hide()
        if self._view._act(lambda: action(reason)):
            self._view.refresh()


class Timer:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread until stopped.

    The kernel never waits for it: widget updates from the thread go out as comm messages.
    A tick that raises is shown by the view and the timer goes on.
    """

    def __init__(self, interval: float, tick: Callable[[], None], stop: threading.Event) -> None:
        self.interval = interval
        self._tick = tick
        self._stop = stop
        self.thread: threading.Thread | None = None
        self.ticks = 0

    def start(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        self.thread = threading.Thread(target=self._loop, daemon=True, name="mlops-nb-view-timer")
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._tick()
            self.ticks += 1

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()
