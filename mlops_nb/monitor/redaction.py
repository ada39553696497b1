"""What redaction did to a model's logged features, and how drift honours it.

Model servers redact features before the spool (see :mod:`mlops_nb.serve.redact`) and
record the rules in each file's metadata; ``mon.ingest()`` keeps them per version in the
``log_redaction`` table. Drift compares logged values with raw ones (the training
reference, a DataFrame) only where that still means something:

- ``coarse`` and ``prefix`` features: the raw side is coarsened the same way first;
- ``hash`` and ``drop`` features: no verdict, with a note (a keyed hash of a value cannot
  be compared with the value; a dropped feature is not in the log). Two windows of logged
  traffic compare hashed features as categories, as usual.

>>> raw = pa.table({"age": [37, 41], "plan": ["basic", "pro"], "user": ["a", "b"]})
>>> out, unjudged = for_raw(raw, {"age": "coarse:10", "plan": "prefix:2", "user": "hmac-sha256"})
>>> out.to_pydict(), unjudged
({'age': [30, 40], 'plan': ['ba', 'pr']}, {'user': 'hashed in the payload log (hmac-sha256): not comparable with raw values; compare two windows of logged traffic'})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import pandas as pd
import pyarrow as pa

from ..serve.redact import Redactor, parse_described

if TYPE_CHECKING:
    from ..store import Store

COLUMNS = ["version", "feature", "rule", "recorded_at"]


def frame(store: Store, model: str, version: int | None = None) -> pd.DataFrame:
    """The recorded rules, one row per version and feature."""

    def run(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
        where, params = (
            ("AND version = ?", [model, version]) if version is not None else ("", [model])
        )
        try:
            return con.execute(
                f"SELECT {', '.join(COLUMNS)} FROM log_redaction WHERE model = ? {where} "
                "ORDER BY version, feature",
                params,
            ).df()
        except duckdb.CatalogException:  # nothing ingested yet
            return pd.DataFrame(columns=COLUMNS)

    result: pd.DataFrame = store.read(run)
    return result


def rules_for(rows: pd.DataFrame, versions: list[int]) -> dict[str, str]:
    """The one rule per feature that all the files of ``versions`` applied, from the
    recorded ``rows`` (:func:`frame`); a feature redacted in some of them and not, or not
    alike, in others reads ``"differs: ..."``.

    A version without any recorded rule counts as one whose files applied none."""
    by_version: dict[int, dict[str, set[str]]] = {}
    for version, feature, rule in zip(rows["version"], rows["feature"], rows["rule"], strict=True):
        by_version.setdefault(int(version), {}).setdefault(str(feature), set()).add(str(rule))
    features = sorted({f for v in versions for f in by_version.get(v, {}) if f != "*"})
    out: dict[str, str] = {}
    for feature in features:
        seen: set[str] = set()
        for v in versions:
            recorded = by_version.get(v, {})
            seen |= recorded.get(feature) or {"none"}
            if "*" in recorded:  # some of this version's files applied no rule at all
                seen.add("none")
        if seen != {"none"}:
            out[feature] = seen.pop() if len(seen) == 1 else "differs: " + ", ".join(sorted(seen))
    return out


def for_raw(table: pa.Table, rules: dict[str, str]) -> tuple[pa.Table, dict[str, str]]:
    """A raw side made comparable with the log: coarse and prefix rules applied; hashed,
    dropped and otherwise incomparable features removed and returned with the reason."""
    unjudged: dict[str, str] = {}
    same: dict[str, object] = {}
    for feature, rule in rules.items():
        kind = rule.partition(":")[0]
        column = table.column(feature) if feature in table.column_names else None
        if column is not None and pa.types.is_dictionary(column.type):  # pandas categories
            table = table.set_column(table.column_names.index(feature), feature,
                                     column.cast(column.type.value_type))  # fmt: skip
        if column is not None and not Redactor.fits(kind, table.column(feature).type):
            unjudged[feature] = (
                f"redacted in the payload log ({rule}), which does not fit this side's "
                f"{table.column(feature).type} values: not comparable"
            )
        elif kind in ("coarse", "prefix"):
            same[feature] = parse_described(rule)
        elif kind == "hmac-sha256":
            unjudged[feature] = (
                f"hashed in the payload log ({rule}): not comparable with raw values; "
                "compare two windows of logged traffic"
            )
        elif kind == "drop":
            unjudged[feature] = "dropped from the payload log by redaction"
        else:
            unjudged[feature] = (
                f"redacted differently across the window's versions or files ({rule}): not "
                "comparable with raw values; compare two windows of logged traffic instead"
            )
    if same:
        table = Redactor.of(same, None).apply(table, prefix="")
    keep = [n for n in table.column_names if n not in unjudged]
    return table.select(keep), unjudged
