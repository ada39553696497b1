"""Read-side SQL: resolving version references, version rows, search.

A version reference is one of: a version number (``3`` or ``"3"``), ``"latest"``, an alias
(``"@champion"``), a stage name (the newest version in that stage, e.g.
``"production"``) or a semantic-version label (``"1.2.0"``).

Lookups resolve the reference inside the query that reads the row, and ask whether the
model exists only when no row comes back (to say which of the two is missing). Aliases
are read with a second small query for the rows returned: DuckDB plans a correlated
subquery per version row as a join over the whole table, which cost more than the rest
of a lookup.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import duckdb
import pandas as pd

from . import validation
from .errors import InvalidArgument, InvalidMetric, ModelNotFound, VersionNotFound
from .policy import STAGES

# Matched with fullmatch: ``$`` would accept a trailing newline ("iris\n").
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONDITION_RE = re.compile(
    r"^\s*([A-Za-z_][\w.\-]*)\s*(>=|<=|==|!=|>|<|=)\s*"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)

# Every column of a version row but its aliases, which come from the aliases table.
_ROW_COLUMNS = """
    v.model, v.number AS version, v.label, v.stage, v.tags, v.flavor, v.framework,
    v.algorithm, v.data_version, v.parent_version, v.git_commit, v.metrics, v.params,
    v.resources, v.description, v.signature, v.artifact_uri, v.digest, v.manifest,
    v.created_at, v.created_by
"""
_ROW_KEYS = [
    "model", "version", "label", "stage", "aliases", "tags", "flavor", "framework",
    "algorithm", "data_version", "parent_version", "git_commit", "metrics", "params",
    "resources", "description", "signature", "artifact_uri", "digest", "manifest",
    "created_at", "created_by",
]  # fmt: skip
_ALIASES_AT = _ROW_KEYS.index("aliases")
_JSON_KEYS = ("metrics", "params", "resources", "signature", "manifest")
FRAME_COLUMNS = [
    "model", "version", "label", "stage", "aliases", "tags", "framework", "algorithm",
    "data_version", "created_at", "created_by", "digest",
]  # fmt: skip
# What a search frame shows: its columns but aliases, and the metrics it spreads out.
_SEARCH_COLUMNS = """
    v.model, v.number AS version, v.label, v.stage, v.tags, v.framework, v.algorithm,
    v.data_version, v.created_at, v.created_by, v.digest, v.metrics
