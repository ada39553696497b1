"""Operational and quality metrics per time bucket and version.

Traffic and latency are aggregated in DuckDB over the Parquet log; quality metrics use
only the predictions that have a label, computed with scikit-learn, and every row says
how many labelled predictions it rests on (``labelled``):

- classifiers (string, boolean or integer predictions): accuracy; precision, recall and
  F1 (binary: of the positive class, the larger label; multi-class: macro averages);
  ROC AUC for binary problems when confidences were logged (the confidence is read as
  the probability of the predicted class);
- regressors (float predictions): MAE and RMSE.

A metric that cannot be computed for a bucket (no labels, one class only) is missing
(NaN) in that row; it is never guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InvalidArgument
from .windows import parse, parse_span

if TYPE_CHECKING:
    from .core import Monitor

OPS_COLUMNS = [
    "bucket", "version", "count", "rate_per_s", "latency_p50_ms", "latency_p95_ms",
    "latency_p99_ms", "error_rate", "confidence_mean",
]  # fmt: skip
CLASSIFICATION = ["accuracy", "precision", "recall", "f1", "roc_auc"]
REGRESSION = ["mae", "rmse"]


def compute_metrics(mon: Monitor, *, bucket: str, by: str | None, window: Any) -> pd.DataFrame:
    if by not in (None, "version"):
        raise InvalidArgument(f"by must be 'version' or None, got {by!r}")
    seconds = parse_span(bucket).total_seconds()
    if seconds <= 0:
        raise InvalidArgument(f"bucket {bucket!r} must be a positive duration")
    selected = mon.window_sql(parse(window))
    columns = OPS_COLUMNS if by else [c for c in OPS_COLUMNS if c != "version"]
    if selected is None:
        return pd.DataFrame(columns=[*columns, "labelled"])
    sql, params = selected
    store = mon._ws._store
    present = {
        r[0] for r in store.read(lambda con: con.execute(f"DESCRIBE {sql}", params).fetchall())
    }
    group = "bucket, version" if by else "bucket"
    error = "avg((error IS NOT NULL)::INTEGER)" if "error" in present else "0.0"
    latency = "latency_ms" if "latency_ms" in present else "NULL::DOUBLE"
    confidence = "avg(confidence)" if "confidence" in present else "NULL::DOUBLE"
    ops = store.query_df(
        f"""
        SELECT time_bucket(to_microseconds({int(seconds * 1e6)}), timestamp) AS bucket,
               {"version," if by else ""}
               count(*) AS count,
               count(*) / {seconds} AS rate_per_s,
               -- One list of quantiles: each group's latencies are ordered once, not three times.
               quantile_cont({latency}, [0.50, 0.95, 0.99]) AS latency_q,
               {error} AS error_rate,
               {confidence} AS confidence_mean
        FROM ({sql}) GROUP BY {group} ORDER BY {group}
        """,
        params,
    )
    quantiles = [
        list(q) if isinstance(q, list | np.ndarray) else [None] * 3 for q in ops.pop("latency_q")
    ]
    for i, name in enumerate(["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]):
        ops[name] = pd.Series([q[i] for q in quantiles], index=ops.index, dtype="float64")
    ops = ops[columns]
    conf_col = "p.confidence" if "confidence" in present else "NULL::DOUBLE"
    # Without labels there is nothing to join: the join would still read every row's id.
    has_labels = store.read(
        lambda con: con.execute(
            "SELECT EXISTS (SELECT 1 FROM labels WHERE model = ?)", [mon.model]
        ).fetchone()
    )
    if not (has_labels and has_labels[0]):
        out = ops.copy()
        out["labelled"] = 0
        return out.reset_index(drop=True)
    labelled = store.query_df(
        f"""
        SELECT time_bucket(to_microseconds({int(seconds * 1e6)}), p.timestamp) AS bucket,
               p.version, p.prediction, {conf_col} AS confidence, l.label, l.label_num
        FROM ({sql}) p JOIN labels l ON l.model = ? AND l.id = p.id
        WHERE p.prediction IS NOT NULL
        """,
        [*params, mon.model],
    )
    quality = _quality(labelled, ["bucket", "version"] if by else ["bucket"])
    keys = ["bucket", "version"] if by else ["bucket"]
    out = ops.merge(quality, on=keys, how="left") if not quality.empty else ops
    out["labelled"] = out.get("labelled", pd.Series(0, index=out.index)).fillna(0).astype(int)
    return out.reset_index(drop=True)


def _quality(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=[*keys, "labelled"])
    numeric_pred = pd.api.types.is_numeric_dtype(rows["prediction"]) and not (
        pd.api.types.is_bool_dtype(rows["prediction"])
    )
    regression = bool(
        numeric_pred
        and pd.api.types.is_float_dtype(rows["prediction"])
        and not np.all(np.mod(rows["prediction"].to_numpy(dtype=float), 1) == 0)
    )
    pred: pd.Series[Any] = (
        rows["prediction"].astype(float) if numeric_pred else rows["prediction"].astype(str)
    )
    truth = rows["label_num"] if numeric_pred else rows["label"]
    frame = rows.assign(_pred=pred, _truth=truth)
    out = []
    for key, group in frame.groupby(keys, sort=True):
        record = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        group = group[group["_truth"].notna()]
        record["labelled"] = len(group)
        record.update(_regression(group) if regression else _classification(group))
        out.append(record)
    return pd.DataFrame.from_records(out)


def _regression(group: pd.DataFrame) -> dict[str, float]:
    err = group["_pred"].to_numpy(dtype=float) - group["_truth"].to_numpy(dtype=float)
    if err.size == 0:
        return {"mae": np.nan, "rmse": np.nan}
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def _classification(group: pd.DataFrame) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    nan = float("nan")
    result = dict.fromkeys(CLASSIFICATION, nan)
    if group.empty:
        return result
    y_true = group["_truth"].to_numpy()
    y_pred = group["_pred"].to_numpy()
    classes = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    result["accuracy"] = float(accuracy_score(y_true, y_pred))
    if len(classes) == 2:
        positive = classes[-1]
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, pos_label=positive, average="binary", zero_division=0.0
        )
        conf = group["confidence"].to_numpy(dtype=float)
        if len(set(y_true.tolist())) == 2 and not np.isnan(conf).any():
            score = np.where(y_pred == positive, conf, 1.0 - conf)
            result["roc_auc"] = float(roc_auc_score(y_true == positive, score))
    elif len(classes) > 2:
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, average="macro", zero_division=0.0
        )
    else:
        return result
    result.update(precision=float(p), recall=float(r), f1=float(f))
    return result
