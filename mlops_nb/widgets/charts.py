"""Charts of aggregates, drawn offline: Altair specs rendered to SVG by vl-convert.

vl-convert ships Vega and Vega-Lite inside its Python wheel, so no script is fetched from
anywhere: the SVG goes into the widget view and into the static HTML of every view alike,
and reads in nbconvert exports, GitHub's viewer and papermill outputs without JavaScript.
Every chart takes an aggregate (bins, buckets, runs): a frame over ``MAX_ROWS`` rows is a
bug in the caller, refused before Altair would refuse it.

>>> import pandas as pd
>>> svg(line(pd.DataFrame({"t": [1, 2], "y": [0.5, 0.25]}), "t", "y", title="demo"))[:4]
'<svg'
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, cast

import altair as alt
import pandas as pd

from ..errors import InvalidArgument

MAX_ROWS = 2_000
WIDTH = 320
HEIGHT = 140
# The Vega-Lite version bundled in vl-convert that matches Altair's schema major version.
_VL_VERSION = {"5": "5.20", "6": "6.4"}[alt.SCHEMA_VERSION.lstrip("v").split(".")[0]]
_PALETTE = ["#0969da", "#bf8700", "#8250df", "#1a7f37", "#cf222e", "#57606a"]


def _check(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) > MAX_ROWS:
        raise InvalidArgument(
            f"a chart takes an aggregate of at most {MAX_ROWS} rows, got {len(frame)}; "
            "bin or bucket the data in DuckDB first"
        )
    return frame


def _base(frame: pd.DataFrame, title: str) -> alt.Chart:
    return alt.Chart(_check(frame), title=title).properties(width=WIDTH, height=HEIGHT)


def line(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    color: str | None = None,
    title: str = "",
    x_title: str | None = None,
    y_title: str | None = None,
    rule: float | None = None,
) -> alt.TopLevelMixin:
    """A line per ``color`` group (versions) over ``x`` (time buckets, runs)."""
    enc: dict[str, Any] = {
        "x": alt.X(x, title=x_title or x),
        "y": alt.Y(y, title=y_title or y),
    }
    if color:
        enc["color"] = alt.Color(f"{color}:N", scale=alt.Scale(range=_PALETTE), title=color)
    chart = cast(alt.Chart, _base(frame, title).mark_line(point=True).encode(**enc))
    if rule is None:
        return chart
    mark = alt.Chart(pd.DataFrame({"y": [rule]})).mark_rule(strokeDash=[4, 4], color="#cf222e")
    return cast(alt.TopLevelMixin, alt.layer(chart, mark.encode(y="y:Q")))


def bars(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    color: str | None = None,
    title: str = "",
    horizontal: bool = False,
) -> alt.Chart:
    """Bars of ``y`` per ``x`` (traffic per version, labelled counts per bucket)."""
    cat = alt.X(f"{x}:N", title=x, sort=None) if not horizontal else alt.Y(f"{x}:N", sort=None)
    val = alt.Y(f"{y}:Q", title=y) if not horizontal else alt.X(f"{y}:Q", title=y)
    enc: dict[str, Any] = {"x": cat, "y": val} if not horizontal else {"y": cat, "x": val}
    if color:
        enc["color"] = alt.Color(f"{color}:N", scale=alt.Scale(range=_PALETTE), title=color)
    return cast(alt.Chart, _base(frame, title).mark_bar().encode(**enc))


def histogram(frame: pd.DataFrame, *, title: str = "") -> alt.Chart:
    """Overlaid reference and current shares over shared bins (``lo``, ``hi``, ``side``,
    ``share``)."""
    return cast(
        alt.Chart,
        (
            _base(frame, title)
            .mark_bar(opacity=0.55, binSpacing=0)
            .encode(
                x=alt.X("lo:Q", bin="binned", title="value"),
                x2="hi:Q",
                y=alt.Y("share:Q", stack=None, title="share of rows"),
                color=alt.Color(
                    "side:N", scale=alt.Scale(domain=["reference", "current"], range=_PALETTE[:2])
                ),
            )
        ),
    )


def categories(frame: pd.DataFrame, *, title: str = "") -> alt.Chart:
    """Reference and current shares side by side per category (``category``, ``side``,
    ``share``); unseen categories carry a ``*`` in their name."""
    return cast(
        alt.Chart,
        (
            _base(frame, title)
            .mark_bar()
            .encode(
                y=alt.Y("category:N", sort=None, title=None),
                x=alt.X("share:Q", title="share of rows"),
                yOffset=alt.YOffset("side:N", sort=["reference", "current"]),
                color=alt.Color(
                    "side:N", scale=alt.Scale(domain=["reference", "current"], range=_PALETTE[:2])
                ),
            )
        ),
    )


def beside(*parts: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """Charts side by side, drawn as one SVG."""
    return alt.hconcat(*parts)  # type: ignore[arg-type]


def svg(chart: alt.TopLevelMixin) -> str:
    """The chart as SVG (offline, by vl-convert); deterministic for the same data."""
    return _render(json.dumps(chart.to_dict(validate=True), sort_keys=True, default=str))


@functools.lru_cache(maxsize=64)
def _render(spec: str) -> str:
    import vl_convert as vlc

    text: str = vlc.vegalite_to_svg(json.loads(spec), vl_version=_VL_VERSION)
    # Vega names clip paths with a per-run counter; fix them so outputs stay stable.
    return re.sub(r"clip(\d+)", lambda m: f"mnbclip{m.group(1)}", text)


def empty(text: str) -> str:
    """A placeholder of the chart's size when there is nothing to draw."""
    return (
        f'<div class="mnb-empty" style="width:{WIDTH}px;height:{HEIGHT // 2}px;'
        f'color:#6e7781;font-size:12px">{text}</div>'
    )


def interactive(chart: alt.TopLevelMixin) -> Any:
    """The chart as an interactive ``altair.JupyterChart`` (an anywidget), offline.

    Its Vega bundle comes from vl-convert, not a CDN. It weighs about a megabyte in the
    page and in saved widget state, which is why the views draw SVG instead; use this
    for one chart you want to pan, zoom or select in.
    """
    alt.JupyterChart.enable_offline()
    return alt.JupyterChart(cast(Any, chart))
