"""Promotion policies: rules a version must meet before it enters a stage, and who may
promote or approve.

A policy set on a model replaces the workspace's policy for that model.

>>> p = Policy(min_metrics={"accuracy": 0.9}, require_reason=True, approvals=2)
>>> p
Policy(min_metrics={'accuracy': 0.9}, require_reason=True, approvals=2, stages=('staging', 'production'))
>>> check(p, "production", {"accuracy": 0.95}, "passed offline eval", approvers=["ana"])
('approvals', 'production needs 2 distinct approvals; has 1 (ana). Another reviewer runs v.approve()')

Roles name users as the audit log does (``MLOPS_NB_USER``, else the login name):

>>> r = Policy(promoters={"production": ["ana", "raj"]}, approvers=["lee"])
>>> may_promote(r, "production", "bob")
('promoters', 'bob may not promote to production; ask one of: ana, raj')
>>> may_approve(r, "lee") is None
True

Roles keep honest people to the agreed process on a shared file. They are not access
control: anyone who can write the DuckDB file can set ``MLOPS_NB_USER`` or edit the file
directly. The audit log keeps the login name beside an overridden user, so an override
shows; use file-system permissions (or a server in front) against hostile writers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgument

STAGES = ("development", "staging", "production", "archived")


def _bounds(value: object, what: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{what} must be a dict of metric name -> bound, got {value!r}")
    out = {}
    for name, bound in value.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"{what} keys must be metric names, got {name!r}")
        if (
            isinstance(bound, bool)
            or not isinstance(bound, int | float)
            or not math.isfinite(float(bound))
        ):
            raise InvalidArgument(f"{what}[{name!r}] must be a finite number, got {bound!r}")
        out[name] = float(bound) if isinstance(bound, float) else bound
    return out


def _users(value: object, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset) or not all(
        isinstance(u, str) and u.strip() == u and u for u in items
    ):
        raise InvalidArgument(f"{what} must be a list of user names, got {value!r}")
    return tuple(sorted(set(items)))


@dataclass(frozen=True)
class Policy:
    """Rules for promotions into ``stages``.

    - ``min_metrics`` / ``max_metrics``: each named metric must be recorded and at least
      (at most) this value, e.g. ``max_metrics={"rmse": 3.0}``.
    - ``require_reason``: the promotion must give a non-empty reason.
    - ``approvals``: distinct approvers (``v.approve()``) needed before *production*.
    - ``promoters``: stage -> users who may promote into it (stages not named: anyone).
    - ``approvers``: users whose ``v.approve()`` is accepted (empty: anyone).
    """

    min_metrics: Mapping[str, float] = field(default_factory=dict)
    require_reason: bool = False
    approvals: int = 0
    stages: tuple[str, ...] = ("staging", "production")
    max_metrics: Mapping[str, float] = field(default_factory=dict)
    promoters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    approvers: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_metrics", _bounds(self.min_metrics, "min_metrics"))
        object.__setattr__(self, "max_metrics", _bounds(self.max_metrics, "max_metrics"))
        for name in set(self.min_metrics) & set(self.max_metrics):
            if self.min_metrics[name] > self.max_metrics[name]:
                raise InvalidArgument(
                    f"metric {name!r} has min {self.min_metrics[name]:g} above max "
                    f"{self.max_metrics[name]:g}: no version could pass"
                )
        if not isinstance(self.require_reason, bool):
            raise InvalidArgument(
                f"require_reason must be True or False, got {self.require_reason!r}"
            )
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
        if not isinstance(self.promoters, Mapping):
            raise InvalidArgument(
                "promoters must be a dict of stage -> user names, e.g. "
                "{'production': ['ana', 'raj']}"
            )
        promoters = {}
        for stage, users in self.promoters.items():
            if stage not in STAGES:
                raise InvalidArgument(
                    f"unknown stage {stage!r} in promoters; use {', '.join(STAGES)}"
                )
            promoters[stage] = _users(users, f"promoters[{stage!r}]")
            if not promoters[stage]:
                raise InvalidArgument(f"promoters[{stage!r}] names nobody: no one could promote")
        object.__setattr__(self, "promoters", dict(sorted(promoters.items())))
        object.__setattr__(self, "approvers", _users(self.approvers, "approvers"))
        if self.approvals > len(self.approvers) > 0:
            raise InvalidArgument(
                f"approvals={self.approvals} needs more approvers than the {len(self.approvers)} "
                "named in approvers"
            )

    def __repr__(self) -> str:
        # The original four fields always; the later ones only when set (short reprs).
        parts = [
            f"min_metrics={dict(self.min_metrics)!r}",
            f"require_reason={self.require_reason!r}",
            f"approvals={self.approvals!r}",
            f"stages={self.stages!r}",
        ]
        if self.max_metrics:
            parts.append(f"max_metrics={dict(self.max_metrics)!r}")
        if self.promoters:
            parts.append(f"promoters={ {k: list(v) for k, v in self.promoters.items()}!r}")
        if self.approvers:
            parts.append(f"approvers={list(self.approvers)!r}")
        return f"Policy({', '.join(parts)})"

    def to_json(self) -> str:
        return json.dumps(
            {
                "min_metrics": dict(self.min_metrics),
                "max_metrics": dict(self.max_metrics),
                "require_reason": self.require_reason,
                "approvals": self.approvals,
                "stages": list(self.stages),
                "promoters": {k: list(v) for k, v in self.promoters.items()},
                "approvers": list(self.approvers),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Policy:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            min_metrics=raw.get("min_metrics", {}),
            max_metrics=raw.get("max_metrics", {}),
            require_reason=bool(raw.get("require_reason", False)),
            approvals=int(raw.get("approvals", 0)),
            stages=tuple(raw.get("stages", ("staging", "production"))),
            promoters=raw.get("promoters", {}),
            approvers=tuple(raw.get("approvers", ())),
        )


def may_promote(policy: Policy | None, stage: str, user: str) -> tuple[str, str] | None:
    """(rule, explanation) when ``user`` may not promote into ``stage``, else None."""
    if policy is None or stage not in policy.promoters or user in policy.promoters[stage]:
        return None
    allowed = ", ".join(policy.promoters[stage])
    return ("promoters", f"{user} may not promote to {stage}; ask one of: {allowed}")


def may_approve(policy: Policy | None, user: str) -> tuple[str, str] | None:
    """(rule, explanation) when ``user``'s approval would not count, else None."""
    if policy is None or not policy.approvers or user in policy.approvers:
        return None
    allowed = ", ".join(policy.approvers)
    return ("approvers", f"{user} is not an approver; approvals count from: {allowed}")


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
    for name, maximum in sorted(policy.max_metrics.items()):
        if name not in metrics:
            return (
                f"max_metrics.{name}",
                f"metric {name!r} is required (<= {maximum:g}) but was not recorded",
            )
        if metrics[name] > maximum:
            return (
                f"max_metrics.{name}",
                f"metric {name!r} is {metrics[name]:g}, above the maximum {maximum:g}",
            )
    counted = set(approvers)
    if policy.approvers:
        counted &= set(policy.approvers)
    if stage == "production" and len(counted) < policy.approvals:
        who = ", ".join(sorted(counted)) or "nobody yet"
        return (
            "approvals",
            f"production needs {policy.approvals} distinct approvals; has "
            f"{len(counted)} ({who}). Another reviewer runs v.approve()",
        )
    return None
