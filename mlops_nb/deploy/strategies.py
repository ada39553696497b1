"""How a new version replaces the running one, and when a guard rolls it back.

>>> Canary(steps=[10, 50, 100], pause="30s")
Canary(steps=(10, 50, 100), pause='30s', guard=None)
>>> ABTest(split={3: 50, 4: 50}, key="header:x-user-id").weights()
{3: 50, 4: 50}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument
from ..monitor.windows import parse_span


def _span(value: str | None, what: str) -> float | None:
    if value is None:
        return None
    return parse_span(value).total_seconds() if isinstance(value, str) else _bad(what, value)


def _bad(what: str, value: Any) -> float:
    raise InvalidArgument(f"{what} must be a duration such as '30s' or '5m', got {value!r}")


@dataclass(frozen=True)
class Guard:
    """Analysis that decides go, hold or roll back, from the deployment's live numbers.

    Each check looks at the last ``window`` of traffic of the version under watch; with
    fewer than ``min_samples`` requests it is inconclusive (no verdict on too little
    traffic). ``failure_limit`` failed checks in a row trigger the rollback. Thresholds
    left as None are not checked; ``min_accuracy`` needs labels (``log_labels``).
    """

    max_error_rate: float | None = None
    max_p95_latency_ms: float | None = None
    max_p99_latency_ms: float | None = None
    min_accuracy: float | None = None
    max_drift_share: float | None = None
    interval: str = "10s"
    window: str = "1m"
    failure_limit: int = 3
    min_samples: int = 20

    def __post_init__(self) -> None:
        for name in ("max_error_rate", "max_p95_latency_ms", "max_p99_latency_ms",
                     "min_accuracy", "max_drift_share"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or value < 0):  # fmt: skip
                raise InvalidArgument(f"{name} must be a non-negative number, got {value!r}")
        _span(self.interval, "interval")
        _span(self.window, "window")
        for name in ("failure_limit", "min_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")

    @property
    def interval_s(self) -> float:
        return float(_span(self.interval, "interval") or 0)

    @property
    def window_s(self) -> float:
        return float(_span(self.window, "window") or 0)


@dataclass(frozen=True)
class Rolling:
    """Replace replicas one at a time: a new one must be ready before an old one stops."""

    max_surge: int = 1


@dataclass(frozen=True)
class BlueGreen:
    """Start a full set of new replicas, switch all traffic at once, then stop the old set.

    ``guard`` (optional) watches the new version after the switch and switches back.
    """

    guard: Guard | None = None


@dataclass(frozen=True)
class Canary:
    """Shift traffic in ``steps`` (percent), waiting ``pause`` at each; None waits for
    ``dep.promote()``. The guard decides at each step: go on, hold, or roll back."""

    steps: Sequence[int] = (10, 50, 100)
    pause: str | None = "30s"
    guard: Guard | None = None

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        if not steps or any(isinstance(s, bool) or not isinstance(s, int) for s in steps):
            raise InvalidArgument(
                f"steps must be integers (percent of traffic), got {self.steps!r}"
            )
        if any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)):
            raise InvalidArgument(f"steps must rise strictly within 1..100, got {list(steps)}")
        if steps[-1] != 100:
            steps = (*steps, 100)
        object.__setattr__(self, "steps", steps)
        _span(self.pause, "pause")

    @property
    def pause_s(self) -> float | None:
        return _span(self.pause, "pause")


@dataclass(frozen=True)
class ABTest:
    """Split traffic between versions by weight, sticky on a request key.

    ``key`` is ``"header:<name>"``: requests with the same header value always reach the
    same version (hash of the value); requests without it are split at random.
    """

    split: Mapping[int, int] = field(default_factory=dict)
    key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.split, Mapping) or len(self.split) < 2:
            raise InvalidArgument(
                "split must map two or more versions to weights, e.g. {3: 50, 4: 50}"
            )
        for version, weight in self.split.items():
            if isinstance(version, bool) or not isinstance(version, int):
                raise InvalidArgument(f"split keys are version numbers, got {version!r}")
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise InvalidArgument(f"split weights are non-negative integers, got {weight!r}")
        if sum(self.split.values()) <= 0:
            raise InvalidArgument("split weights must not all be zero")
        if self.key is not None and not (
            isinstance(self.key, str) and self.key.startswith("header:") and len(self.key) > 7
        ):
            raise InvalidArgument(f"key must look like 'header:x-user-id', got {self.key!r}")
        object.__setattr__(self, "split", dict(self.split))

    def weights(self) -> dict[int, int]:
        return dict(self.split)


Strategy = Rolling | BlueGreen | Canary | ABTest


def describe(strategy: Strategy) -> str:
    return type(strategy).__name__.lower()
