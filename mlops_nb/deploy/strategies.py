"""How a new version replaces the running one, and when a guard rolls it back.

>>> Canary(steps=[10, 50], pause="30s").steps
(10, 50, 100)
>>> ABTest(split={3: 50, 4: 50}, key="header:x-user-id").weights()
{3: 50, 4: 50}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
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

    Each check looks at the last ``window`` of traffic of the revision under watch; with
    fewer than ``min_samples`` requests it is inconclusive (no verdict on too little
    traffic). While the stable revision serves beside it, the candidate is judged against
    it over the same window: its error rate (5xx, 4xx and requests no replica could take)
    may exceed the stable one's by at most ``max_error_rate``; it fails only when the
    excess is beyond what the window's sample sizes explain by chance (a one-sided test at
    level ``alpha``, so two sides that both answer garbage ~50% of the time do not fail a
    healthy candidate on a few requests' luck), and a latency ceiling counts
    only where the candidate is also slower than the stable revision, so client garbage
    that fails both sides does not fail the candidate. Alone, it is judged absolutely
    (5xx and no-replica answers). ``failure_limit`` failed checks among the last
    ``failure_window`` abort the rollout and roll back (as Argo Rollouts' ``failureLimit``:
    a pass, a pause or a new step does not reset the count, so an intermittently failing
    version is caught). Thresholds left as None are not checked; ``min_accuracy`` needs
    labels (``log_labels``).
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
    failure_window: int = 10
    alpha: float = 0.05

    def __post_init__(self) -> None:
        for name in ("max_error_rate", "max_p95_latency_ms", "max_p99_latency_ms",
                     "min_accuracy", "max_drift_share"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or value < 0):  # fmt: skip
                raise InvalidArgument(f"{name} must be a non-negative number, got {value!r}")
        _span(self.interval, "interval")
        _span(self.window, "window")
        for name in ("failure_limit", "min_samples", "failure_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
            raise InvalidArgument(
                f"alpha must be a number between 0 and 0.5 (e.g. 0.05), got {alpha!r}"
            )

    @property
    def interval_s(self) -> float:
        return float(_span(self.interval, "interval") or 0)

    @property
    def window_s(self) -> float:
        return float(_span(self.window, "window") or 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    ``dep.promote()``.

    A step advances once its pause is over and the guard's latest check made at that step
    passed (a step's first check comes one ``guard.interval`` after it starts, so a pause
    shorter than the interval waits for it); a failing check holds the step, and
    ``guard.failure_limit`` failures abort the canary (all traffic back on the stable
    revision at once). Inconclusive analysis (too little traffic) holds the step up to
    ``progress_deadline``, then pauses the canary or aborts it (``on_inconclusive``),
    saying why in ``status()``. ``bake`` keeps the guard watching for that long after
    100%, with the stable replicas still up for an instant rollback; a bake whose latest
    check failed holds until a check passes or the failures abort it.
    """

    steps: Sequence[int] = (10, 50, 100)
    pause: str | None = "30s"
    guard: Guard | None = None
    progress_deadline: str = "10m"
    on_inconclusive: str = "pause"
    bake: str | None = None

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
        _span(self.progress_deadline, "progress_deadline")
        _span(self.bake, "bake")
        if self.on_inconclusive not in ("pause", "abort"):
            raise InvalidArgument(
                f"on_inconclusive must be 'pause' or 'abort', got {self.on_inconclusive!r}"
            )
        if self.guard is not None and not isinstance(self.guard, Guard):
            raise InvalidArgument(f"guard must be an mlops_nb.Guard, got {self.guard!r}")

    @property
    def pause_s(self) -> float | None:
        return _span(self.pause, "pause")

    @property
    def deadline_s(self) -> float:
        return float(_span(self.progress_deadline, "progress_deadline") or 0)

    @property
    def bake_s(self) -> float:
        return float(_span(self.bake, "bake") or 0)


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


def to_dict(strategy: Strategy) -> dict[str, Any]:
    """JSON-ready form, kept with the rollout in the workspace."""
    data = asdict(strategy)
    if isinstance(strategy, ABTest):
        data["split"] = {str(k): v for k, v in strategy.split.items()}
    if isinstance(strategy, Canary):
        data["steps"] = list(strategy.steps)
    return {"kind": describe(strategy), **data}


def from_dict(data: dict[str, Any]) -> Strategy:
    kinds: dict[str, type[Strategy]] = {"rolling": Rolling, "bluegreen": BlueGreen,
                                          "canary": Canary, "abtest": ABTest}  # fmt: skip
    fields = {k: v for k, v in data.items() if k != "kind"}
    if isinstance(fields.get("guard"), dict):
        fields["guard"] = Guard(**fields["guard"])
    if data["kind"] == "abtest":
        fields["split"] = {int(k): v for k, v in fields["split"].items()}
    return kinds[data["kind"]](**fields)
