"""Drift between a reference and current traffic, per feature and for the whole dataset.

Defaults (see :mod:`.stats` for the measurements behind them):

- numeric features: two-sample Kolmogorov-Smirnov while the smaller side has fewer than
  50,000 values; from there on the Wasserstein-1 distance divided by the reference's
  standard deviation, drifted at >= 0.05, because at large n every p-value goes to zero
  and a test would flag differences too small to matter;
- categorical features (strings, booleans): chi-square test of homogeneity below 50,000,
  PSI >= 0.1 above;
- p-value tests are Benjamini-Hochberg corrected across features at alpha 0.05, so twenty
  features do not raise twenty chances of a false alarm;
- a feature with fewer than ``min_samples`` values on either side gets no verdict
  ("insufficient data"), never a NaN;
- the dataset drifts when at least ``drift_share`` of the features with a verdict drift,
  or when the prediction or confidence distribution drifts (reported separately). With
  ``reference="training"`` the reference outputs are the model's predictions on its own
  training sample, which are in-sample (over-confident): they are reported but do not
  enter the verdict; compare outputs against a window of logged traffic instead;
- missing-value shares are compared on their own (``report.missing``): a jump in missing
  values is a data-quality problem, not a distribution shift.

Override per feature with ``methods={"age": "psi"}`` (``ks``, ``wasserstein_norm``,
``psi``, ``jensen_shannon``, ``chi2``) and ``thresholds={"age": 0.2}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import query
from ..errors import InvalidArgument
from . import stats, stream
from .convert import FEATURE_PREFIX
from .stats import StatResult
from .windows import Window, parse

if TYPE_CHECKING:
    import duckdb

    from .core import Monitor

NUMERIC_METHODS = {"ks", "wasserstein_norm", "psi", "jensen_shannon"}
CATEGORICAL_METHODS = {"chi2", "psi", "jensen_shannon"}
OUTPUTS = ("prediction", "confidence")
SUMMARY_COLUMNS = [
    "feature", "kind", "method", "statistic", "p_value", "threshold", "drifted", "n_ref",
    "n_cur", "note",
]  # fmt: skip
MISSING_CHANGE = 0.05
MISSING_COLUMNS = ["feature", "missing_ref", "missing_cur", "change", "flagged"]
BATCH_COLUMNS = 6
# Up to this many rows on both sides together, drift runs on the raw values in memory;
# above, on streamed summaries (see :mod:`.stream`), so memory stays flat.
EXACT_ROWS = 2_000_000


class Side:
    """One side of a comparison: column names, a row count, and columns fetched on demand.

    Windows over the log are read a few columns at a time, so memory follows the batch,
    not the width of the log.
    """

    def __init__(
        self, label: str, names: list[str], num_rows: int,
        fetch: Callable[[list[str]], pa.Table], scan: Callable[[list[str]], stream.Scan],
    ) -> None:  # fmt: skip
        self.label = label
        self.names = names
        self.num_rows = num_rows
        self._fetch = fetch
        self._scan = scan

    @classmethod
    def of_table(cls, table: pa.Table, label: str) -> Side:
        return cls(
            label, table.column_names, table.num_rows, table.select,
            lambda names: stream.batches(table, names),
        )  # fmt: skip

    def fetch(self, names: list[str]) -> pa.Table:
        return self._fetch([n for n in names if n in self.names])

    def scan(self, names: list[str]) -> stream.Scan:
        """A pass over the given columns in record batches (for the streaming path)."""
        return self._scan([n for n in names if n in self.names])


def _kind(dtype: pa.DataType, name: str) -> str:
    if pa.types.is_floating(dtype):
        return "numeric"
    # Integer predictions are class labels; integer features are counts and measures.
    if pa.types.is_integer(dtype) and name != "prediction":
        return "numeric"
    return "categorical"


def _numbers(col: pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.float64]]:
    arr = col.cast(pa.float64()).to_numpy()
    result: np.ndarray[Any, np.dtype[np.float64]] = arr[np.isfinite(arr)]
    return result


def _categories(col: pa.ChunkedArray) -> dict[str, float]:
    counts = pc.value_counts(col.cast(pa.string()).drop_null())
    return dict(
        zip(
            counts.field("values").to_pylist(),
            counts.field("counts").to_numpy().astype(float),
            strict=True,
        )
    )


def _compare(
    name: str, ref: pa.ChunkedArray | None, cur: pa.ChunkedArray | None, method: str | None,
    min_samples: int,
) -> tuple[str, StatResult, int, int]:  # fmt: skip
    """(kind, result without verdict, n_ref, n_cur) for one column."""
    if ref is None or cur is None:
        where = "reference" if ref is None else "current"
        kind = _kind((cur if ref is None else ref).type, name)  # type: ignore[union-attr]
        return kind, StatResult("none", None, note=f"absent from the {where} data"), 0, 0
    kind_ref, kind_cur = _kind(ref.type, name), _kind(cur.type, name)
    if kind_ref != kind_cur:
        note = f"type changed: {ref.type} in reference, {cur.type} in current"
        return kind_cur, StatResult("schema", None, drifted=True, note=note), len(ref), len(cur)
    kind = _check_method(name, kind_ref, method)
    if kind == "numeric":
        a, b = _numbers(ref), _numbers(cur)
        n_ref, n_cur = a.size, b.size
        if min(n_ref, n_cur) < min_samples:
            return kind, _insufficient(method or "ks", n_ref, n_cur, min_samples), n_ref, n_cur
        chosen = stats.choose_method("numeric", n_ref, n_cur)
        method = method or chosen.method
        if method == "wasserstein_norm":
            result = stats.normalized_wasserstein_large(a, b)
        else:
            a.sort()
            b.sort()
            result = _numeric(method, a, b)
        threshold = chosen.threshold if method == chosen.method else _default_threshold(method)
        return kind, replace(result, threshold=threshold), n_ref, n_cur
    ref_counts, cur_counts = _categories(ref), _categories(cur)
    cats = sorted(set(ref_counts) | set(cur_counts))
    r = np.array([ref_counts.get(k, 0.0) for k in cats])
    c = np.array([cur_counts.get(k, 0.0) for k in cats])
    return (kind, *_categorical(r, c, method, min_samples))


def _check_method(name: str, kind: str, method: str | None) -> str:
    """The kind the column is compared as, after checking an override fits it."""
    if method is None:
        return kind
    allowed = NUMERIC_METHODS | CATEGORICAL_METHODS if kind == "numeric" else CATEGORICAL_METHODS
    if method not in allowed:
        raise InvalidArgument(
            f"method {method!r} does not fit {kind} feature {name!r}; use one of "
            f"{', '.join(sorted(allowed))}"
        )
    return "categorical" if method == "chi2" else kind


def _categorical(
    r: np.ndarray[Any, Any], c: np.ndarray[Any, Any], method: str | None, min_samples: int
) -> tuple[StatResult, int, int]:
    n_ref, n_cur = int(r.sum()), int(c.sum())
    if min(n_ref, n_cur) < min_samples:
        return _insufficient(method or "chi2", n_ref, n_cur, min_samples), n_ref, n_cur
    chosen = stats.choose_method("categorical", n_ref, n_cur)
    method = method or chosen.method
    fn = {
        "chi2": stats.chi2_from_counts,
        "psi": stats.psi_from_counts,
        "jensen_shannon": stats.jensen_shannon_from_counts,
    }[method]
    threshold = chosen.threshold if method == chosen.method else _default_threshold(method)
    return replace(fn(r, c), threshold=threshold), n_ref, n_cur


def _default_threshold(method: str) -> float:
    return (
        stats.DEFAULT_ALPHA if method in stats.P_VALUE_METHODS else stats.DEFAULT_THRESHOLDS[method]
    )


def _insufficient(method: str, n_ref: int, n_cur: int, min_samples: int) -> StatResult:
    return StatResult(
        method, None, note=f"insufficient data: {min(n_ref, n_cur)} values, need {min_samples}"
    )


def _numeric(method: str, a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> StatResult:
    """One statistic for two sorted numeric samples."""
    if method == "wasserstein_norm":
        return stats.normalized_wasserstein_sorted(a, b)
    if method == "ks":
        return stats.ks_from_counts(*stats.merge_sorted(a, b))
    edges = stats.quantile_edges(a)
    ref_bins, cur_bins = stats.bin_counts(a, edges), stats.bin_counts(b, edges)
    if method == "psi":
        return stats.psi_from_counts(ref_bins, cur_bins)
    return stats.jensen_shannon_from_counts(ref_bins, cur_bins)


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


def _side(mon: Monitor, spec: Any, version: int | None) -> Side:
    """One side of the comparison, from a DataFrame, the training reference or a window."""
    if isinstance(spec, pd.DataFrame):
        return Side.of_table(pa.Table.from_pandas(spec, preserve_index=False), "DataFrame")
    if isinstance(spec, pa.Table):
        return Side.of_table(spec, "Arrow table")
    if isinstance(spec, str) and spec == "training":
        if version is None:
            raise InvalidArgument(
                "reference='training' needs a version: pass version=..., or have a "
                "production version"
            )
        v = mon._ws.model(mon.model).version(version)
        frame = v.reference_data()
        if frame is None:
            raise InvalidArgument(
                f"{mon.model} v{version} was registered without reference_data; pass "
                "reference=<DataFrame or window> instead"
            )
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return Side.of_table(_with_predictions(v, frame, table), f"training data of v{version}")
    window = parse(spec)
    label = _describe(window, version)
    selected = mon.window_sql(window, version, columns="*")
    if selected is None:
        return Side.of_table(pa.table({}), label)
    sql, params = selected
    store = mon._ws._store

    def shape(con: duckdb.DuckDBPyConnection) -> tuple[list[str], int]:
        cols = [r[0] for r in con.execute(f"DESCRIBE {sql}", params).fetchall()]
        row = con.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()
        return cols, int(row[0]) if row else 0

    columns, rows = store.read(shape)
    plain = {
        (c[len(FEATURE_PREFIX) :] if c.startswith(FEATURE_PREFIX) else c): c
        for c in columns
        if c.startswith(FEATURE_PREFIX) or c in OUTPUTS
    }

    def fetch(names: list[str]) -> pa.Table:
        if not names:
            return pa.table({})
        cols = ", ".join('"' + plain[n].replace('"', '""') + '"' for n in names)
        inner = mon.window_sql(window, version, columns=cols)
        assert inner is not None
        table: pa.Table = store.read(
            lambda con: con.sql(inner[0], params=inner[1]).to_arrow_table()
        )
        return table.rename_columns(names)

    def scan(names: list[str]) -> stream.Scan:
        cols = ", ".join(
            '"' + plain[n].replace('"', '""') + '" AS "' + n.replace('"', '""') + '"' for n in names
        )
        inner = mon.window_sql(window, version, columns=cols or "1 AS _")
        assert inner is not None
        return stream.reader(store, inner[0], inner[1])

    return Side(label, list(plain), rows, fetch, scan)


def _describe(window: Window, version: int | None) -> str:
    text = window.describe()
    return text if version is None else f"{text} of v{version}"


def _with_predictions(v: Any, frame: pd.DataFrame, table: pa.Table) -> pa.Table:
    """Add what the model predicts on its training reference, for prediction drift."""
    try:
        model = v.load()
        pred = np.asarray(model.predict(frame))
        table = table.append_column("prediction", pa.array(pred))
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(frame))
            table = table.append_column("confidence", pa.array(proba.max(axis=1)))
    except Exception:
        # Not every registered object predicts on a DataFrame: prediction drift is then
        # reported as absent from the reference rather than failing the run.
        return table
    return table


def run_drift(
    mon: Monitor, reference: Any, current: Any, *, version: int | str | None,
    features: list[str] | None, methods: Any, thresholds: Any, min_samples: int,
    drift_share: float, store: bool, exact: bool | None = None,
) -> DriftReport:  # fmt: skip
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise InvalidArgument(f"min_samples must be a positive integer, got {min_samples!r}")
    if not 0 < drift_share <= 1:
        raise InvalidArgument(f"drift_share must be in (0, 1], got {drift_share!r}")
    ws = mon._ws

    def resolve(con: duckdb.DuckDBPyConnection) -> int | None:
        query.require_model(con, mon.model)
        if version is not None:
            return query.resolve(con, mon.model, version)
        if isinstance(reference, str) and reference == "training":
            for ref in ("production", "latest"):
                try:
                    return query.resolve(con, mon.model, ref)
                except LookupError:
                    continue
        return None

    number = ws._store.read(resolve)
    ref = _side(mon, reference, number)
    cur = _side(mon, current, number if version is not None else None)
    methods = dict(methods or {})
    thresholds = dict(thresholds or {})
    names = [n for n in dict.fromkeys([*ref.names, *cur.names]) if n not in OUTPUTS]
    if features is not None:
        unknown = sorted(set(features) - set(names))
        if unknown:
            raise InvalidArgument(f"unknown features {unknown}; known: {sorted(names)}")
        names = list(features)
    for key in [*methods, *thresholds]:
        if key not in names and key not in OUTPUTS:
            raise InvalidArgument(f"override for unknown feature {key!r}; known: {sorted(names)}")
    thresholds = {k: _threshold(k, v) for k, v in thresholds.items()}
    outputs_present = [o for o in OUTPUTS if o in ref.names or o in cur.names]
    all_names = [*names, *outputs_present]

    if exact is None:
        exact = ref.num_rows + cur.num_rows <= EXACT_ROWS
    if exact:
        rows, missing = _exact(ref, cur, all_names, methods, min_samples)
    else:
        rows, missing = _streamed(ref, cur, all_names, methods, min_samples)
    for i, (name, kind, result, n_ref, n_cur) in enumerate(rows):
        if name in thresholds and result.statistic is not None:
            if result.method in stats.P_VALUE_METHODS and thresholds[name] >= 1:
                raise InvalidArgument(
                    f"threshold {thresholds[name]:g} for {name!r} is the alpha of a "
                    f"{result.method} test and must be below 1, e.g. 0.01"
                )
            rows[i] = (name, kind, replace(result, threshold=thresholds[name]), n_ref, n_cur)
    # A threshold given for a p-value test is that feature's own alpha: it is judged on its
    # raw p-value and left out of the Benjamini-Hochberg group of the others.
    own = {
        n: r for n, _, r, _, _ in rows
        if n in thresholds and r.method in stats.P_VALUE_METHODS and r.p_value is not None
    }  # fmt: skip
    decided = stats.decide(
        {n: r for n, _, r, _, _ in rows if r.method != "schema" and n not in own}
    )
    for n, r in own.items():
        decided[n] = replace(
            r, threshold=thresholds[n], drifted=bool(r.p_value is not None and r.p_value <= thresholds[n]),
            note=(r.note + "; " if r.note else "") + "own alpha: p-value not BH-adjusted",
        )  # fmt: skip
    records = []
    for name, kind, result, n_ref, n_cur in rows:
        final = decided.get(name, result)
        records.append({
            "feature": name, "kind": kind, "method": final.method, "statistic": final.statistic,
            "p_value": final.p_value, "threshold": final.threshold, "drifted": final.drifted,
            "n_ref": n_ref, "n_cur": n_cur, "note": final.note,
        })  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=SUMMARY_COLUMNS)
    frame["drifted"] = frame["drifted"].astype(object)
    summary = frame[~frame["feature"].isin(OUTPUTS)].reset_index(drop=True)
    outputs = frame[frame["feature"].isin(OUTPUTS)].reset_index(drop=True)
    in_sample = isinstance(reference, str) and reference == "training"
    if in_sample and not outputs.empty:
        # The model's outputs on its own training rows are in-sample: more confident than
        # on any new data. Reported, but they do not decide the verdict.
        outputs["note"] = (
            outputs["note"]
            .fillna("")
            .map(
                lambda n: (
                    (n + "; " if n else "") + "in-sample reference outputs: not in the verdict"
                )
            )
        )
    report = DriftReport(
        mon.model, ref.label, cur.label, ref.num_rows, cur.num_rows, summary, outputs,
        pd.DataFrame.from_records(missing, columns=MISSING_COLUMNS), drift_share,
        outputs_in_verdict=not in_sample,
    )  # fmt: skip
    if store:
        report.run_id = _store(mon, report)
    return report


def _threshold(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"threshold for {name!r} must be a number, got {value!r}") from e
    if isinstance(value, bool) or not np.isfinite(number) or number <= 0:
        raise InvalidArgument(
            f"threshold for {name!r} must be a finite number > 0, got {value!r} (for ks and "
            "chi2 it is the feature's alpha, e.g. 0.01)"
        )
    return number


Row = tuple[str, str, StatResult, int, int]


def _exact(
    ref: Side, cur: Side, all_names: list[str], methods: dict[str, str], min_samples: int
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Statistics on the raw values, a few columns in memory at a time."""
    rows: list[Row] = []
    missing: list[dict[str, Any]] = []
    batches = [all_names[i : i + BATCH_COLUMNS] for i in range(0, len(all_names), BATCH_COLUMNS)]

    def load(batch: list[str]) -> tuple[pa.Table, pa.Table]:
        return ref.fetch(batch), cur.fetch(batch)

    # numpy sorts release the GIL: two threads keep both cores of a small machine busy,
    # while a third reads the next batch of columns out of DuckDB.
    with ThreadPoolExecutor(max_workers=2) as pool, ThreadPoolExecutor(max_workers=1) as io:
        pending = io.submit(load, batches[0]) if batches else None
        for index, batch in enumerate(batches):
            assert pending is not None
            ref_t, cur_t = pending.result()
            pending = io.submit(load, batches[index + 1]) if index + 1 < len(batches) else None

            def one(name: str, ref_t: pa.Table = ref_t, cur_t: pa.Table = cur_t) -> Any:
                r = ref_t.column(name) if name in ref_t.column_names else None
                c = cur_t.column(name) if name in cur_t.column_names else None
                kind, result, n_ref, n_cur = _compare(name, r, c, methods.get(name), min_samples)
                return (name, kind, result, n_ref, n_cur), _missing_row(name, r, c)

            for row, miss in pool.map(one, batch):
                rows.append(row)
                if row[0] not in OUTPUTS:
                    missing.append(miss)
            del ref_t, cur_t
    return rows, missing


