"""Read-side SQL: resolving version references, version rows, metric conditions.

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
from collections.abc import Iterable
from typing import Any, NoReturn

import duckdb

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