"""
_SEARCH_KEYS = [*(k for k in FRAME_COLUMNS if k != "aliases"), "metrics"]


def check_name(name: object, what: str = "model") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"{what} name must be a string of letters, digits, '.', '_' or '-' (starting with "
            f"a letter or digit, at most 128 characters); got {name!r}"
        )
    return name


def model_exists(con: duckdb.DuckDBPyConnection, model: str) -> bool:
    row = con.execute("SELECT count(*) FROM models WHERE name = ?", [model]).fetchone()
    return bool(row and row[0])


def require_model(con: duckdb.DuckDBPyConnection, model: str) -> None:
    if not model_exists(con, model):
        names = [
            r[0] for r in con.execute("SELECT name FROM models ORDER BY name LIMIT 10").fetchall()
        ]
        known = ", ".join(names) if names else "none yet"
        raise ModelNotFound(
            f"no model named {model!r} (registered: {known}); register one with "
            f"ws.model({model!r}).register(...)"
        )


def _reference(con: duckdb.DuckDBPyConnection, model: str, ref: object) -> tuple[str, list[Any]]:
    """A condition on ``versions v`` (of ``model``) true for the version ``ref`` points at."""
    try:
        ref = validation.version_ref(ref)
    except InvalidArgument:
        require_model(con, model)  # an unknown model is reported first, as it always was
        raise
    if isinstance(ref, int) or ref.isdigit():
        number = int(ref)
        # Beyond the INTEGER column: no such version (DuckDB would refuse the parameter).
        return ("v.number = ?", [number]) if number < 2**31 else ("FALSE", [])
    if ref == "latest":
        return "v.number = (SELECT max(number) FROM versions WHERE model = ?)", [model]
    if ref.startswith("@"):
        return (
            "v.number = (SELECT version FROM aliases WHERE model = ? AND alias = ?)",
            [model, ref[1:]],
        )
    if ref in STAGES:
        return (
            "v.number = (SELECT max(number) FROM versions WHERE model = ? AND stage = ?)",
            [model, ref],
        )
    return "v.label = ?", [ref]


def _missing(con: duckdb.DuckDBPyConnection, model: str, ref: int | str) -> NoReturn:
    require_model(con, model)
    raise VersionNotFound(
        f"model {model!r} has no version {ref!r}; see ws.model({model!r}).versions() "
        "(references: a number, 'latest', '@alias', a stage name or a semver label)"
    )


def resolve(con: duckdb.DuckDBPyConnection, model: str, ref: int | str) -> int:
    """The version number a reference points at."""
    condition, params = _reference(con, model, ref)
    row = con.execute(
        f"SELECT v.number FROM versions v WHERE v.model = ? AND {condition}", [model, *params]
    ).fetchone()
    if row is None:
        _missing(con, model, ref)
    return int(row[0])


def lookup(con: duckdb.DuckDBPyConnection, model: str, ref: int | str) -> dict[str, Any]:
    """The row of the version a reference points at: :func:`resolve` and :func:`version_row`
    in one query (and one for its aliases)."""
    condition, params = _reference(con, model, ref)
    row = con.execute(
        f"SELECT {_ROW_COLUMNS} FROM versions v WHERE v.model = ? AND {condition}",
        [model, *params],
    ).fetchone()
    if row is None:
        _missing(con, model, ref)
    return _row(con, row)


def version_row(con: duckdb.DuckDBPyConnection, model: str, number: int) -> dict[str, Any]:
    row = con.execute(
        f"SELECT {_ROW_COLUMNS} FROM versions v WHERE v.model = ? AND v.number = ?",
        [model, number],
    ).fetchone()
    if row is None:
        raise VersionNotFound(f"model {model!r} has no version {number}")
    return _row(con, row)


def _row(con: duckdb.DuckDBPyConnection, row: tuple[Any, ...]) -> dict[str, Any]:
    """A version row as a dict, with its aliases (sorted) and its JSON columns decoded."""
    model, number = row[0], row[1]
    aliases = [
        r[0]
        for r in con.execute(
            "SELECT alias FROM aliases WHERE model = ? AND version = ? ORDER BY alias",
            [model, number],
        ).fetchall()
    ]
    values = list(row)
    values.insert(_ALIASES_AT, aliases)
    out = dict(zip(_ROW_KEYS, values, strict=True))
    for key in _JSON_KEYS:
        if out[key] is not None:
            out[key] = json.loads(out[key])
    return out


def parse_conditions(conditions: str | Iterable[str] | None) -> list[tuple[str, str, float]]:
    """``"accuracy >= 0.9"`` strings as (metric, operator, value) triples.

    >>> parse_conditions(["accuracy >= 0.9", "latency_ms<20"])
    [('accuracy', '>=', 0.9), ('latency_ms', '<', 20.0)]
    """
    if conditions is None:
        return []
    if isinstance(conditions, str):
        items: list[object] = [conditions]
    elif isinstance(conditions, list | tuple | set | frozenset):
        items = list(conditions)
    else:
        raise InvalidMetric(
            f"metrics must be a condition string or a list of them, got {conditions!r}; "
            "e.g. metrics='accuracy >= 0.9'"
        )
    out = []
    for item in items:
        match = _CONDITION_RE.match(item) if isinstance(item, str) else None
        if not match:
            raise InvalidMetric(
                f"cannot read metric condition {item!r}: write it as 'name OP number' with OP "
                "one of >=, <=, >, <, ==, != (e.g. 'accuracy >= 0.9')"
            )
        name, op, value = match.groups()
        if not math.isfinite(float(value)):
            raise InvalidMetric(
                f"metric condition {item!r} compares with {value}: use a finite number"
            )
        out.append((name, "==" if op == "=" else op, float(value)))
    return out


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
    where: list[str] = []
    params: list[Any] = []
    if model is not None:
        where.append("v.model = ?")
        params.append(check_name(model))
    if stage is not None:
        stages = [stage] if isinstance(stage, str) else stage
        if not isinstance(stages, list | tuple | set | frozenset):
            raise InvalidArgument(f"stage must be a stage name or a list of them, got {stage!r}")
        stages = list(stages)
        for s in stages:
            if not isinstance(s, str) or s not in STAGES:
                raise InvalidArgument(f"unknown stage {s!r}; use one of {', '.join(STAGES)}")
        where.append("list_contains(?, v.stage)")
        params.append(stages)
    if tags is not None:
        try:
            tag_list = validation.tags(tags)
        except InvalidArgument as e:
            raise InvalidArgument(f"search {e}; e.g. tags=['tabular']") from None
        where.append("list_has_all(v.tags, ?)")
        params.append(tag_list)
    if alias is not None:
        name = alias[1:] if isinstance(alias, str) and alias.startswith("@") else alias
        where.append(
            "EXISTS (SELECT 1 FROM aliases a WHERE a.model = v.model "
            "AND a.version = v.number AND a.alias = ?)"
        )
        params.append(check_name(name, "alias"))
    for name, op, value in parse_conditions(metrics):
        sql_op = "=" if op == "==" else op
        where.append(
            "EXISTS (SELECT 1 FROM version_metrics m WHERE m.model = v.model AND "
            f"m.version = v.number AND m.name = ? AND m.value {sql_op} ?)"
        )
        params.extend([name, value])
    sql = f"SELECT {_SEARCH_COLUMNS} FROM versions v"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY v.model, v.number DESC"
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidArgument(f"limit must be a non-negative integer, got {limit!r}")
        sql += f" LIMIT {limit}"
    rows = [dict(zip(_SEARCH_KEYS, r, strict=True)) for r in con.execute(sql, params).fetchall()]
    if rows:
        aliases = _aliases(con, sorted({r["model"] for r in rows}))
        for r in rows:
            r["aliases"] = aliases.get((r["model"], r["version"]), [])
    return to_frame(rows)


def _aliases(con: duckdb.DuckDBPyConnection, models: list[str]) -> dict[tuple[str, int], list[str]]:
    """The aliases of these models' versions, each list sorted."""
    out: dict[tuple[str, int], list[str]] = {}
    for model, version, alias in con.execute(
        "SELECT model, version, alias FROM aliases WHERE list_contains(?, model) ORDER BY alias",
        [models],
    ).fetchall():
        out.setdefault((model, version), []).append(alias)
    return out


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per version; each metric becomes a column of its own."""
    records = []
    metric_names: list[str] = []
    for r in rows:
        metrics = json.loads(r["metrics"]) if isinstance(r["metrics"], str) else r["metrics"]
        rec = {k: r[k] for k in FRAME_COLUMNS}
        rec["aliases"] = list(r["aliases"] or [])
        rec["tags"] = list(r["tags"] or [])
        for k, val in metrics.items():
            col = f"metric:{k}" if k in FRAME_COLUMNS else k
            if col not in metric_names:
                metric_names.append(col)
            rec[col] = val
        records.append(rec)
    columns = [*FRAME_COLUMNS[:4], "aliases", *sorted(metric_names), *FRAME_COLUMNS[5:]]
    frame = pd.DataFrame.from_records(records, columns=columns)
    return frame.reset_index(drop=True)
