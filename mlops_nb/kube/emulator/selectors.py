"""Label and field selectors, with the grammar ``kubectl -l`` accepts.

>>> match_labels("app=iris,tier in (web, api),!legacy", {"app": "iris", "tier": "api"})
True
>>> match_labels("app!=iris", {"app": "iris"})
False
>>> match_fields("metadata.name=iris", {"metadata": {"name": "iris"}})
True
"""

from __future__ import annotations

import re
from typing import Any

_SET = re.compile(r"^\s*(!?)([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split(selector: str) -> list[str]:
    # Commas inside "in (a, b)" do not separate requirements.
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])
    return [p.strip() for p in parts if p.strip()]


def match_labels(selector: str | None, labels: dict[str, str]) -> bool:
    for req in _split(selector or ""):
        if m := _SET.match(req):
            values = {v.strip() for v in m.group(4).split(",") if v.strip()}
            present = m.group(2) in labels and labels[m.group(2)] in values
            if present != (m.group(3) == "in"):
                return False
        elif "!=" in req:
            key, value = (s.strip() for s in req.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in req:
            key, value = (s.strip() for s in req.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


def match_fields(selector: str | None, obj: dict[str, Any]) -> bool:
    for req in _split(selector or ""):
        negate = "!=" in req
        path, value = (s.strip() for s in req.replace("!=", "=").replace("==", "=").split("=", 1))
        node: Any = obj
        for step in path.split("."):
            node = node.get(step) if isinstance(node, dict) else None
        if (str(node) == value if node is not None else value == "") == negate:
            return False
    return True


def of_match_labels(match: dict[str, str]) -> str:
    """A ``matchLabels`` map as a selector string (sorted, so it reads the same each time)."""
    return ",".join(f"{k}={v}" for k, v in sorted(match.items()))