def _streamed(
    ref: Side, cur: Side, all_names: list[str], methods: dict[str, str], min_samples: int
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Statistics from per-column summaries of one pass per side (see :mod:`.stream`)."""

    def numeric(name: str, dtype: pa.DataType) -> bool:
        return _kind(dtype, name) == "numeric" and methods.get(name) != "chi2"

    first = stream.summarize(ref.scan(all_names), all_names, numeric, None)
    ref_sum = stream.summarize(ref.scan(all_names), all_names, numeric, first)
    constant = any(c.numeric and c.n and c.low == c.high for c in first.values())
    cur_sum = stream.summarize(cur.scan(all_names), all_names, numeric, first, moments=constant)
    rows: list[Row] = []
    missing: list[dict[str, Any]] = []
    for name in all_names:
        r, c = ref_sum.get(name), cur_sum.get(name)
        rows.append((name, *_compare_summaries(name, r, c, methods.get(name), min_samples)))
        if name not in OUTPUTS:
            a = r.missing / r.total if r is not None and r.total else None
            b = c.missing / c.total if c is not None and c.total else None
            change = None if a is None or b is None else b - a
            missing.append({
                "feature": name, "missing_ref": a, "missing_cur": b, "change": change,
                "flagged": change is not None and abs(change) >= MISSING_CHANGE,
            })  # fmt: skip
    return rows, missing


def _compare_summaries(
    name: str, ref: stream.Column | None, cur: stream.Column | None, method: str | None,
    min_samples: int,
) -> tuple[str, StatResult, int, int]:  # fmt: skip
    """:func:`_compare` on streamed summaries."""
    if ref is None or cur is None:
        where = "reference" if ref is None else "current"
        kind = _kind((cur if ref is None else ref).type, name)  # type: ignore[union-attr]
        return kind, StatResult("none", None, note=f"absent from the {where} data"), 0, 0
    kind_ref, kind_cur = _kind(ref.type, name), _kind(cur.type, name)
    if kind_ref != kind_cur:
        note = f"type changed: {ref.type} in reference, {cur.type} in current"
        return kind_cur, StatResult("schema", None, drifted=True, note=note), ref.total, cur.total
    kind = _check_method(name, kind_ref, method)
    if ref.numeric and cur.numeric:
        n_ref, n_cur = ref.n, cur.n
        if min(n_ref, n_cur) < min_samples:
            return kind, _insufficient(method or "ks", n_ref, n_cur, min_samples), n_ref, n_cur
        chosen = stats.choose_method("numeric", n_ref, n_cur)
        method = method or chosen.method
        result = stream.numeric_result(method, ref, cur)
        threshold = chosen.threshold if method == chosen.method else _default_threshold(method)
        return kind, replace(result, threshold=threshold), n_ref, n_cur
    r, c = stream.categories(ref, cur)
    return (kind, *_categorical(r, c, method, min_samples))


def _missing_share(col: pa.ChunkedArray | None) -> float | None:
    if col is None or len(col) == 0:
        return None
    nulls = int(col.null_count)
    if pa.types.is_floating(col.type):
        nulls += int(pc.sum(pc.is_nan(col.drop_null())).as_py() or 0)
    return nulls / len(col)


def _missing_row(
    name: str, ref: pa.ChunkedArray | None, cur: pa.ChunkedArray | None
) -> dict[str, Any]:
    a, b = _missing_share(ref), _missing_share(cur)
    change = None if a is None or b is None else b - a
    return {
        "feature": name, "missing_ref": a, "missing_cur": b, "change": change,
        "flagged": change is not None and abs(change) >= MISSING_CHANGE,
    }  # fmt: skip


def _store(mon: Monitor, report: DriftReport) -> int:
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

    return ws._store.write(write)
