"""Reference-vs-current distributions of one feature, as small aggregates for charts.

Numeric features share one set of bins across both sides (so the bars line up);
categorical features keep the top ``k`` categories by their larger share and fold the
rest into "other", marking categories that the reference never had.

>>> import numpy as np
>>> shared_bins(np.array([0.0, 1.0, 2.0]), np.array([2.0, 3.0]), bins=3)[["side", "count"]].values.tolist()
[['reference', 1], ['reference', 1], ['reference', 1], ['current', 0], ['current', 0], ['current', 2]]
>>> top_categories({"a": 3, "b": 1}, {"a": 1, "c": 3}, k=5)[["category", "side", "count"]].values.tolist()
[['a', 'reference', 3], ['a', 'current', 1], ['b', 'reference', 1], ['b', 'current', 0], ['c *', 'reference', 0], ['c *', 'current', 3]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

BINS = 30
TOP_K = 10
UNSEEN = " *"


def numbers(column: pa.ChunkedArray | pa.Array) -> np.ndarray[Any, np.dtype[np.float64]]:
    arr = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    result: np.ndarray[Any, np.dtype[np.float64]] = arr[np.isfinite(arr)]
    return result


def counts(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    vc = pc.value_counts(column.cast(pa.string()).drop_null())
    values = vc.field("values").to_pylist()
    return dict(zip(values, vc.field("counts").to_pylist(), strict=True))


def shared_bins(
    ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any], bins: int = BINS
) -> pd.DataFrame:
    """Counts and shares per side over ``bins`` equal-width bins spanning both sides."""
    both = [a for a in (ref, cur) if a.size]
    if not both:
        return pd.DataFrame(columns=["lo", "hi", "side", "count", "share"])
    lo = float(min(a.min() for a in both))
    hi = float(max(a.max() for a in both))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    frames = []
    for side, values in (("reference", ref), ("current", cur)):
        n, _ = np.histogram(values, edges)
        frames.append(
            pd.DataFrame(
                {
                    "lo": edges[:-1],
                    "hi": edges[1:],
                    "side": side,
                    "count": n.astype(int),
                    "share": n / max(int(values.size), 1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def top_categories(ref: dict[str, int], cur: dict[str, int], k: int = TOP_K) -> pd.DataFrame:
    """The ``k`` largest categories (by the larger share), the rest as "other"; categories
    absent from the reference end in ``*``."""
    n_ref, n_cur = max(sum(ref.values()), 1), max(sum(cur.values()), 1)
    cats = sorted(set(ref) | set(cur))
    ranked = sorted(cats, key=lambda c: (-max(ref.get(c, 0) / n_ref, cur.get(c, 0) / n_cur), c))
    kept, rest = sorted(ranked[:k]), ranked[k:]
    rows = []
    for cat in kept:
        name = cat + (UNSEEN if ref.get(cat, 0) == 0 else "")
        for side, source, n in (("reference", ref, n_ref), ("current", cur, n_cur)):
            c = int(source.get(cat, 0))
            rows.append(
                {
                    "category": name,
                    "side": side,
                    "count": c,
                    "share": c / n,
                    "unseen": ref.get(cat, 0) == 0,
                }
            )
    if rest:
        for side, source, n in (("reference", ref, n_ref), ("current", cur, n_cur)):
            c = int(sum(source.get(cat, 0) for cat in rest))
            rows.append(
                {
                    "category": f"other ({len(rest)})",
                    "side": side,
                    "count": c,
                    "share": c / n,
                    "unseen": False,
                }
            )
    return pd.DataFrame(rows, columns=["category", "side", "count", "share", "unseen"])
