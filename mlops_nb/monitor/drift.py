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
``psi``, ``jensen_shannon``, ``chi2``) and ``thresholds={"age": 0.2}``. A threshold must
be a finite number > 0; for a p-value test (``ks``, ``chi2``) it is that feature's own
alpha (below 1): the feature is judged on its raw p-value and left out of the
Benjamini-Hochberg correction of the others.

Up to ``EXACT_ROWS`` rows on both sides together, statistics come from the raw values
(a few columns in memory at a time); above, from summaries streamed in record batches,
so memory does not grow with the window (see :mod:`.stream` for the error bounds, which
each streamed row states in ``note``). ``exact=True`` or ``False`` forces one path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import query
from ..errors import InvalidArgument
from . import compare, redaction, stats, stream
from .compare import OUTPUTS, kind_of
from .convert import FEATURE_PREFIX
from .report import DriftReport, store_report
from .windows import Window, parse

__all__ = ["DriftReport", "Side", "run_drift"]

if TYPE_CHECKING:
    import duckdb

    from ..store import Store
    from .core import Monitor

SUMMARY_COLUMNS = [
    "feature", "kind", "method", "statistic", "p_value", "threshold", "drifted", "n_ref",
    "n_cur", "note",
]  # fmt: skip
MISSING_COLUMNS = ["feature", "missing_ref", "missing_cur", "change", "flagged"]
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
        *, sql: Callable[[list[str]], tuple[str, list[Any]]] | None = None,
        store: Store | None = None, table: pa.Table | None = None,
    ) -> None:  # fmt: skip
        self.label = label
        self.names = names
        self.num_rows = num_rows
        self._fetch = fetch
        self._scan = scan
        self._sql = sql
        #: The workspace store a window is read from (None for an in-memory table).
        self.store = store
        self._table = table
        #: Features left without a verdict, with the reason: (kind, note) by name.
        self.unjudged: dict[str, tuple[str, str]] = {}
        #: Values of columns taken out of this side (a raw side's redacted features).
        self.removed_counts: dict[str, int] = {}

    @classmethod
    def of_table(cls, table: pa.Table, label: str) -> Side:
        return cls(
            label, table.column_names, table.num_rows, table.select,
            lambda names: stream.batches(table, names), table=table,
        )  # fmt: skip

    def relation(
        self, con: duckdb.DuckDBPyConnection, names: list[str], alias: str
    ) -> tuple[str, list[Any]]:
        """SQL (and its parameters) selecting ``names`` of this side on ``con``, for
        aggregates computed where the data lives: a window reads the log's Parquet files;
        an in-memory table is registered on ``con`` as ``alias``."""
        names = [n for n in names if n in self.names]
        if self._sql is not None:
            return self._sql(names)
        assert self._table is not None
        con.register(alias, self._table.select(names))
        return f"SELECT * FROM {alias}", []

    def fetch(self, names: list[str]) -> pa.Table:
        return self._fetch([n for n in names if n in self.names])

    def count(self, name: str) -> int:
        """Values (not missing) of one column, counted where the data lives."""
        if name not in self.names:
            return self.removed_counts.get(name, 0)
        if self._sql is not None and self.store is not None:
            sql, params = self._sql([name])
            quoted = '"' + name.replace('"', '""') + '"'
            row = self.store.read(
                lambda con: con.execute(f"SELECT count({quoted}) FROM ({sql})", params).fetchone()
            )
            return int(row[0]) if row else 0
        assert self._table is not None
        column = self._table.column(name)
        return int(len(column) - column.null_count)

    def scan(self, names: list[str]) -> stream.Scan:
        """A pass over the given columns in record batches (for the streaming path)."""
        return self._scan([n for n in names if n in self.names])


def _is_raw(spec: Any) -> bool:
    """A side of raw values (not a window of the log, where redaction already happened)."""
    return isinstance(spec, pd.DataFrame | pa.Table) or (
        isinstance(spec, str) and spec == "training"
    )


