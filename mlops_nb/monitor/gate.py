"""Pass or fail a scheduled monitoring run: drift and metric thresholds over its window.

The monitoring notebook ends with :func:`judge`; a run with breaches raises
:class:`~mlops_nb.errors.ThresholdBreached`, which ``mlops-nb monitor`` turns into exit
status 1 (any other failure is 2). A threshold left at None is not checked. Over the
metrics of the window (one row per bucket, and version, from ``mon.metrics``):

- the error rate and the accuracy are the window's own (weighted by each row's count of
  predictions and of labelled predictions);
- the p95 latency is the worst bucket's: percentiles of buckets cannot be averaged, and a
  bad hour is what an alert is for.

A threshold that cannot be judged (no traffic, no latencies logged, no labels yet) is
named in ``notes`` and does not fail the run.

>>> import pandas as pd
>>> metrics = pd.DataFrame({"count": [100, 300], "error_rate": [0.0, 0.04],
...                         "latency_p95_ms": [12.0, 80.0], "labelled": [50, 0],
...                         "accuracy": [0.9, float("nan")]})
>>> gate = judge(None, metrics, max_error_rate=0.01, max_p95_ms=100, min_accuracy=0.95)
>>> gate.breaches
('error rate 0.03 > max_error_rate 0.01', 'accuracy 0.9 < min_accuracy 0.95 (50 labelled)')
>>> judge(None, metrics.iloc[:0], max_error_rate=0.01).notes
('max_error_rate: no predictions in the window; not judged',)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument, ThresholdBreached

if TYPE_CHECKING:
    import pandas as pd

    from .report import DriftReport


@dataclass(frozen=True)
class Gate:
    """What a monitoring run found: each breach, and each threshold it could not judge."""

    breaches: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.breaches

    def check(self, model: str) -> None:
        """Raise :class:`ThresholdBreached` naming every breach, if there is one."""
        if self.breaches:
            raise ThresholdBreached(f"{model}: " + "; ".join(self.breaches))


def judge(
    report: DriftReport | None, metrics: pd.DataFrame, *, fail_on_drift: bool = True,
    max_error_rate: float | None = None, max_p95_ms: float | None = None,
    min_accuracy: float | None = None,
) -> Gate:  # fmt: skip
    """The breaches of ``report`` (when ``fail_on_drift``) and of ``metrics`` over the window."""
    _limit("max_error_rate", max_error_rate, upper=1.0)
    _limit("max_p95_ms", max_p95_ms, upper=math.inf)
    _limit("min_accuracy", min_accuracy, upper=1.0)
    breaches: list[str] = []
    notes: list[str] = []
    if fail_on_drift and report is not None and report.drifted:
        breaches.append(f"{report.verdict} ({report.current} vs {report.reference})")
    count = float(metrics["count"].sum()) if "count" in metrics else 0.0
    if max_error_rate is not None:
        if count == 0:
            notes.append("max_error_rate: no predictions in the window; not judged")
        else:
            rate = float((metrics["error_rate"] * metrics["count"]).sum()) / count
            if rate > max_error_rate:
                breaches.append(f"error rate {rate:.4g} > max_error_rate {max_error_rate:g}")
    if max_p95_ms is not None:
        worst = metrics["latency_p95_ms"].max() if "latency_p95_ms" in metrics else math.nan
        if not isinstance(worst, float) or math.isnan(worst):
            notes.append("max_p95_ms: no latencies logged in the window; not judged")
        elif worst > max_p95_ms:
            breaches.append(f"p95 latency {worst:.4g} ms > max_p95_ms {max_p95_ms:g}")
    if min_accuracy is not None:
        scored = metrics[metrics["accuracy"].notna()] if "accuracy" in metrics else metrics.iloc[:0]
        labelled = int(scored["labelled"].sum()) if len(scored) else 0
        if labelled == 0:
            notes.append("min_accuracy: no labelled predictions in the window; not judged")
        else:
            accuracy = float((scored["accuracy"] * scored["labelled"]).sum()) / labelled
            if accuracy < min_accuracy:
                breaches.append(f"accuracy {accuracy:.4g} < min_accuracy {min_accuracy:g} "
                                f"({labelled} labelled)")  # fmt: skip
    return Gate(tuple(breaches), tuple(notes))


def _limit(name: str, value: Any, *, upper: float) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= upper:
        bound = "a number of milliseconds >= 0" if upper == math.inf else "a number in [0, 1]"
        raise InvalidArgument(f"{name} must be {bound}, or None to leave it unchecked; "
                              f"got {value!r}")  # fmt: skip
