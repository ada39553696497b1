"""Version search: filters in SQL, the result frame built by DuckDB in one query.

The matching rows, their aliases and their metrics (one column per metric, spread from
the typed ``version_metrics`` table) come back from one statement as a DataFrame through
DuckDB's columnar conversion, so a search returning thousands of versions does no
per-row Python work. Metric columns are those the returned versions recorded, sorted; a
metric named like a fixed column is shown as ``metric:<name>``.

>>> import mlops_nb as mnb
>>> ws = mnb.open(":memory:")
>>> _ = ws.model("m").register({"w": 1}, metrics={"acc": 0.9}, tags=["tabular"])
>>> ws.search(tags="tabular")[["model", "version", "acc", "tags"]].to_dict("records")
[{'model': 'm', 'version': 1, 'acc': 0.9, 'tags': ['tabular']}]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from . import validation
from .errors import InvalidArgument
from .policy import STAGES
from .query import check_name, parse_conditions

FRAME_COLUMNS = [
    "model", "version", "label", "stage", "aliases", "tags", "framework", "algorithm",
    "data_version", "created_at", "created_by", "digest",
]  # fmt: skip
_HIT_COLUMNS = """
    v.model, v.number::BIGINT AS version, v.label, v.stage, v.tags, v.framework,
    v.algorithm, v.data_version, v.created_at, v.created_by, v.digest, v.metrics
"""


def _filters(
    model: object, stage: object, tags: object, alias: object, metrics: object
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if model is not None:
        where.append("v.model = ?")
        params.append(check_name(model))
    if stage is not None:
        stages = [stage] if isinstance(stage, str) else stage
        if not isinstance(stages, list | tuple | set | frozenset):
            raise InvalidArgument(f"stage must be a stage name or a list of them, got {stage!r}")
        for s in stages:
            if not isinstance(s, str) or s not in STAGES:
                raise InvalidArgument(f"unknown stage {s!r}; use one of {', '.join(STAGES)}")
        where.append("list_contains(?, v.stage)")
        params.append(list(stages))
    if tags is not None:
        try:
            tag_list = validation.tags(tags)
        except InvalidArgument as e:
            raise InvalidArgument(f"search {e}; e.g. tags=['tabular']") from None
        # One list_contains per tag: a quarter of list_has_all's cost on a large table.
        where.extend("list_contains(v.tags, ?)" for _ in tag_list)
        params.extend(tag_list)
    if alias is not None:
        name = alias[1:] if isinstance(alias, str) and alias.startswith("@") else alias
        where.append(
            "EXISTS (SELECT 1 FROM aliases a WHERE a.model = v.model "
            "AND a.version = v.number AND a.alias = ?)"
        )
        params.append(check_name(name, "alias"))
    for name, op, value in parse_conditions(metrics):  # type: ignore[arg-type]
        sql_op = "=" if op == "==" else op
        where.append(
            "EXISTS (SELECT 1 FROM version_metrics m WHERE m.model = v.model AND "
            f"m.version = v.number AND m.name = ? AND m.value {sql_op} ?)"
        )
        params.extend([name, value])
    return where, params


def search(
    con: duckdb.DuckDBPyConnection,
    *,
    model: str | None = None,
    stage: str | Sequence[str] | None = None,
    tags: str | Sequence[str] | None = None,
    alias: str | None = None,
    metrics: str | Iterable[str] | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Versions matching every filter given, newest first within each model."""
    where, params = _filters(model, stage, tags, alias, metrics)
    hits = f"SELECT {_HIT_COLUMNS} FROM versions v"
    if where:
        hits += " WHERE " + " AND ".join(where)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidArgument(f"limit must be a non-negative integer, got {limit!r}")
        hits += f" ORDER BY v.model, v.number DESC LIMIT {limit}"
    # Metric names of the candidate models: one column each (read from the JSON on the
    # row, cheaper than pivoting the metrics table), dropped below when no returned version
    # recorded it.
    names_sql = "SELECT DISTINCT name FROM version_metrics"
    names_params: list[Any] = []
    if model is not None:
        names_sql += " WHERE model = ?"
        names_params.append(model)
    names = sorted(str(r[0]) for r in con.execute(names_sql, names_params).fetchall())
    spread = "".join(f", json_extract(h.metrics, ?)::DOUBLE AS m{i}" for i in range(len(names)))
    sql = f"""
        WITH hits AS ({hits})
        SELECT h.* EXCLUDE (metrics), coalesce(a.aliases, []) AS aliases {spread}
        FROM hits h
        LEFT JOIN (SELECT model, version, list(alias ORDER BY alias) AS aliases
                   FROM aliases GROUP BY model, version) a
               ON a.model = h.model AND a.version = h.version
        ORDER BY h.model, h.version DESC
    """
    # JSON pointers name keys exactly, whatever characters a metric name holds.
    pointers = ["/" + n.replace("~", "~0").replace("/", "~1") for n in names]
    table = con.sql(sql, params=[*params, *pointers]).to_arrow_table()
    return _shape(table, names)


def _shape(table: pa.Table, names: list[str]) -> pd.DataFrame:
    """Name the metric columns, drop those no row has, put the columns in their order."""
    if table.num_rows == 0:
        return pd.DataFrame(columns=FRAME_COLUMNS)
    columns: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if name.startswith("m") and name[1:].isdigit():
            if column.null_count < len(column):
                metric = names[int(name[1:])]
                columns[f"metric:{metric}" if metric in FRAME_COLUMNS else metric] = (
                    column.to_numpy(zero_copy_only=False)
                )
        elif pa.types.is_timestamp(column.type) or name == "version":
            columns[name] = column.to_pandas()
        else:
            # Python values, typed by pandas as a frame built from rows would be.
            columns[name] = column.to_pylist()
    metrics = sorted(k for k in columns if k not in FRAME_COLUMNS)
    ordered = [*FRAME_COLUMNS[:5], *metrics, *FRAME_COLUMNS[5:]]
    return pd.DataFrame({k: columns[k] for k in ordered}, columns=ordered)