def _raw_side(table: pa.Table, label: str, rules: dict[str, str]) -> Side:
    """A raw side made comparable with a redacted log (see :mod:`.redaction`)."""
    if not rules:
        return Side.of_table(table, label)
    kinds = {f.name: kind_of(f.type, f.name) for f in table.schema}
    counts = {f: len(table.column(f)) - table.column(f).null_count
              for f in rules if f in table.column_names}  # fmt: skip
    table, unjudged = redaction.for_raw(table, rules)
    side = Side.of_table(table, label)
    side.removed_counts = {f: n for f, n in counts.items() if f in unjudged}
    side.unjudged = {
        f: ("categorical" if rules[f].startswith("hmac") else kinds.get(f, "categorical"), note)
        for f, note in unjudged.items()
    }
    return side


def _side(
    mon: Monitor, spec: Any, version: int | None, rules: dict[str, str] | None = None
) -> Side:
    """One side of the comparison, from a DataFrame, the training reference or a window;
    ``rules`` are the redaction of the log a raw side is compared with."""
    rules = rules or {}
    if isinstance(spec, pd.DataFrame):
        return _raw_side(pa.Table.from_pandas(spec, preserve_index=False), "DataFrame", rules)
    if isinstance(spec, pa.Table):
        return _raw_side(spec, "Arrow table", rules)
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
        table = _with_predictions(v, frame, table)
        return _raw_side(table, f"training data of v{version}", rules)
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

    def select(names: list[str]) -> tuple[str, list[Any]]:
        cols = ", ".join(
            '"' + plain[n].replace('"', '""') + '" AS "' + n.replace('"', '""') + '"' for n in names
        )
        inner = mon.window_sql(window, version, columns=cols or "1 AS _")
        assert inner is not None
        return inner

    def scan(names: list[str]) -> stream.Scan:
        return stream.reader(store, *select(names))

    return Side(label, list(plain), rows, fetch, scan, sql=select, store=store)


def _versions(mon: Monitor, spec: Any, version: int | None) -> list[int]:
    """The versions whose rows a window of the log holds."""
    selected = mon.window_sql(parse(spec), version, columns='"version"')
    if selected is None:
        return []
    sql, params = selected
    rows = mon._ws._store.read(
        lambda con: con.execute(f"SELECT DISTINCT version FROM ({sql})", params).fetchall()
    )
    return sorted(int(r[0]) for r in rows)


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
    cur_version = number if version is not None else None
    # A raw side compared with a window of the log is redacted as the log was.
    rules: dict[str, str] = {}
    if _is_raw(reference) != _is_raw(current):
        recorded = redaction.frame(ws._store, mon.model)
        if not recorded.empty:  # the window's versions are read only when rules exist
            window, window_version = (
                (current, cur_version) if _is_raw(reference) else (reference, number)
            )
            rules = redaction.rules_for(recorded, _versions(mon, window, window_version))
    ref = _side(mon, reference, number, rules)
    cur = _side(mon, current, cur_version, rules)
    unjudged = {**ref.unjudged, **cur.unjudged}
    methods = dict(methods or {})
    thresholds = dict(thresholds or {})
    names = [n for n in dict.fromkeys([*ref.names, *cur.names, *unjudged]) if n not in OUTPUTS]
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
    all_names = [n for n in [*names, *outputs_present] if n not in unjudged]

    if exact is None:
        exact = ref.num_rows + cur.num_rows <= EXACT_ROWS
    if exact:
        rows, missing = compare.exact(ref, cur, all_names, methods, min_samples)
    else:
        rows, missing = compare.streamed(ref, cur, all_names, methods, min_samples)
    for name in names:
        if name in unjudged:
            kind, note = unjudged[name]
            result = stats.StatResult("none", None, note=note)
            rows.append((name, kind, result, ref.count(name), cur.count(name)))
    order = {n: i for i, n in enumerate([*names, *outputs_present])}
    rows.sort(key=lambda row: order[row[0]])
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
    report._sides, report._monitor = (ref, cur), mon
    if store:
        report.run_id = store_report(mon, report)
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
