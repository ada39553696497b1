"""Version search: filters in SQL, the result frame built by DuckDB in one query.

The matching rows come back from one statement through DuckDB's columnar (Arrow)
conversion and are sorted by Arrow; aliases come from a second, small query; the metrics
JSON of all rows is parsed in one call. A search returning thousands of versions does
no per-row SQL and little per-row Python. Metric columns are those the returned versions
recorded, sorted; a metric named like a fixed column is shown as ``metric:<name>``.

>>> import mlops_nb as mnb
>>> ws = mnb.open(":memory:")
>>> _ = ws.model("m").register({"w": 1}, metrics={"acc": 0.9}, tags=["tabular"])
>>> ws.search(tags="tabular")[["model", "version", "acc", "tags"]].to_dict("records")
[{'model': 'm', 'version': 1, 'acc': 0.9, 'tags': ['tabular']}]
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
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
        # IN with one placeholder per stage: DuckDB then filters on it before the costlier
        # conditions (list_contains(?, stage) left it to the end).
        where.append(f"v.stage IN ({', '.join('?' for _ in stages)})" if stages else "FALSE")
        params.extend(stages)
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
        # Read from the row's JSON (the same values as version_metrics): a join with that
        # table cost several times the rest of the search. A JSON pointer names the key
        # exactly, whatever characters it holds; a missing metric is NULL and never matches.
        where.append(f"json_extract(v.metrics, ?)::DOUBLE {sql_op} ?")
        params.extend(["/" + name.replace("~", "~0").replace("/", "~1"), value])
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
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgument(f"limit must be a non-negative integer, got {limit!r}")
    sql = f"SELECT {_HIT_COLUMNS} FROM versions v"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if limit is not None:
        sql += f" ORDER BY v.model, v.number DESC LIMIT {limit}"
    # The relation API refuses to run while an earlier execute() on this connection has
    # rows left (a fetchone() lookup); finishing that result is harmless.
    con.complete()
    table = con.sql(sql, params=params).to_arrow_table()
    # Sorted by Arrow: a tenth of the cost of DuckDB's ORDER BY on these wide rows.
    if table.num_rows == 0:
        return pd.DataFrame(columns=FRAME_COLUMNS)
    table = table.sort_by([("model", "ascending"), ("version", "descending")])
    with _one_collection():
        return _shape(table, _aliases(con, model))


@contextmanager
def _one_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector while the frame's lists and dicts are built, then
    collect the young generation once.

    A search returning thousands of rows makes a few objects per row (tag and alias lists,
    parsed metrics) that can hold no cycles. Left running, the collector made a dozen
    passes per search, and every few searches a full pass over the whole process (150 ms
    in a process holding a large heap, the search's p95).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)


def _aliases(con: duckdb.DuckDBPyConnection, model: str | None) -> dict[tuple[str, int], list[str]]:
    """Aliases by (model, version), each list sorted: a small table, read whole (grouped
    here: DuckDB's list aggregate cost more than the rows)."""
    sql = "SELECT model, version, alias FROM aliases"
    params: list[Any] = []
    if model is not None:
        sql += " WHERE model = ?"
        params.append(model)
    out: dict[tuple[str, int], list[str]] = {}
    for m, v, alias in con.execute(sql + " ORDER BY alias", params).fetchall():
        out.setdefault((str(m), int(v)), []).append(str(alias))
    return out


def _metrics(texts: list[str]) -> pd.DataFrame:
    """One column per metric name, from the rows' JSON: one parse for all rows (cheaper
    than reading the metric names first, or pivoting the metrics table)."""
    frame = pd.DataFrame.from_records(json.loads("[" + ",".join(texts) + "]"))
    frame.columns = [f"metric:{c}" if c in FRAME_COLUMNS else c for c in frame.columns]
    return frame.astype("float64")


def _shape(table: pa.Table, aliases: dict[tuple[str, int], list[str]]) -> pd.DataFrame:
    """The result frame: metrics spread into columns, lists as lists, columns in order."""
    base = [c for c in table.column_names if c != "metrics"]
    frame = table.select(base).to_pandas()
    frame["tags"] = table.column("tags").to_pylist()
    for column in base:
        if table.column(column).null_count == table.num_rows:
            frame[column] = None  # as a frame built from rows of None would hold
    # Few versions have aliases: find their rows, leave every other row an empty list.
    per_row: list[list[str]] = [[] for _ in range(table.num_rows)]
    if aliases:
        keys = pd.MultiIndex.from_arrays([frame["model"].to_numpy(), frame["version"].to_numpy()])
        wanted = list(aliases)
        found = keys.get_indexer(pd.MultiIndex.from_tuples(wanted))
        for key, at in zip(wanted, found, strict=True):
            if at >= 0:
                per_row[at] = aliases[key]
    frame["aliases"] = per_row
    metrics = _metrics(table.column("metrics").to_pylist())
    names = sorted(metrics.columns)
    frame = pd.concat([frame, metrics[names]], axis=1)
    out: pd.DataFrame = frame[[*FRAME_COLUMNS[:5], *names, *FRAME_COLUMNS[5:]]]
    return out
