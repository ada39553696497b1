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


def rules_for(store: Store, model: str, version: int | None) -> dict[str, str]:
    """The rule per feature of ``version`` (or of every version: where versions disagree,
    the feature reads ``"differs by version"``)."""
    rows = frame(store, model, version)
    out: dict[str, str] = {}
    for feature, rule in zip(rows["feature"], rows["rule"], strict=True):
        out[feature] = rule if out.get(feature, rule) == rule else "differs by version"
    return out


def for_raw(table: pa.Table, rules: dict[str, str]) -> tuple[pa.Table, dict[str, str]]:
    """A raw side made comparable with the log: coarse and prefix rules applied; hashed,
    dropped and otherwise incomparable features removed and returned with the reason."""
    unjudged: dict[str, str] = {}
    same: dict[str, object] = {}
    for feature, rule in rules.items():
        kind = rule.partition(":")[0]
        if kind in ("coarse", "prefix"):
            same[feature] = parse_described(rule)
        elif kind == "hmac-sha256":
            unjudged[feature] = (
                f"hashed in the payload log ({rule}): not comparable with raw values; "
                "compare two windows of logged traffic"
            )
        elif kind == "drop":
            unjudged[feature] = "dropped from the payload log by redaction"
        else:
            unjudged[feature] = f"redacted in the payload log ({rule}): pass version=..."
    present = [f for f in same if f in table.column_names]
    if present:
        prefixed = table.rename_columns(
            ["feature." + n if n in present else n for n in table.column_names]
        )
        done = Redactor.of({f: same[f] for f in present}, None).apply(prefixed)
        table = done.rename_columns(
            [n.removeprefix("feature.") if n.removeprefix("feature.") in present else n
             for n in done.column_names]
        ).replace_schema_metadata(table.schema.metadata)  # fmt: skip
    keep = [n for n in table.column_names if n not in unjudged]
    return table.select(keep), unjudged
