"""The outcome of a drift run: verdict, per-feature table, text and HTML views, storage."""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import duckdb

    from ..widgets.drift import DriftView
    from .core import Monitor


class DriftReport:
    """The outcome of one drift run. ``drifted`` is None when there was too little data."""

    def __init__(
        self, model: str, reference: str, current: str, n_ref: int, n_cur: int,
        summary: pd.DataFrame, outputs: pd.DataFrame, missing: pd.DataFrame, drift_share: float,
        run_id: int | None = None, outputs_in_verdict: bool = True,
    ) -> None:  # fmt: skip
        self.model = model
        self.reference = reference
        self.current = current
        self.n_ref = n_ref
        self.n_cur = n_cur
        self.summary = summary
        self.outputs = outputs
        self.missing = missing
        self.drift_share = drift_share
        self.run_id = run_id
        # Set by run_drift: where the view reads distributions and the run history from.
        self._sides: tuple[Any, Any] | None = None
        self._monitor: Monitor | None = None
        judged = summary[summary["drifted"].notna()]
        self.n_features = len(summary)
        self.n_judged = len(judged)
        self.n_drifted = int((judged["drifted"] == True).sum())  # noqa: E712
        self.share_drifted = self.n_drifted / self.n_judged if self.n_judged else None
        out_drift = outputs[outputs["drifted"] == True]["feature"].tolist()  # noqa: E712
        self.prediction_drifted = "prediction" in out_drift
        self.confidence_drifted = "confidence" in out_drift
        reasons = []
        if self.share_drifted is not None and self.share_drifted >= drift_share:
            reasons.append(f"{self.n_drifted} of {self.n_judged} features")
        if outputs_in_verdict:
            reasons += [f"{o} distribution" for o in out_drift]
        if reasons:
            self.drifted: bool | None = True
            self.verdict = "drifted: " + ", ".join(reasons)
        elif self.n_judged == 0 and outputs["drifted"].notna().sum() == 0:
            self.drifted = None
            self.verdict = "insufficient data"
        else:
            self.drifted = False
            self.verdict = "no drift"

    @property
    def drifted_features(self) -> list[str]:
        return self.summary.loc[self.summary["drifted"] == True, "feature"].tolist()  # noqa: E712

    def view(self) -> DriftView:
        """A live view: verdict, features by severity, distributions, drift over time."""
        from ..widgets.drift import DriftView

        return DriftView(self)

    def __repr__(self) -> str:
        share = "n/a" if self.share_drifted is None else f"{self.share_drifted:.0%}"
        return (
            f"<DriftReport {self.model}: {self.n_drifted}/{self.n_judged} features drifted "
            f"({share}), {self.verdict}>"
        )

    def _repr_html_(self) -> str:
        color = {True: "#cf222e", False: "#1a7f37", None: "#6e7781"}[self.drifted]
        head = (
            f"<p><b>Drift {escape(self.model)}</b>: <span style='color:{color}'>"
            f"{escape(self.verdict)}</span> · reference {escape(self.reference)} "
            f"({self.n_ref} rows) vs current {escape(self.current)} ({self.n_cur} rows)</p>"
        )
        frame = pd.concat([self.summary, self.outputs], ignore_index=True)
        shown = frame.assign(
            statistic=frame["statistic"].map(lambda x: "" if pd.isna(x) else f"{x:.4g}"),
            p_value=frame["p_value"].map(lambda x: "" if pd.isna(x) else f"{x:.3g}"),
            drifted=frame["drifted"].map(lambda x: "n/a" if x is None or pd.isna(x) else str(x)),
        ).fillna("")
        return head + shown.to_html(index=False, escape=True)

    def to_json(self) -> dict[str, Any]:
        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(frame.to_json(orient="records"))  # type: ignore[no-any-return]

        return {
            "summary": records(self.summary),
            "outputs": records(self.outputs),
            "missing": records(self.missing),
        }


def store_report(mon: Monitor, report: DriftReport) -> int:
    ws = mon._ws
    payload = json.dumps(report.to_json())

    def write(con: duckdb.DuckDBPyConnection) -> int:
        row = con.execute(
            "INSERT INTO drift_runs (model, ran_at, reference, current, n_ref, n_cur, drifted, "
            "share_drifted, verdict, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [mon.model, ws.now(), report.reference, report.current, report.n_ref, report.n_cur,
             report.drifted, report.share_drifted, report.verdict, payload],
        ).fetchone()  # fmt: skip
        assert row is not None
        return int(row[0])

    run_id = ws._store.write(write)
    if report.drifted:
        ws._emit(
            "drift", mon.model, None, {"drift_run": run_id, "share_drifted": report.share_drifted}
        )
    return run_id
