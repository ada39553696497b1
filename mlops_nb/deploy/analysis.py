"""The guard's analysis: one check of a candidate revision's live numbers, and the one
decision function that canaries, blue-green switches and ``watch()`` all use.

A check is ``pass``, ``fail`` (with the breached thresholds) or ``inconclusive`` (fewer
than ``min_samples`` requests: no verdict on too little traffic). While a baseline (the
stable revision) serves over the same window, the candidate is judged against it; alone,
absolutely (see :class:`~mlops_nb.deploy.strategies.Guard`).

>>> from mlops_nb.deploy.target import RevisionTraffic, Traffic
>>> g = Guard(max_error_rate=0.05, min_samples=10)
>>> t = Traffic(60, (RevisionTraffic(2, 2, 40, 20, 0), RevisionTraffic(1, 1, 40, 0, 0)))
>>> check = analyse(g, t, None, candidate=2, baseline=[1])
>>> check.verdict
'fail'
>>> print(check.breaches[0])
error rate 0.5 exceeds the stable revision 0 by more than max_error_rate 0.05 (z 5.28 > 1.64 at alpha 0.05)

The comparison with the stable revision is a one-sided test for the difference of two
proportions (Agresti and Caffo's adjusted Wald interval: one error and one success added
to each side): chance alone, e.g. 52% against 45% of client garbage in a few hundred
requests, does not fail the candidate.

>>> t = Traffic(4, (RevisionTraffic(2, 2, 149, 77, 0), RevisionTraffic(1, 1, 167, 75, 0)))
>>> analyse(g, t, None, candidate=2, baseline=[1]).verdict
'pass'
>>> decide(g, ["pass", "fail", "pass", "fail", "fail"])
'abort'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from .strategies import Guard
from .target import Observed, Traffic


@dataclass(frozen=True)
class Check:
    verdict: str  # "pass", "fail" or "inconclusive"
    evidence: dict[str, Any] = field(default_factory=dict)
    breaches: tuple[str, ...] = ()


# Accuracy and drift need the workspace: the caller passes them in as a function that
# adds its findings to the evidence and returns breaches.
Quality = Callable[[Guard, int, dict[str, Any]], list[str]]


def _sum(traffic: Traffic, revisions: Sequence[int]) -> dict[str, Any]:
    rows = [r for r in traffic.revisions if r.revision in revisions]
    requests = sum(r.requests for r in rows)
    p95 = [r.p95_ms for r in rows if r.p95_ms is not None]
    p99 = [r.p99_ms for r in rows if r.p99_ms is not None]
    return {"requests": requests, "errors_5xx": sum(r.errors_5xx for r in rows),
            "errors_4xx": sum(r.errors_4xx for r in rows),
            "no_replica": sum(traffic.no_replica.get(r, 0) for r in revisions),
            "p95_ms": max(p95) if p95 else None, "p99_ms": max(p99) if p99 else None}  # fmt: skip


def analyse(
    guard: Guard, traffic: Traffic, observed: Observed | None, *, candidate: int,
    baseline: Sequence[int] = (), quality: Quality | None = None,
) -> Check:  # fmt: skip
    """One check of revision ``candidate`` against ``guard`` (and ``baseline``, if serving)."""
    cand = _sum(traffic, [candidate])
    base = _sum(traffic, [b for b in baseline if b != candidate])
    evidence: dict[str, Any] = {"revision": candidate, "window_s": traffic.window_s,
                                "candidate": cand, "baseline": base if baseline else None}  # fmt: skip
    status = observed.revision(candidate) if observed is not None else None
    if status is not None and status.crash_loop:
        evidence["reason"] = status.message
        return Check(
            "fail", evidence, (f"revision {candidate} is crash-looping: {status.message}",)
        )
    n = cand["requests"] + cand["no_replica"]
    if n < guard.min_samples:
        evidence["reason"] = f"{n} requests in the window, need {guard.min_samples}"
        return Check("inconclusive", evidence)
    compared = base["requests"] >= guard.min_samples
    evidence["compared"] = compared
    breaches: list[str] = []
    if guard.max_error_rate is not None:
        if compared:
            failed = cand["errors_5xx"] + cand["errors_4xx"] + cand["no_replica"]
            stable_failed = base["errors_5xx"] + base["errors_4xx"]
            rate, stable = failed / n, stable_failed / base["requests"]
            z = excess_z(failed, n, stable_failed, base["requests"], guard.max_error_rate)
            critical = NormalDist().inv_cdf(1 - guard.alpha)
            evidence.update(error_rate=rate, stable_error_rate=stable, excess_z=round(z, 3),
                            critical_z=round(critical, 3))  # fmt: skip
            if z > critical:
                breaches.append(f"error rate {rate:.4g} exceeds the stable revision "
                                f"{stable:.4g} by more than max_error_rate {guard.max_error_rate:g} "
                                f"(z {z:.3g} > {critical:.3g} at alpha {guard.alpha:g})")  # fmt: skip
        else:
            rate = (cand["errors_5xx"] + cand["no_replica"]) / n
            evidence["error_rate"] = rate
            if rate > guard.max_error_rate:
                breaches.append(f"error rate {rate:.4g} > max_error_rate {guard.max_error_rate:g}")
    for key, limit in (("p95_ms", guard.max_p95_latency_ms), ("p99_ms", guard.max_p99_latency_ms)):
        value = cand[key]
        if limit is None or value is None or value <= limit:
            continue
        if compared and base[key] is not None and value <= base[key]:
            continue  # as slow as the stable revision: the machine, not the version
        breaches.append(f"{key} {value:.4g} > max_{key[:3]}_latency_ms {limit:g}")
    if quality is not None and (
        guard.min_accuracy is not None or guard.max_drift_share is not None
    ):
        breaches += quality(guard, candidate, evidence)
    return Check("fail" if breaches else "pass", evidence, tuple(breaches))


def excess_z(failed: int, n: int, base_failed: int, base_n: int, margin: float) -> float:
    """How many standard errors the candidate's failure share exceeds the baseline's plus
    ``margin`` (> 0: beyond it). Each share is taken with one failure and one success
    added (Agresti-Caffo), which keeps the standard error honest at 0% and 100%.

    >>> round(excess_z(40, 40, 0, 40, 0.05), 1)  # every request failed, none on stable
    27.1
    >>> excess_z(2, 40, 2, 40, 0.05) < 0  # the same share on both sides
    True
    """
    p = (failed + 1) / (n + 2)
    q = (base_failed + 1) / (base_n + 2)
    se = math.sqrt(p * (1 - p) / (n + 2) + q * (1 - q) / (base_n + 2))
    return (p - q - margin) / se


def decide(guard: Guard, verdicts: Sequence[str]) -> str:
    """``abort`` once ``failure_limit`` of the last ``failure_window`` checks failed;
    ``continue`` when the latest passed; ``hold`` otherwise."""
    recent = list(verdicts)[-guard.failure_window :]
    if recent.count("fail") >= guard.failure_limit:
        return "abort"
    if recent and recent[-1] == "pass":
        return "continue"
    return "hold"


def same_value(prediction: Any, label: Any) -> bool:
    """Compare a prediction with a label as values, not as text.

    Labels are stored as text, so a number on either side compares as a number and a
    boolean on either side as a truth value:

    >>> same_value(1.0, "1"), same_value(np.int64(2), 2.0), same_value(np.bool_(True), "true")
    (True, True, True)
    >>> same_value("cat", "cat"), same_value("cat", 1), same_value(0.5, "0.50"), same_value(1, "2")
    (True, False, True, False)
    """
    if isinstance(prediction, bool | np.bool_) or isinstance(label, bool | np.bool_):
        return _truth(prediction) == _truth(label)
    if isinstance(prediction, numbers.Number) or isinstance(label, numbers.Number):
        try:
            return float(prediction) == float(label)
        except (TypeError, ValueError):
            return False
    return str(prediction) == str(label)


def _truth(value: Any) -> str:
    text = str(value).strip().lower()
    return {"1": "true", "1.0": "true", "0": "false", "0.0": "false"}.get(text, text)
