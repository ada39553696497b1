"""Reference-vs-current distributions of one feature, as small aggregates for charts.

Numeric features share one set of bins across both sides (so the bars line up);
categorical features keep the top ``k`` categories by their larger share and fold the
rest into "other", marking categories that the reference never had.

Both are computed in DuckDB where the data lives: a window of the prediction log is read
from its Parquet files, an in-memory table (a DataFrame reference) is registered on the
same connection. What comes back is ``2 * bins`` counts, or ``k + 1`` per side, never
the raw values.

>>> import numpy as np
>>> shared_bins(np.array([0.0, 1.0, 2.0]), np.array([2.0, 3.0]), bins=3)[["side", "count"]].values.tolist()
[['reference', 1], ['reference', 1], ['reference', 1], ['current', 0], ['current', 0], ['current', 2]]
>>> top_categories({"a": 3, "b": 1}, {"a": 1, "c": 3}, k=5)[["category", "side", "count"]].values.tolist()
[['a', 'reference', 3], ['a', 'current', 1], ['b', 'reference', 1], ['b', 'current', 0], ['c *', 'reference', 0], ['c *', 'current', 3]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ..monitor.drift import Side

BINS = 30
TOP_K = 10
UNSEEN = " *"
SIDES = ("reference", "current")
HISTOGRAM_COLUMNS = ["lo", "hi", "side", "count", "share"]
CATEGORY_COLUMNS = ["category", "side", "count", "share", "unseen"]
T = TypeVar("T")
# Relations (SQL, parameters) of the reference and the current side on one connection.
Relations = tuple[tuple[str, list[Any]], tuple[str, list[Any]]]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _on_both(
    ref: Side, cur: Side, names: list[str], run: Callable[[duckdb.DuckDBPyConnection, Relations], T]
) -> T:
    """``run(con, relations)`` on the connection that holds both sides' data."""
    aliases = ("_mnb_reference", "_mnb_current")

    def go(con: duckdb.DuckDBPyConnection) -> T:
        try:
            rels = (ref.relation(con, names, aliases[0]), cur.relation(con, names, aliases[1]))
            return run(con, rels)
        finally:
            for alias in aliases:
                con.unregister(alias)

    store = ref.store or cur.store
    if store is not None:
        return store.read(go)
    with duckdb.connect() as con:
        return go(con)


# -- numeric: shared bins ---------------------------------------------------------------


def _finite(column: str, rels: Relations) -> tuple[str, list[Any]]:
    """Every finite value of ``column`` on both sides, labelled by side (a subquery)."""
    x = f"CAST({_quote(column)} AS DOUBLE)"
    parts = [
        f"SELECT '{side}' AS side, {x} AS x FROM ({sql}) WHERE isfinite({x})"
        for side, (sql, _) in zip(SIDES, rels, strict=True)
    ]
    return " UNION ALL ".join(parts), [*rels[0][1], *rels[1][1]]


def bin_counts(
    ref: Side, cur: Side, feature: str, bins: int = BINS
) -> tuple[np.ndarray[Any, Any] | None, pd.DataFrame]:
    """The shared bin edges and the counts per (side, bin), aggregated in DuckDB.

    The edges are ``bins + 1`` equal steps from the smaller minimum to the larger
    maximum; a value belongs to the bin whose edges enclose it, the last bin closed on
    the right, as ``numpy.histogram`` does with the same edges. The frame has a row per
    side and non-empty bin (at most ``2 * bins``) plus a row per side with its number of
    finite values (``bin`` = -1). Edges are None when neither side has a finite value.
    """

    def run(
        con: duckdb.DuckDBPyConnection, rels: Relations
    ) -> tuple[np.ndarray[Any, Any] | None, pd.DataFrame]:
        values, params = _finite(feature, rels)
        row = con.execute(f"SELECT min(x), max(x) FROM ({values})", params).fetchone()
        lo, hi = row if row else (None, None)
        if lo is None:
            return None, pd.DataFrame(columns=["side", "bin", "count"])
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        # A first guess from the value's position, off by at most one in floating point,
        # then corrected against the edges themselves so every value lands where numpy
        # would put it.
        guess = (
            f"least(CAST(floor((x - e[1]) / (e[{bins + 1}] - e[1]) * {bins}) AS BIGINT), "
            f"{bins - 1})"
        )
        frame = con.execute(
            f"""
            WITH edges AS (SELECT ?::DOUBLE[] AS e),
                 v AS (SELECT side, x, {guess} AS k FROM ({values}), edges)
            SELECT side,
                   k - CASE WHEN x < e[k + 1] THEN 1 ELSE 0 END
                     + CASE WHEN k < {bins - 1} AND x >= e[k + 2] THEN 1 ELSE 0 END AS bin,
                   count(*) AS count
            FROM v, edges GROUP BY ALL
            UNION ALL
            SELECT side, -1 AS bin, count(*) AS count FROM ({values}) GROUP BY side
            """,
            [edges.tolist(), *params, *params],
        ).df()
        return edges, frame

    return _on_both(ref, cur, [feature], run)


