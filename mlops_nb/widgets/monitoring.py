"""The monitoring view: volume, latency percentiles, error rate and quality over time.

Everything drawn comes from ``mon.metrics()``, which aggregates the prediction log in
DuckDB per time bucket and version: a chart never sees a raw prediction. Quality rests
on the labelled predictions only, so their count is drawn beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from .. import render
from ..errors import InvalidArgument
from ..monitor.metrics import CLASSIFICATION, REGRESSION
from . import charts
from .base import View, button

if TYPE_CHECKING:
    from ..monitor.core import Monitor

BUCKETS = ("1m", "5m", "1h", "1d")
WINDOWS = ("last 1h", "last 24h", "last 7d", "all")
# Coarser buckets tried, finest first, when the chosen one draws more than a chart takes.
COARSER = (*BUCKETS, "1w")
# The latency chart draws p50, p95 and p99: three points per bucket and version.
POINTS_PER_ROW = 3


def quality_metric(frame: pd.DataFrame) -> str | None:
    """The headline quality metric present: accuracy for classifiers, MAE for regressors."""
    for name in ("accuracy", "mae", *CLASSIFICATION, *REGRESSION):
        if name in frame.columns and frame[name].notna().any():
            return name
    return None


def totals(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per version over the whole window (weighted by requests and labels)."""
    metric = quality_metric(frame)
    rows = []
    for version, g in frame.groupby("version", sort=True):
        count = int(g["count"].sum())
        labelled = int(g["labelled"].sum())
        row: dict[str, Any] = {
            "version": f"v{version}",
            "requests": count,
            "error_rate": float((g["error_rate"] * g["count"]).sum() / count) if count else None,
            "latency_p95_ms (max)": g["latency_p95_ms"].max(),
            "labelled": labelled,
        }
        if metric:
            weights = g["labelled"].where(g[metric].notna(), 0)
            total = weights.sum()
            row[metric] = float((g[metric].fillna(0) * weights).sum() / total) if total else None
        rows.append(row)
    return pd.DataFrame(rows)


def chart_points(frame: pd.DataFrame) -> int:
    """Points the widest chart of ``frame`` draws (the latency chart's three percentiles)."""
    return POINTS_PER_ROW * len(frame)


def _series(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(version=frame["version"].map(lambda v: f"v{v}"))


def chart_sections(frame: pd.DataFrame) -> list[str]:
    """SVG charts of one metrics frame: volume, latency, errors, quality and labels."""
    if frame.empty:
        return [charts.empty("no predictions in this window")]
    data = _series(frame)
    out = [
        charts.svg(
            charts.line(
                data,
                "bucket:T",
                "count:Q",
                color="version",
                title="requests per bucket",
                x_title="time (UTC)",
            )
        ),
    ]
    latency = data.melt(
        id_vars=["bucket", "version"],
        value_vars=["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"],
        var_name="percentile",
        value_name="ms",
    )
    latency = latency[latency["ms"].notna()]
    if not latency.empty:
        latency = latency.assign(
            series=latency["version"]
            + " "
            + latency["percentile"].str.extract(r"_(p\d+)_", expand=False)
        )
        out.append(
            charts.svg(
                charts.line(
                    latency,
                    "bucket:T",
                    "ms:Q",
                    color="series",
                    title="latency percentiles",
                    x_title="time (UTC)",
                )
            )
        )
    out.append(
        charts.svg(
            charts.line(
                data,
                "bucket:T",
                "error_rate:Q",
                color="version",
                title="error rate",
                x_title="time (UTC)",
            )
        )
    )
    metric = quality_metric(frame)
    if metric:
        scored = data[data[metric].notna()]
        out.append(
            charts.svg(
                charts.line(
                    scored,
                    "bucket:T",
                    f"{metric}:Q",
                    color="version",
                    title=f"{metric} (labelled predictions)",
                    x_title="time (UTC)",
                )
            )
        )
        out.append(
            charts.svg(
                charts.bars(
                    data.assign(time=data["bucket"].dt.strftime("%m-%d %H:%M")),
                    "time",
                    "labelled",
                    color="version",
                    title="labelled predictions per bucket",
                )
            )
        )
    else:
        out.append(charts.empty("no labels yet: quality appears once labels are logged"))
    return out


class MonitoringView(View):
    """``mon.view()``: one model's traffic and quality per version over a window."""

    def __init__(self, mon: Monitor, bucket: str = "1h", over: Any = "last 24h") -> None:
        super().__init__(["note", "totals", "charts"])
        self.mon = mon
        self.title = f"Monitoring {mon.model}"
        self.bucket_select = widgets.Dropdown(
            options=sorted({*BUCKETS, bucket}, key=_span), value=bucket, description="bucket"
        )
        # A window given as a (start, end) range stays selectable under its own label.
        given = (over, over) if isinstance(over, str) else ("given range", over)
        self.window_select = widgets.Dropdown(
            options=[given, *((w, w) for w in WINDOWS if w != over)], value=over,
            description="window",
        )  # fmt: skip
        self.refresh_button = button("Refresh", "refresh")
        self.refresh_button.on_click(lambda _b: self.refresh_shown())
        self.bucket_select.observe(lambda _c: self.refresh_shown(), names="value")
        self.window_select.observe(lambda _c: self.refresh_shown(), names="value")
        self.root.children = [
            widgets.HBox([self.bucket_select, self.window_select, self.refresh_button]),
            self._panes["note"],
            self._panes["totals"],
            self._panes["charts"],
            self.message,
        ]
        self.refresh()

    def refresh(self) -> None:
        chosen = self.bucket_select.value
        bucket, frame = self._fitting(chosen, self.window_select.value)
        self.frame, self.bucket = frame, bucket
        self.message.value = ""
        if bucket == chosen:
            self._set("note", "")
        else:
            self._set(
                "note",
                render.note(
                    f"{chosen} buckets draw more points than a chart takes "
                    f"({charts.MAX_ROWS}): showing {bucket} buckets, the finest that fit"
                ),
            )
        if frame.empty:
            self._set("totals", render.note(f"no predictions in {self.window_select.label}"))
        else:
            self._set("totals", render.frame_table(totals(frame)))
        self._set("charts", '<div class="mnb-charts">' + "".join(chart_sections(frame)) + "</div>")

    def _fitting(self, chosen: str, window: Any) -> tuple[str, pd.DataFrame]:
        """The chosen bucket's metrics, or the finest coarser bucket's that a chart takes."""
        bucket, frame = chosen, self.mon.metrics(chosen, window=window)
        for coarser in (b for b in COARSER if _span(b) > _span(chosen)):
            if chart_points(frame) <= charts.MAX_ROWS:
                break
            bucket, frame = coarser, self.mon.metrics(coarser, window=window)
        if chart_points(frame) > charts.MAX_ROWS:
            raise InvalidArgument(
                f"even {bucket} buckets over {self.window_select.label} draw "
                f"{chart_points(frame)} points, more than a chart takes ({charts.MAX_ROWS}); "
                "choose a shorter window"
            )
        return bucket, frame


def _span(text: str) -> float:
    from ..monitor.windows import parse_span

    return parse_span(text).total_seconds()
