"""One render layer for runs: text, the stage graph as SVG, a duration chart, HTML.

The notebook view, the static ``_repr_html_`` and the email summary all come from here.
Everything is inline SVG and HTML: readable offline and in saved notebooks.

>>> from mlops_nb.pipelines.records import StageStatus
>>> s = StageStatus("train", "failed", 3, 1, 1.25, {}, "exit code 1", (), "python")
>>> stage_line(s)
'train  failed  3 attempts  1.2s  exit code 1'
"""

from __future__ import annotations

from html import escape

from ..render import _fmt, _table
from .records import Attempt, RunStatus, StageStatus

COLORS = {
    "pending": "#afb8c1", "queued": "#afb8c1", "running": "#0969da", "succeeded": "#1a7f37",
    "cached": "#54aeff", "failed": "#cf222e", "timeout": "#cf222e",
    "upstream_failed": "#d4a72c", "cancelled": "#6e7781", "skipped": "#6e7781",
    "abandoned": "#6e7781",
}  # fmt: skip
_W, _H, _GAP_X, _GAP_Y = 150, 44, 50, 16


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def stage_line(s: StageStatus) -> str:
    tries = f"{s.attempts} attempt{'s' if s.attempts != 1 else ''}"
    origin = f"from {s.cached_from}" if s.cached_from else ""
    parts = [s.name, s.status, tries, seconds(s.duration_s), s.error or "", origin]
    return "  ".join(p for p in parts if p)


def text(status: RunStatus) -> str:
    head = f"run {status.run_id}: {status.status}"
    if status.reason:
        head += f" ({status.reason})"
    return "\n".join([head, *("  " + stage_line(s) for s in status.stages.values())])


def _layers(status: RunStatus) -> dict[str, tuple[int, int]]:
    depth: dict[str, int] = {}
    for name in status.stages:
        depth[name] = 0
    changed = True
    while changed:
        changed = False
        for name, s in status.stages.items():
            d = 1 + max((depth[x] for x in s.dependencies if x in depth), default=-1)
            if d != depth[name]:
                depth[name], changed = d, True
    rows: dict[int, int] = {}
    place = {}
    for name in status.stages:
        col = depth[name]
        place[name] = (col, rows.get(col, 0))
        rows[col] = rows.get(col, 0) + 1
    return place


def graph_svg(status: RunStatus) -> str:
    """The stages as boxes in dependency columns, coloured by status."""
    place = _layers(status)
    cols = 1 + max(c for c, _ in place.values())
    rows = 1 + max(r for _, r in place.values())
    width, height = cols * (_W + _GAP_X), rows * (_H + _GAP_Y)
    xy = {n: (c * (_W + _GAP_X) + 4, r * (_H + _GAP_Y) + 4) for n, (c, r) in place.items()}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="mnb-pipeline-graph" width="{width}" '
             f'height="{height}" font-family="sans-serif" font-size="11">']  # fmt: skip
    for name, s in status.stages.items():
        for dep in s.dependencies:
            (x1, y1), (x2, y2) = xy[dep], xy[name]
            parts.append(f'<line x1="{x1 + _W}" y1="{y1 + _H // 2}" x2="{x2}" y2="{y2 + _H // 2}" '
                         'stroke="#8c959f" stroke-width="1.5"/>')  # fmt: skip
    for name, s in status.stages.items():
        x, y = xy[name]
        color = COLORS.get(s.status, "#6e7781")
        detail = f"{s.status} · {s.attempts}x · {seconds(s.duration_s)}".rstrip(" ·")
        parts.append(
            f'<g class="mnb-stage-node" data-stage="{escape(name)}" data-status="{s.status}">'
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" fill="{color}"/>'
            f'<text x="{x + 8}" y="{y + 17}" fill="#fff" font-weight="bold">{escape(name)}</text>'
            f'<text x="{x + 8}" y="{y + 33}" fill="#fff">{escape(detail)}</text></g>'
        )
    return "".join(parts) + "</svg>"


def durations_svg(status: RunStatus) -> str:
    """A bar per stage: how long its last attempt took."""
    stages = list(status.stages.values())
    longest = max((s.duration_s or 0.0 for s in stages), default=0.0) or 1.0
    height = 20 * len(stages) + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="mnb-durations" width="420" '
             f'height="{height}" font-family="sans-serif" font-size="11">']  # fmt: skip
    for i, s in enumerate(stages):
        w = 250 * (s.duration_s or 0.0) / longest
        y = 20 * i + 2
        parts.append(
            f'<text x="0" y="{y + 12}">{escape(s.name[:18])}</text>'
            f'<rect x="120" y="{y}" width="{w:.1f}" height="14" fill="{COLORS.get(s.status, "#6e7781")}"/>'
            f'<text x="{125 + w:.1f}" y="{y + 12}">{seconds(s.duration_s)}</text>'
        )
    return "".join(parts) + "</svg>"


def attempts_table(attempts: list[Attempt]) -> str:
    rows = [[escape(a.stage), str(a.attempt), escape(a.verdict), _fmt(a.exit_code),
             seconds(a.duration_s), _fmt(a.log_bytes), escape(a.error or "")] for a in attempts]  # fmt: skip
    return _table(["stage", "attempt", "verdict", "exit", "duration", "log bytes", "error"], rows)


def html(status: RunStatus, attempts: list[Attempt], log_stage: str | None = None,
         log: str | None = None, chart: bool = False) -> str:  # fmt: skip
    color = COLORS.get(status.status, "#6e7781")
    head = (f'<div class="mnb-run"><b>Pipeline run</b> {escape(status.run_id)} '
            f'<span style="background:{color};color:#fff;padding:1px 6px;border-radius:8px">'
            f"{escape(status.status)}</span> {escape(status.reason or '')}")  # fmt: skip
    body = [head, "<div>", graph_svg(status), "</div>"]
    if chart:
        body += ["<div>", durations_svg(status), "</div>"]
    body.append(attempts_table(attempts))
    if log_stage is not None:
        tail = (log or "")[-4000:]
        body.append(f"<div><b>log: {escape(log_stage)}</b><pre style=\"max-height:240px;"
                    f'overflow:auto;background:#f6f8fa">{escape(tail)}</pre></div>')  # fmt: skip
    return "".join(body) + "</div>"
