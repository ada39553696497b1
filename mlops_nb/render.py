"""Static HTML for notebook output: readable in saved and exported notebooks, no JavaScript.

>>> stage_badge("production")
'<span class="mnb-stage" style="background:#1a7f37;color:#fff;padding:1px 6px;border-radius:8px">production</span>'
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import pandas as pd

STAGE_COLORS = {
    "development": "#6e7781",
    "staging": "#9a6700",
    "production": "#1a7f37",
    "archived": "#afb8c1",
}
_TABLE = 'style="border-collapse:collapse;font-size:12px"'
_CELL = 'style="padding:2px 8px;text-align:left;border-bottom:1px solid #ddd"'
_MAX_METRICS = 4
_MAX_ROWS = 50


VERDICT_COLORS = {True: "#cf222e", False: "#1a7f37", None: "#6e7781"}


def stage_badge(stage: str) -> str:
    return badge(stage, STAGE_COLORS.get(stage, "#6e7781"), "mnb-stage")


def badge(text: str, color: str, css: str = "mnb-badge") -> str:
    """A coloured label: stages, verdicts, decisions."""
    return (
        f'<span class="{css}" style="background:{color};color:#fff;padding:1px 6px;'
        f'border-radius:8px">{escape(text)}</span>'
    )


def verdict_badge(bad: bool | None, text: str) -> str:
    """Red when ``bad``, green when not, grey when there is no verdict (None)."""
    return badge(text, VERDICT_COLORS[bad], "mnb-verdict")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple | np.ndarray):
        return escape(", ".join(str(v) for v in value))
    if hasattr(value, "strftime"):
        return escape(value.strftime("%Y-%m-%d %H:%M:%S"))
    return escape(str(value))


def fmt(value: Any) -> str:
    """One cell's text, escaped: floats to 4 significant digits, times to the second.

    >>> fmt(0.123456), fmt(None), fmt(["a", "b"])
    ('0.1235', '', 'a, b')
    """
    return _fmt(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table of cells that are already HTML (escape text with :func:`fmt`)."""
    return _table(headers, rows)


def frame_table(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A DataFrame (at most 50 rows) as an HTML table, each cell through :func:`fmt`."""
    cols = columns or [str(c) for c in frame.columns]
    rows = [[_fmt(rec.get(c)) for c in cols] for rec in frame.head(_MAX_ROWS).to_dict("records")]
    more = len(frame) - _MAX_ROWS
    return _table(cols, rows) + (f"<p>… {more} more rows</p>" if more > 0 else "")


def card(title: str, pairs: list[tuple[str, str]]) -> str:
    """A titled two-column table of (field, HTML value) pairs."""
    rows = [[escape(k), v] for k, v in pairs]
    return f"<div><b>{escape(title)}</b>{_table(['field', 'value'], rows)}</div>"


def note(text: str, kind: str = "info") -> str:
    """A one-line message: ``info``, ``ok``, ``error`` (a refusal, a failed action)."""
    color = {"info": "#57606a", "ok": "#1a7f37", "error": "#cf222e"}[kind]
    return f'<div class="mnb-note mnb-{kind}" style="color:{color}">{escape(text)}</div>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th {_CELL}>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def versions_table(model: str, frame: pd.DataFrame, *, lineage: bool = False) -> str:
    """Versions with stage badges, aliases and the first few metrics (and their data)."""
    fixed = {
        "model",
        "version",
        "label",
        "stage",
        "aliases",
        "tags",
        "framework",
        "algorithm",
        "data_version",
        "created_at",
        "created_by",
        "digest",
    }
    metrics = [c for c in frame.columns if c not in fixed][:_MAX_METRICS]
    headers = ["version", "label", "stage", "aliases", *metrics, "algorithm", "created"]
    if lineage:
        headers.insert(-1, "data")
    rows = []
    for rec in frame.head(_MAX_ROWS).to_dict("records"):
        rows.append(
            [
                f"v{rec['version']}",
                _fmt(rec["label"]),
                stage_badge(str(rec["stage"])),
                _fmt(rec["aliases"]),
                *(_fmt(rec.get(m)) for m in metrics),
                _fmt(rec["algorithm"]),
                *([_fmt(rec["data_version"])] if lineage else []),
                _fmt(rec["created_at"]),
            ]
        )
    more = len(frame) - _MAX_ROWS
    tail = f"<p>… {more} more; see .versions()</p>" if more > 0 else ""
    return f"<div><b>{escape(model)}</b> · {len(frame)} versions{_table(headers, rows)}{tail}</div>"


def version_card(row: dict[str, Any]) -> str:
    """One version: identity, stage, metrics, lineage, digest."""
    pairs: list[tuple[str, str]] = [
        ("stage", stage_badge(str(row["stage"]))),
        ("label", _fmt(row["label"])),
        ("aliases", _fmt(row["aliases"])),
        ("tags", _fmt(row["tags"])),
        ("flavor", _fmt(row["flavor"])),
        ("algorithm", _fmt(row["algorithm"])),
        ("metrics", _fmt([f"{k}={v:.4g}" for k, v in sorted(row["metrics"].items())])),
        ("data version", _fmt(row["data_version"])),
        ("parent version", _fmt(row["parent_version"])),
        ("git commit", _fmt(row["git_commit"])),
        ("created", f"{_fmt(row['created_at'])} by {_fmt(row['created_by'])}"),
        ("digest", f"<code>{_fmt(row['digest'])}</code>"),
    ]
    return card(f"{row['model']} v{row['version']}", pairs)


def models_table(frame: pd.DataFrame) -> str:
    rows = [
        [
            escape(str(r["name"])),
            str(r["versions"]),
            _fmt(r["production"]),
            _fmt(r["latest"]),
            _fmt(r["aliases"]),
        ]
        for r in frame.head(_MAX_ROWS).to_dict("records")
    ]
    return _table(["model", "versions", "production", "latest", "aliases"], rows)
