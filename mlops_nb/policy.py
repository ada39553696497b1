"""Promotion policies: rules a version must meet before it enters a stage.

A policy set on a model replaces the workspace's policy for that model.

>>> p = Policy(min_metrics={"accuracy": 0.9}, require_reason=True, approvals=2)
>>> p
Policy(min_metrics={'accuracy': 0.9}, require_reason=True, approvals=2, stages=('staging', 'production'))
>>> check(p, "production", {"accuracy": 0.95}, "passed offline eval", approvers=["ana"])
('approvals', 'production needs 2 distinct approvals; has 1 (ana). Another reviewer runs v.approve()')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgument

STAGES = ("development", "staging", "production", "archived")


@dataclass(frozen=True)
class Policy:
    """Rules for promotions into ``stages``.

    - ``min_metrics``: each named metric must be recorded and at least this value.
    - ``require_reason``: the promotion must give a non-empty reason.
    - ``approvals``: distinct approvers (``v.approve()``) needed before *production*.
    """

    min_metrics: Mapping[str, float] = field(default_factory=dict)
    require_reason: bool = False
    approvals: int = 0
    stages: tuple[str, ...] = ("staging", "production")

    def __post_init__(self) -> None:
        if not isinstance(self.min_metrics, Mapping):
            raise InvalidArgument("min_metrics must be a dict of metric name -> minimum value")
        for name, value in self.min_metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise InvalidArgument(f"min_metrics[{name!r}] must be a number, got {value!r}")
        if (
            isinstance(self.approvals, bool)
            or not isinstance(self.approvals, int)
            or (self.approvals < 0)
        ):
            raise InvalidArgument(f"approvals must be an integer >= 0, got {self.approvals!r}")
        stages = (self.stages,) if isinstance(self.stages, str) else tuple(self.stages)
        for stage in stages:
            if stage not in STAGES:
                raise InvalidArgument(f"unknown stage {stage!r} in policy; use {', '.join(STAGES)}")
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "min_metrics", dict(self.min_metrics))

    def to_json(self) -> str:
        return json.dumps(
            {
                "min_metrics": dict(self.min_metrics),
                "require_reason": self.require_reason,
                "approvals": self.approvals,
                "stages": list(self.stages),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Policy:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            min_metrics=raw.get("min_metrics", {}),
            require_reason=bool(raw.get("require_reason", False)),
            approvals=int(raw.get("approvals", 0)),
            stages=tuple(raw.get("stages", ("staging", "production"))),
        )


def check(
    policy: Policy | None,
    stage: str,
    metrics: Mapping[str, float],
    reason: str | None,
    approvers: Sequence[str],
) -> tuple[str, str] | None:
    """The first rule a promotion breaks, as (rule, explanation), or None."""
    if policy is None or stage not in policy.stages:
        return None
    if policy.require_reason and not (reason and reason.strip()):
        return ("require_reason", f"promotions to {stage} need a reason: pass reason='...'")
    for name, minimum in sorted(policy.min_metrics.items()):
        if name not in metrics:
            return (
                f"min_metrics.{name}",
                f"metric {name!r} is required (>= {minimum:g}) but was not recorded",
            )
        if metrics[name] < minimum:
            return (
                f"min_metrics.{name}",
                f"metric {name!r} is {metrics[name]:g}, below the minimum {minimum:g}",
            )
    if stage == "production" and len(set(approvers)) < policy.approvals:
        who = ", ".join(sorted(set(approvers))) or "nobody yet"
        return (
            "approvals",
            f"production needs {policy.approvals} distinct approvals; has "
            f"{len(set(approvers))} ({who}). Another reviewer runs v.approve()",
        )
    return None