def histogram(ref: Side, cur: Side, feature: str, bins: int = BINS) -> pd.DataFrame:
    """Counts and shares per side over ``bins`` equal-width bins spanning both sides."""
    edges, counts = bin_counts(ref, cur, feature, bins)
    if edges is None:
        return pd.DataFrame(columns=HISTOGRAM_COLUMNS)
    got = {
        (side, int(b)): int(n)
        for side, b, n in zip(counts["side"], counts["bin"], counts["count"], strict=True)
    }
    frames = []
    for side in SIDES:
        n = np.array([got.get((side, i), 0) for i in range(bins)], dtype=int)
        total = got.get((side, -1), 0)
        frames.append(
            pd.DataFrame(
                {
                    "lo": edges[:-1],
                    "hi": edges[1:],
                    "side": side,
                    "count": n,
                    "share": n / max(total, 1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def shared_bins(
    ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any], bins: int = BINS
) -> pd.DataFrame:
    """:func:`histogram` of two arrays of numbers."""
    sides = [
        Side.of_table(pa.table({"x": np.asarray(a, dtype=float)}), "array") for a in (ref, cur)
    ]
    return histogram(sides[0], sides[1], "x", bins)


# -- categorical: top k and "other" -----------------------------------------------------


def _top_sql(k: int) -> str:
    """Top ``k`` categories by their larger share, the rest folded into one NULL row,
    over relations ``r`` and ``c`` of (category, n)."""
    return f"""
        j AS (SELECT category, coalesce(r.n, 0) AS ref, coalesce(c.n, 0) AS cur
              FROM r FULL OUTER JOIN c USING (category)),
        t AS (SELECT greatest(sum(ref), 1) AS n_ref, greatest(sum(cur), 1) AS n_cur FROM j),
        ranked AS (
            SELECT category, ref, cur,
                   row_number() OVER (ORDER BY greatest(ref / n_ref, cur / n_cur) DESC,
                                      category) AS rank
            FROM j, t)
        SELECT CASE WHEN rank <= {int(k)} THEN category END AS category,
               sum(ref)::BIGINT AS ref, sum(cur)::BIGINT AS cur, count(*) AS members
        FROM ranked GROUP BY 1 ORDER BY 1 NULLS LAST
    """


def category_counts(ref: Side, cur: Side, feature: str, k: int = TOP_K) -> pd.DataFrame:
    """The top ``k`` categories' counts per side, and one row (category NULL) for the
    rest with how many categories it holds (``members``), aggregated in DuckDB."""

    def run(con: duckdb.DuckDBPyConnection, rels: Relations) -> pd.DataFrame:
        col = _quote(feature)
        per = [
            f"SELECT CAST({col} AS VARCHAR) AS category, count(*) AS n FROM ({sql}) "
            f"WHERE {col} IS NOT NULL GROUP BY 1"
            for sql, _ in rels
        ]
        sql = f"WITH r AS ({per[0]}), c AS ({per[1]}), {_top_sql(k)}"
        return con.execute(sql, [*rels[0][1], *rels[1][1]]).df()

    return _on_both(ref, cur, [feature], run)


def categories(ref: Side, cur: Side, feature: str, k: int = TOP_K) -> pd.DataFrame:
    """The ``k`` largest categories (by the larger share), the rest as "other"; categories
    absent from the reference end in ``*``."""
    return _category_frame(category_counts(ref, cur, feature, k))


def top_categories(ref: dict[str, int], cur: dict[str, int], k: int = TOP_K) -> pd.DataFrame:
    """:func:`categories` from counts already made (category -> count per side)."""
    with duckdb.connect() as con:
        for name, counts in (("r", ref), ("c", cur)):
            table = pa.table(
                {
                    "category": pa.array(list(counts), pa.string()),
                    "n": pa.array(list(counts.values()), pa.int64()),
                }
            )
            con.register(f"_mnb_{name}", table)
        sql = f"WITH r AS (FROM _mnb_r), c AS (FROM _mnb_c), {_top_sql(k)}"
        return _category_frame(con.execute(sql).df())


def _category_frame(counts: pd.DataFrame) -> pd.DataFrame:
    n_ref, n_cur = max(int(counts["ref"].sum()), 1), max(int(counts["cur"].sum()), 1)
    rows = []
    for r in counts.to_dict("records"):
        other = r["category"] is None or r["category"] is pd.NA or pd.isna(r["category"])
        unseen = not other and int(r["ref"]) == 0
        name = f"other ({int(r['members'])})" if other else str(r["category"]) + UNSEEN * unseen
        for side, key, n in (("reference", "ref", n_ref), ("current", "cur", n_cur)):
            c = int(r[key])
            rows.append({"category": name, "side": side, "count": c, "share": c / n,
                         "unseen": unseen})  # fmt: skip
    return pd.DataFrame(rows, columns=CATEGORY_COLUMNS)
