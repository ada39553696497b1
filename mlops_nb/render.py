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


def stage_badge(stage: str) -> str:
    color = STAGE_COLORS.get(stage, "#6e7781")
    return (
        f'<span class="mnb-stage" style="background:{color};color:#fff;padding:1px 6px;'
        f'border-radius:8px">{escape(stage)}</span>'
    )


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


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th {_CELL}>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def versions_table(model: str, frame: pd.DataFrame) -> str:
    """Versions with stage badges, aliases and the first few metrics."""
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
                _fmt(rec["created_at"]),
            ]
        )
    more = len(frame) - _MAX_ROWS
    tail = f"<p>… {more} more; see .versions()</p>" if more > 0 else ""
    return f"<div><b>{escape(model)}</b> · {len(frame)} versions{_table(headers, rows)}{tail}</div>"


def version_card(row: dict[str, Any]) -> str:
    """One version: identity, stage, metrics, lineage, digest."""
    pairs = [
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
    rows = [[escape(k), v] for k, v in pairs]
    title = f"{escape(str(row['model']))} v{row['version']}"
    return f"<div><b>{title}</b>{_table(['field', 'value'], rows)}</div>"


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
