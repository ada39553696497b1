"""The guard's analysis: one check of live numbers against a :class:`Guard`'s thresholds.

Error rate and latency percentiles come from the router (every request it proxied in the
last ``window``); accuracy from the payload log joined with labels (the spool is ingested
first); drift from the monitor against the version's training reference. A check is
``pass``, ``fail`` (with the breached thresholds) or ``inconclusive`` (fewer than
``min_samples`` requests: no verdict on too little traffic). Every check is stored with
its evidence by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..monitor.windows import Window
from .strategies import Guard

if TYPE_CHECKING:
    from .core import Deployment


@dataclass(frozen=True)
class Check:
    verdict: str  # "pass", "fail" or "inconclusive"
    evidence: dict[str, Any] = field(default_factory=dict)
    breaches: tuple[str, ...] = ()


def analyse(guard: Guard, dep: Deployment, version: int) -> Check:
    stats = dep._router().stats(guard.window_s)["versions"].get(str(version))
    evidence: dict[str, Any] = {"version": version, "window_s": guard.window_s, "router": stats}
    count = int(stats["count"]) if stats else 0
    if count < guard.min_samples:
        evidence["reason"] = f"{count} requests in the window, need {guard.min_samples}"
        return Check("inconclusive", evidence)
    assert stats is not None
    breaches = []
    limits = (
        ("max_error_rate", "error_rate", guard.max_error_rate),
        ("max_p95_latency_ms", "p95_ms", guard.max_p95_latency_ms),
        ("max_p99_latency_ms", "p99_ms", guard.max_p99_latency_ms),
    )
    for name, key, limit in limits:
        if limit is not None and stats[key] > limit:
            breaches.append(f"{key} {stats[key]:.4g} > {name} {limit:g}")
    if guard.min_accuracy is not None or guard.max_drift_share is not None:
        breaches += _quality(guard, dep, version, evidence)
    return Check("fail" if breaches else "pass", evidence, tuple(breaches))


def _quality(guard: Guard, dep: Deployment, version: int, evidence: dict[str, Any]) -> list[str]:
    mon = dep._ws.monitor(dep.model)
    dep.flush_logs()
    window = Window(last=f"{max(int(guard.window_s), 1)}s")
    breaches = []
    if guard.min_accuracy is not None:
        rows = mon.predictions(window, version=version)
        labelled = rows[rows["label"].notna()]
        evidence["labelled"] = len(labelled)
        if len(labelled) >= guard.min_samples:
            accuracy = float(
                (labelled["prediction"].astype(str) == labelled["label"].astype(str)).mean()
            )
            evidence["accuracy"] = accuracy
            if accuracy < guard.min_accuracy:
                breaches.append(f"accuracy {accuracy:.4g} < min_accuracy {guard.min_accuracy:g}")
    if guard.max_drift_share is not None:
        try:
            report = mon.drift("training", window, version=version, store=False)
        except Exception as e:  # no reference data: say so in the evidence, do not fail
            evidence["drift"] = f"not computed: {e}"
        else:
            evidence["drift_share"] = report.share_drifted
            share = report.share_drifted
            if share is not None and share > guard.max_drift_share:
                breaches.append(
                    f"drift share {share:.2f} > max_drift_share {guard.max_drift_share:g}"
                )
    return breaches
