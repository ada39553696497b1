"""The drift view: verdict, features by severity, one feature's distributions, history.

Severity puts every method on one scale: how far past its drift line a feature is (1.0
is the line). For effect sizes (Wasserstein/sd, PSI, Jensen-Shannon) it is statistic /
threshold; for tests (KS, chi-square) it is -log10(p) / -log10(alpha).
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from .. import render
from ..monitor.stats import LARGE_SAMPLE, P_VALUE_METHODS
from . import charts, distributions
from .base import View, button

if TYPE_CHECKING:
    from ..monitor.drift import DriftReport

_NAMES = {
    "ks": "Kolmogorov-Smirnov",
    "chi2": "chi-square",
    "wasserstein_norm": "Wasserstein / sd",
    "psi": "PSI",
    "jensen_shannon": "Jensen-Shannon",
}
HISTORY_RUNS = 200
COLUMNS = [
    "feature",
    "kind",
    "method",
    "why",
    "statistic",
    "p_value",
    "threshold",
    "severity",
    "drifted",
    "n_ref",
    "n_cur",
    "note",
]


def severity(row: dict[str, Any]) -> float:
    """How far past its drift line a feature is (1.0 = on the line; NaN = no verdict)."""
    method, stat, p, line = row["method"], row["statistic"], row["p_value"], row["threshold"]
    if stat is None or _nan(stat) or line is None or _nan(line) or line <= 0:
        return math.nan
    if method in P_VALUE_METHODS:
        if p is None or _nan(p):
            return math.nan
        return -math.log10(max(float(p), 1e-300)) / -math.log10(float(line))
    return float(stat) / float(line)


def why(row: dict[str, Any]) -> str:
    """Why this method: the sample size rule, an override, or why there is no verdict."""
    method, n = row["method"], min(int(row["n_ref"] or 0), int(row["n_cur"] or 0))
    if method in ("none", "schema"):
        return str(row["note"] or "")
    if row["statistic"] is None or _nan(row["statistic"]):
        return str(row["note"] or "no statistic")
    name = _NAMES.get(method, method)
    if method in ("ks", "chi2"):
        return f"{name}: smaller side n={n:,} < {LARGE_SAMPLE:,}, a test is meaningful"
    if method in ("wasserstein_norm", "psi") and n >= LARGE_SAMPLE:
        return f"{name}: n={n:,} >= {LARGE_SAMPLE:,}, p-values vanish; an effect size decides"
    return f"{name}: chosen for this feature"


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def ranked(report: DriftReport) -> pd.DataFrame:
    """The per-feature summary with ``why`` and ``severity``, most severe first."""
    frame = report.summary.copy()
    records: list[dict[str, Any]] = [
        {str(k): v for k, v in r.items()} for r in frame.to_dict("records")
    ]
    frame["why"] = [why(r) for r in records]
    frame["severity"] = [severity(r) for r in records]
    frame["_key"] = frame["severity"].fillna(-1.0)
    frame = frame.sort_values(["_key", "feature"], ascending=[False, True], kind="stable")
    return frame.drop(columns="_key").reset_index(drop=True)[COLUMNS]


def summary_html(report: DriftReport) -> str:
    head = (
        f"<p>{render.verdict_badge(report.drifted, report.verdict)} "
        f"<b>{report.n_drifted}/{report.n_judged}</b> features drifted · reference "
        f"{escape(report.reference)} (n={report.n_ref:,}) vs current {escape(report.current)} "
        f"(n={report.n_cur:,})</p>"
    )
    rows = []
    for r in ranked(report).to_dict("records"):
        bad = None if r["drifted"] is None or _nan(r["drifted"]) else bool(r["drifted"])
        rows.append(
            [
                escape(str(r["feature"])),
                escape(str(r["kind"])),
                escape(_NAMES.get(r["method"], str(r["method"]))),
                escape(r["why"]),
                render.fmt(r["statistic"]),
                render.fmt(r["p_value"]),
                render.fmt(r["threshold"]),
                render.fmt(r["severity"]),
                render.verdict_badge(bad, {True: "drift", False: "ok", None: "n/a"}[bad]),
                f"{int(r['n_ref']):,}",
                f"{int(r['n_cur']):,}",
            ]
        )
    headers = [
        "feature",
        "kind",
        "method",
        "why",
        "statistic",
        "p",
        "threshold",
        "severity",
        "verdict",
        "n ref",
        "n cur",
    ]
    outputs = ""
    if len(report.outputs):
        outputs = "<h4>model outputs</h4>" + render.frame_table(
            report.outputs, ["feature", "method", "statistic", "p_value", "drifted", "note"]
        )
    return head + render.table(headers, rows) + outputs


def distribution_html(report: DriftReport, feature: str) -> str:
    sides = getattr(report, "_sides", None)
    if sides is None:
        return charts.empty("distributions are available for reports computed in this session")
    ref, cur = sides
    if feature not in ref.names or feature not in cur.names:
        return charts.empty(f"{escape(feature)} is missing on one side")
    kind = report.summary.set_index("feature")["kind"].get(feature, "numeric")
    title = f"{feature}: reference vs current"
    if kind == "numeric":
        data = distributions.histogram(ref, cur, feature)
        return charts.svg(charts.histogram(data, title=title))
    data = distributions.categories(ref, cur, feature)
    note = " (* not in the reference)" if data["unseen"].any() else ""
    return charts.svg(charts.categories(data, title=title + note))


def history_html(report: DriftReport, feature: str | None = None) -> str:
    """The share of features drifted in each stored run over time and, beside it, the
    chosen feature's statistic in those runs (by method: a run's sample size may pick
    another test)."""
    mon = getattr(report, "_monitor", None)
    if mon is None:
        return ""
    runs = mon.history().tail(HISTORY_RUNS)
    runs = runs[runs["share_drifted"].notna()]
    if len(runs) < 2:
        return charts.empty("drift over time appears after two stored runs")
    share = charts.line(
        runs[["ran_at", "share_drifted"]],
        "ran_at:T",
        "share_drifted:Q",
        title="share of features drifted, per run",
        x_title="run",
        y_title="share drifted",
        rule=report.drift_share,
    )
    if feature is None:
        return charts.svg(share)
    scores = mon.feature_history(feature)
    scores = scores[scores["id"].isin(runs["id"]) & scores["statistic"].notna()]
    if scores.empty:
        return charts.svg(share)
    own = charts.line(
        scores[["ran_at", "statistic", "method"]],
        "ran_at:T",
        "statistic:Q",
        color="method",
        title=f"{feature}: statistic per run",
        x_title="run",
        y_title="statistic",
    )
    return charts.svg(charts.beside(share, own))


class DriftView(View):
    """``report.view()``: the report, a chosen feature's distributions, drift over time."""

    def __init__(self, report: DriftReport, feature: str | None = None) -> None:
        super().__init__(["summary", "distribution", "history"])
        self.report = report
        self.title = f"Drift {report.model}"
        order = ranked(report)["feature"].tolist()
        self.feature_select = widgets.Dropdown(options=order, description="feature")
        self.feature_select.add_class("mnb-feature-select")
        if feature is not None:
            self.feature_select.value = feature
        self.refresh_button = button("Refresh history", "refresh")
        self.feature_select.observe(lambda _c: self._show_feature(), names="value")
        self.refresh_button.on_click(lambda _b: self.refresh())
        charts_row = widgets.HBox([self._panes["distribution"], self._panes["history"]])
        self.root.children = [
            self._panes["summary"],
            widgets.HBox([self.feature_select, self.refresh_button]),
            charts_row,
            self.message,
        ]
        self._set("summary", summary_html(report))
        self._show_feature()

    def _show_feature(self) -> None:
        feature = self.feature_select.value
        self._set("distribution", distribution_html(self.report, feature) if feature else "")
        self.refresh()

    def refresh(self) -> None:
        self._set("history", history_html(self.report, self.feature_select.value or None))
