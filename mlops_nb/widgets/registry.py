"""The registry view: models, versions, stages, aliases, metrics and lineage, with actions.

Promote, archive, set alias and approve each ask for a reason and a confirmation, then
run through the same handles as code does (so the audit log and the policy apply). A
policy refusal shows inline with its rule and numbers, and nothing changes. Refresh reads
the workspace again: changes made by other processes appear.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as widgets

from .. import render
from ..policy import STAGES
from .base import Confirm, View, button

if TYPE_CHECKING:
    from ..registry import Model
    from ..workspace import Workspace

_NEXT = {
    "development": "staging",
    "staging": "production",
    "production": "production",
    "archived": "staging",
}


class RegistryView(View):
    """``ws.view()`` (every model) or ``ws.model(name).view()`` (one model)."""

    def __init__(self, ws: Workspace, model: str | None = None) -> None:
        super().__init__(["models", "versions", "card"])
        self._ws = ws
        self._fixed = model
        self.title = f"Registry {model}" if model else f"Registry {ws.path}"
        self.model_select = widgets.Dropdown(description="model")
        self.model_select.add_class("mnb-model-select")
        self.version_select = widgets.Dropdown(description="version")
        self.version_select.add_class("mnb-version-select")
        self.stage_select = widgets.Dropdown(
            options=[s for s in STAGES if s != "archived"], description="to stage"
        )
        self.stage_select.add_class("mnb-stage-select")
        self.alias_text = widgets.Text(placeholder="alias, e.g. champion")
        self.alias_text.add_class("mnb-alias-text")
        self.promote_button = button("Promote", "promote", style="primary")
        self.archive_button = button("Archive", "archive", style="warning")
        self.alias_button = button("Set alias", "set-alias")
        self.approve_button = button("Approve", "approve", style="success")
        self.refresh_button = button("Refresh", "refresh")
        self.confirm = Confirm().attach(self)
        self.promote_button.on_click(lambda _b: self.ask_promote())
        self.archive_button.on_click(lambda _b: self.ask_archive())
        self.alias_button.on_click(lambda _b: self.ask_alias())
        self.approve_button.on_click(lambda _b: self.ask_approve())
        self.refresh_button.on_click(lambda _b: self.refresh())
        self._quiet = False
        self.model_select.observe(self._on_model, names="value")
        self.version_select.observe(self._on_version, names="value")
        head = [self.refresh_button] if model else [self.model_select, self.refresh_button]
        self.root.children = [
            widgets.HBox(head),
            self._panes["models"],
            self._panes["versions"],
            widgets.HBox([self.version_select, self.stage_select]),
            widgets.HBox(
                [
                    self.promote_button,
                    self.archive_button,
                    self.approve_button,
                    self.alias_text,
                    self.alias_button,
                ]
            ),
            self.confirm.box,
            self.message,
            self._panes["card"],
        ]
        self.refresh()

    # -- reading -------------------------------------------------------------------------

    def _on_model(self, _change: object) -> None:
        if not self._quiet:
            self._show_model()

    def _on_version(self, _change: object) -> None:
        if not self._quiet:
            self._show_version()

    @property
    def model(self) -> Model | None:
        name = self._fixed or self.model_select.value
        return self._ws.model(name) if name else None

    def refresh(self) -> None:
        if self._fixed is None:
            models = self._ws.models()
            self._set("models", render.models_table(models) if len(models) else "")
            names = models["name"].tolist()
            keep = self.model_select.value if self.model_select.value in names else None
            chosen = keep or (names[0] if names else None)
            self._quiet = True
            try:
                self.model_select.options = names
                self.model_select.value = chosen
            finally:
                self._quiet = False
        self._show_model()

    def _show_model(self) -> None:
        model = self.model
        if model is None or not model.exists():
            self._set("versions", render.note("no models registered yet"))
            self.version_select.options = []
            self._set("card", "")
            return
        frame = model.versions()
        self._set("versions", render.versions_table(model.name, frame, lineage=True))
        options = [
            (
                f"v{r['version']} {r['label'] or ''} ({r['stage']})".replace("  ", " "),
                int(r["version"]),
            )
            for r in frame.to_dict("records")
        ]
        keep = self.version_select.value
        numbers = [n for _, n in options]
        self._quiet = True
        try:
            self.version_select.options = options
            self.version_select.value = (
                keep if keep in numbers else (numbers[0] if numbers else None)
            )
        finally:
            self._quiet = False
        self._show_version()

    def _show_version(self) -> None:
        model, number = self.model, self.version_select.value
        if model is None or number is None:
            self._set("card", "")
            return
        info = model.version(int(number)).info()
        self._set("card", render.version_card(info))
        self.stage_select.value = _NEXT[str(info["stage"])]

    # -- actions -------------------------------------------------------------------------

    def _target(self) -> tuple[Model, int] | None:
        model, number = self.model, self.version_select.value
        if model is None or number is None:
            self.say("choose a version first", "error")
            return None
        return model, int(number)

    def ask_promote(self) -> None:
        target = self._target()
        if target is None:
            return
        model, number = target
        stage = str(self.stage_select.value)

        def promote(reason: str) -> str:
            v = model.version(number).promote(stage, reason=reason)
            return f"{model.name} v{v.number} is now {v.stage}"

        self.confirm.ask(f"Promote {model.name} v{number} to {stage}?", promote)

    def ask_archive(self) -> None:
        target = self._target()
        if target is None:
            return
        model, number = target

        def archive(reason: str) -> str:
            v = model.version(number).archive(reason=reason)
            return f"{model.name} v{v.number} is now {v.stage}"

        self.confirm.ask(f"Archive {model.name} v{number}?", archive)

    def ask_approve(self) -> None:
        target = self._target()
        if target is None:
            return
        model, number = target
        who = self._ws.actor()

        def approve(reason: str) -> str:
            model.version(number).approve(comment=reason)
            return f"{who} approved {model.name} v{number}"

        self.confirm.ask(f"Approve {model.name} v{number} as {who}?", approve)

    def ask_alias(self) -> None:
        target = self._target()
        if target is None:
            return
        model, number = target
        alias = self.alias_text.value.strip().lstrip("@")
        if not alias:
            self.say("type an alias first, e.g. champion", "error")
            return

        def set_alias(reason: str) -> str:
            model.set_alias(alias, number, reason=reason)
            return f"@{alias} -> {model.name} v{number}"

        self.confirm.ask(f"Point @{alias} at {model.name} v{number}?", set_alias)
