"""Drift statistics for model monitoring, computed from compact summaries.

Monitoring code aggregates millions of rows in DuckDB and hands this module small
summaries: sorted distinct values with a count per side (``GROUP BY value``) for numeric
features, and aligned category counts for categorical ones. Every statistic therefore has
a ``*_from_counts`` form; the ``*_from_samples`` wrappers take raw arrays (tests, small
data) and agree with scipy to floating-point precision.

Missing data: NaN and +/-inf are dropped (infinities have no Wasserstein distance, standard
deviation or quantile, so they are treated as missing); the caller reports missing shares
itself. Results are :class:`StatResult` values and never hold NaN or inf: when a statistic
cannot be computed (an empty side) ``statistic`` is ``None`` and ``note`` says why.

Default methods (:func:`choose_method`), and why:

* At large n every p-value goes to zero, so once the smaller side has ``LARGE_SAMPLE``
  (50,000) rows or more drift is judged by an effect size against a fixed threshold:

  - numeric: Wasserstein-1 distance divided by the reference standard deviation, drift
    when >= 0.05, i.e. "the distribution moved by a twentieth of a standard deviation".
    Measured: identical normals, 1M rows per side: mean 0.002, max 0.004 over 100 draws;
    a 0.1 sd mean shift at 100k rows per side: 0.092-0.102. Sampling noise of identical
    samples (max over 40 draws; normal, lognormal(0, 2), t(2), Pareto(1.5)) is <= 0.037 at
    50k rows per side but reaches 0.05 at 10k-20k, hence the cutoff of 50,000.
  - categorical: PSI >= 0.1 (the usual "moderate shift" convention). A new category
    taking 5% of traffic scores ~0.31 with the 1e-4 floor; identical 1M-row samples
    score ~1e-5.

* Below the cutoff: p-value tests, two-sample Kolmogorov-Smirnov (numeric) or chi-square
  homogeneity (categorical), Benjamini-Hochberg corrected across features at alpha 0.05
  (:func:`decide`). At 50k rows they already detect shifts of a few hundredths of a sd.

Override a feature's threshold by setting ``StatResult.threshold`` (``dataclasses.replace``)
before :func:`decide`; alpha and the cutoff are parameters of :func:`decide` and
:func:`choose_method`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats  # type: ignore[import-untyped, unused-ignore]
from scipy.special import rel_entr  # type: ignore[import-untyped, unused-ignore]

from mlops_nb.errors import InvalidArgument

# scipy is untyped here; the ignores above stay quiet if scipy-stubs gets installed later.

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_BINS",
    "DEFAULT_THRESHOLDS",
    "LARGE_SAMPLE",
    "PSI_EPS",
    "MethodChoice",
    "StatResult",
    "assess_counts",
    "assess_samples",
    "benjamini_hochberg",
    "bin_counts",
    "category_counts",
    "chi2_from_counts",
    "choose_method",
    "decide",
    "jensen_shannon_from_counts",
    "jensen_shannon_from_samples",
    "ks_from_counts",
    "ks_from_samples",
    "merge_sorted",
    "normalized_wasserstein_from_counts",
    "normalized_wasserstein_from_samples",
    "normalized_wasserstein_large",
    "normalized_wasserstein_sorted",
    "psi_from_counts",
    "psi_from_samples",
    "quantile_edges",
    "wasserstein_from_counts",
    "wasserstein_from_samples",
    "wasserstein_sorted",
]

FloatArray = npt.NDArray[np.float64]
Kind = Literal["numeric", "categorical"]

PSI_EPS = 1e-4  # floor on bin shares: an empty bin costs share*ln(share/1e-4), never inf
DEFAULT_BINS = 10
DEFAULT_ALPHA = 0.05
LARGE_SAMPLE = 50_000
EXACT_KS_MAX_N = 10_000  # scipy's own 'auto' limit for the exact KS distribution
P_VALUE_METHODS = frozenset({"ks", "chi2"})
DEFAULT_THRESHOLDS: Mapping[str, float] = MappingProxyType(
    # JS 0.1 ~ PSI 0.055 for small shifts (PSI ~= 8 ln2 JS^2)
    {"wasserstein_norm": 0.05, "psi": 0.1, "jensen_shannon": 0.1}
)


@dataclass(frozen=True)
class StatResult:
    """One drift statistic; ``statistic is None`` means it could not be computed.

    ``drifted`` stays ``None`` until :func:`decide` fills it (and when undecidable).

    >>> StatResult("psi", 0.25, threshold=0.1)
    StatResult(method='psi', statistic=0.25, p_value=None, threshold=0.1, drifted=None, note=None)
    """

    method: str
    statistic: float | None
    p_value: float | None = None
    threshold: float | None = None
    drifted: bool | None = None
    note: str | None = None


@dataclass(frozen=True)
class MethodChoice:
    """Default method for a feature; ``threshold`` is alpha when ``uses_p_value``."""

    method: str
    threshold: float
    uses_p_value: bool


def _result(
    method: str, stat: float, p: float | None = None, note: str | None = None
) -> StatResult:
    # Last line of defence so that no NaN/inf ever leaves the module (e.g. float overflow).
    if not math.isfinite(stat) or (p is not None and not math.isfinite(p)):
        return StatResult(method, None, None, note="not computable: non-finite result")
    pv = None if p is None else min(max(float(p), 0.0), 1.0)
    return StatResult(method, float(stat), pv, note=note)


def _empty(method: str, n_ref: float, n_cur: float) -> StatResult | None:
    if n_ref > 0 and n_cur > 0:
        return None
    side = "reference" if n_ref <= 0 else "current"
    return StatResult(method, None, note=f"insufficient data: {side} side is empty")


def _as_1d(x: npt.ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise InvalidArgument(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _finite(x: npt.ArrayLike, name: str) -> FloatArray:
    arr = _as_1d(x, name)
    return arr[np.isfinite(arr)]


def _counts(c: npt.ArrayLike, name: str) -> FloatArray:
    arr = _as_1d(c, name)
    if not np.all(np.isfinite(arr) & (arr >= 0)):
        raise InvalidArgument(f"{name} must hold finite non-negative counts")
    return arr


def _aligned(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    r, c = _counts(ref_counts, "ref_counts"), _counts(cur_counts, "cur_counts")
    if r.shape != c.shape:
        raise InvalidArgument(f"count vectors differ in length: {r.size} != {c.size}")
    return r, c


def _summary(
    values: npt.ArrayLike, ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Sorted distinct finite values with summed counts (drops a NULL/NaN group)."""
    r, c = _aligned(ref_counts, cur_counts)
    v = _as_1d(values, "values")
    if v.shape != r.shape:
        raise InvalidArgument(f"values has {v.size} entries but the counts have {r.size}")
    keep = np.isfinite(v)
    if keep.all() and (v.size < 2 or bool(np.all(v[1:] > v[:-1]))):
        # Already sorted and distinct (what merge_sorted and GROUP BY ... ORDER BY give):
        # skip the O(n log n) unique.
        return v, r, c
    uniq, inv = np.unique(v[keep], return_inverse=True)
    return (
        uniq,
        np.bincount(inv, weights=r[keep], minlength=uniq.size).astype(np.float64),
        np.bincount(inv, weights=c[keep], minlength=uniq.size).astype(np.float64),
    )


def merge_sorted(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(distinct values, counts in a, counts in b) from two sorted, finite samples.

    Linear after the two sorts, which callers can run in parallel threads (numpy releases
    the GIL while sorting); the single 2n-element argsort of ``np.unique`` cannot.

    >>> v, r, c = merge_sorted(np.array([1.0, 1.0, 3.0]), np.array([2.0, 3.0]))
    >>> v.tolist(), r.tolist(), c.tolist()
    ([1.0, 2.0, 3.0], [2.0, 0.0, 1.0], [0.0, 1.0, 1.0])
    """

    def runs(x: FloatArray) -> tuple[FloatArray, FloatArray]:
        if x.size == 0:
            return x, x
        starts = np.flatnonzero(np.concatenate(([True], x[1:] != x[:-1])))
        counts = np.diff(np.append(starts, x.size)).astype(np.float64)
        return x[starts], counts

    ua, ca = runs(a)
    ub, cb = runs(b)
    # Timsort ("stable" for floats) merges the two sorted runs in linear time.
    both = np.sort(np.concatenate([ua, ub]), kind="stable")
    v = both[np.concatenate(([True], both[1:] != both[:-1]))] if both.size else both
    r = np.zeros(v.size)
    c = np.zeros(v.size)
    r[np.searchsorted(v, ua)] = ca
    c[np.searchsorted(v, ub)] = cb
    return v, r, c


def wasserstein_sorted(a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]]) -> float:
    """Wasserstein-1 distance of two sorted, finite, non-empty samples, in linear time.

    W1 is the area between the quantile functions, step functions with steps at i/n and
    j/m. On the common scale n*m those are the integers i*m and j*n, so the breakpoints
    merge exactly (no float ties; a radix sort of two sorted runs) and each piece pairs
    one order statistic of each side. Equal sizes reduce to the mean absolute difference
    of order statistics. Equal to :func:`wasserstein_from_samples` to rounding.

    >>> wasserstein_sorted(np.array([0.0, 1.0, 3.0]), np.array([5.0, 6.0, 8.0]))
    5.0
    """
    n, m = a.size, b.size
    if n == m:
        return float(np.mean(np.abs(a - b), dtype=np.float64))
    both = np.sort(
        np.concatenate([np.arange(1, n + 1, dtype=np.int64) * m,
                        np.arange(1, m + 1, dtype=np.int64) * n]),
        kind="stable",
    )  # fmt: skip
    points = both[np.concatenate(([True], both[1:] != both[:-1]))]
    widths = np.diff(points, prepend=0)
    ia = (points + m - 1) // m - 1
    ib = (points + n - 1) // n - 1
    gaps = np.abs(a[ia].astype(np.float64) - b[ib])
    return float(np.dot(widths, gaps) / (n * m))


def normalized_wasserstein_sorted(a: FloatArray, b: FloatArray) -> StatResult:
    """:func:`normalized_wasserstein_from_counts` for sorted samples, without the merge.

    >>> normalized_wasserstein_sorted(np.array([0.0, 2.0]), np.array([1.0, 3.0])).statistic
    1.0
    """
    if (bad := _empty("wasserstein_norm", a.size, b.size)) is not None:
        return bad
    if a[0] == a[-1]:
        # A constant reference has no scale; the counts form knows the fallbacks.
        return normalized_wasserstein_from_counts(*merge_sorted(a, b))
    return _result("wasserstein_norm", wasserstein_sorted(a, b) / float(np.std(a)))


def normalized_wasserstein_large(a: FloatArray, b: FloatArray) -> StatResult:
    """Normalized Wasserstein-1 for large, unsorted, finite samples, computed fast.

    Both samples are standardized by the reference's mean and standard deviation, so the
    distance comes out directly in reference standard deviations, and then sorted in
    single precision, which halves the cost of the sorts that dominate large drift runs.
    Standardizing first keeps the rounding relative to the spread of the data (about
    1e-7 standard deviations), so large offsets such as epoch timestamps lose nothing.
    A constant reference falls back to :func:`normalized_wasserstein_sorted`.

    >>> r = normalized_wasserstein_large(np.array([0.0, 2.0]), np.array([1.0, 3.0]))
    >>> round(r.statistic, 6)
    1.0
    """
    if (bad := _empty("wasserstein_norm", a.size, b.size)) is not None:
        return bad
    mean, std = float(np.mean(a)), float(np.std(a))
    if not std > 0.0:
        return normalized_wasserstein_sorted(np.sort(a), np.sort(b))
    za = ((a - mean) / std).astype(np.float32)
    za.sort()
    zb = ((b - mean) / std).astype(np.float32)
    zb.sort()
    return _result("wasserstein_norm", wasserstein_sorted(za, zb))


def _samples_summary(
    ref: npt.ArrayLike, cur: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    a, b = _finite(ref, "ref"), _finite(cur, "cur")
    uniq, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    return (
        uniq,
        np.bincount(inv[: a.size], minlength=uniq.size).astype(np.float64),
        np.bincount(inv[a.size :], minlength=uniq.size).astype(np.float64),
    )


# --- Kolmogorov-Smirnov ---------------------------------------------------------------


def ks_from_samples(ref: npt.ArrayLike, cur: npt.ArrayLike) -> StatResult:
    """Two-sample KS test, exactly ``scipy.stats.ks_2samp(ref, cur)`` after dropping NaN/inf.

    >>> r = ks_from_samples([1, 2, 3, 4], [3, 4, 5, 6])
    >>> r.statistic, round(r.p_value, 4)
    (0.5, 0.7714)
    """
    a, b = _finite(ref, "ref"), _finite(cur, "cur")
    if (bad := _empty("ks", a.size, b.size)) is not None:
        return bad
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.ks_2samp(a, b)
    note = "exact p-value failed; scipy used the asymptotic one" if caught else None
    return _result("ks", float(res.statistic), float(res.pvalue), note)


def ks_from_counts(
    values: npt.ArrayLike,
    ref_counts: npt.ArrayLike,
    cur_counts: npt.ArrayLike,
    method: Literal["auto", "asymp"] = "auto",
) -> StatResult:
    """KS test from distinct ``values`` and per-side counts (``GROUP BY value``).

    The statistic is the largest gap between the two ECDFs evaluated at the distinct
    values, bit-for-bit what ``ks_2samp`` computes on the expanded data (ties included).
    The p-value follows ks_2samp's 'auto' rule: with integer counts and both sides of at
    most 10,000 rows the data are expanded and the exact distribution is used; otherwise
    Smirnov's asymptotic ``kstwo.sf(D, round(n*m/(n+m)))``. For large n the exact
    lattice-path computation is infeasible, so only the asymptotic p-value is available.

    >>> r = ks_from_counts([1, 2, 3], [2, 1, 0], [0, 1, 2])
    >>> round(r.statistic, 4), round(r.p_value, 4)
    (0.6667, 0.6)
    """
    v, r, c = _summary(values, ref_counts, cur_counts)
    n1, n2 = float(r.sum()), float(c.sum())
    if (bad := _empty("ks", n1, n2)) is not None:
        return bad
    integral = bool(np.all(r == np.round(r)) and np.all(c == np.round(c)))
    if method == "auto" and integral and max(n1, n2) <= EXACT_KS_MAX_N:
        return ks_from_samples(np.repeat(v, r.astype(np.int64)), np.repeat(v, c.astype(np.int64)))
    diffs = np.cumsum(r) / n1 - np.cumsum(c) / n2
    d = float(max(np.max(diffs), np.clip(-np.min(diffs), 0.0, 1.0)))
    # ks_2samp's formula; the floor of 1 only matters where scipy itself would return NaN
    en = max(float(np.round(n1 * n2 / (n1 + n2))), 1.0)
    return _result("ks", d, float(stats.kstwo.sf(d, en)))


# --- Wasserstein ----------------------------------------------------------------------


def _w1(v: FloatArray, r: FloatArray, c: FloatArray) -> float:
    gap = np.abs(np.cumsum(r)[:-1] / r.sum() - np.cumsum(c)[:-1] / c.sum())
    return float(np.sum(gap * np.diff(v)))


def _std(v: FloatArray, w: FloatArray) -> float:
    mean = np.sum(v * w) / w.sum()
    return float(np.sqrt(np.sum(w * (v - mean) ** 2) / w.sum()))


def wasserstein_from_counts(
    values: npt.ArrayLike, ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike
) -> StatResult:
    """Wasserstein-1 distance (area between the two ECDFs) from grouped counts.

    >>> wasserstein_from_counts([0, 1, 2], [1, 1, 0], [0, 1, 1]).statistic
    1.0
    """
    v, r, c = _summary(values, ref_counts, cur_counts)
    return _empty("wasserstein", r.sum(), c.sum()) or _result("wasserstein", _w1(v, r, c))


def wasserstein_from_samples(ref: npt.ArrayLike, cur: npt.ArrayLike) -> StatResult:
    """``scipy.stats.wasserstein_distance(ref, cur)`` after dropping NaN/inf.

    >>> wasserstein_from_samples([0, 1, 3], [5, 6, 8]).statistic
    5.0
    """
    return wasserstein_from_counts(*_samples_summary(ref, cur))


def normalized_wasserstein_from_counts(
    values: npt.ArrayLike, ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike
) -> StatResult:
    """Wasserstein-1 divided by the reference standard deviation (ddof=0).

    A mean shift of k reference standard deviations scores k. A constant reference has
    no scale: the distance is then divided by the pooled (both sides) standard deviation,
    which is positive whenever the sides differ: the score stays finite and grows with the
    change (a jump to another constant scores at least 2). Both constant and equal scores
    0. The note says which normalization was used.

    >>> normalized_wasserstein_from_counts([0, 1, 2], [1, 0, 1], [0, 1, 1]).statistic
    0.5
    """
    v, r, c = _summary(values, ref_counts, cur_counts)
    if (bad := _empty("wasserstein_norm", r.sum(), c.sum())) is not None:
        return bad
    w = _w1(v, r, c)
    if np.count_nonzero(r) > 1:
        return _result("wasserstein_norm", w / _std(v, r))
    if w == 0.0:
        note = "both sides constant and equal; not normalized"
        return _result("wasserstein_norm", 0.0, note=note)
    scale = _std(v, r + c)
    # Nearly equal constants can underflow the pooled variance: fall back to raw units.
    scale = scale if scale > 0.0 else 1.0
    return _result(
        "wasserstein_norm",
        w / scale,
        note="reference is constant; normalized by the pooled standard deviation",
    )


def normalized_wasserstein_from_samples(ref: npt.ArrayLike, cur: npt.ArrayLike) -> StatResult:
    """Sample form of :func:`normalized_wasserstein_from_counts`.

    >>> normalized_wasserstein_from_samples([0, 2], [1, 3]).statistic
    1.0
    """
    return normalized_wasserstein_from_counts(*_samples_summary(ref, cur))


# --- Binned: PSI and Jensen-Shannon ---------------------------------------------------


def quantile_edges(
    ref: npt.ArrayLike, bins: int = DEFAULT_BINS, counts: npt.ArrayLike | None = None
) -> FloatArray:
    """Bin edges at the reference's ``j/bins`` quantiles, outer edges -inf and +inf.

    Quantiles are discrete (inverted CDF, same as DuckDB's ``quantile_disc``): the
    smallest value whose ECDF reaches ``j/bins``, so they are data values and the grouped
    form (``counts`` given, ``ref`` the distinct values) agrees with the raw one. Repeated
    edges from ties are merged, so there may be fewer than ``bins`` bins. Use with
    :func:`bin_counts` (right-closed bins).

    >>> quantile_edges([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], bins=4).tolist()
    [-inf, 3.0, 5.0, 8.0, inf]
    >>> quantile_edges([0, 0, 0, 0, 1], bins=4).tolist()
    [-inf, 0.0, inf]
    """
    if not isinstance(bins, int | np.integer) or bins < 1:
        raise InvalidArgument(f"bins must be a positive integer, got {bins!r}")
    if counts is None:
        v, n = np.unique(_finite(ref, "ref"), return_counts=True)
        w = n.astype(np.float64)
    else:
        v, w, _ = _summary(ref, counts, np.zeros(np.shape(counts)))
    cum = np.cumsum(w)
    if v.size == 0 or cum[-1] <= 0:
        return np.array([-np.inf, np.inf])
    # Integer-exact comparison cum/n >= j/bins, avoiding float error in j/bins.
    idx = np.searchsorted(cum * bins, np.arange(1, bins) * cum[-1], side="left")
    return np.concatenate([[-np.inf], np.unique(v[idx]), [np.inf]])


def bin_counts(
    x: npt.ArrayLike, edges: npt.ArrayLike, counts: npt.ArrayLike | None = None
) -> FloatArray:
    """Count of ``x`` (weighted by ``counts``) in bins ``edges[i] < x <= edges[i + 1]``.

    >>> bin_counts([1, 3, 4, 9, 11, np.nan], [-np.inf, 3, 5, 8, np.inf]).tolist()
    [2.0, 1.0, 0.0, 2.0]
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise InvalidArgument("edges must be a strictly increasing 1-D array of >= 2 values")
    w: FloatArray | None = None
    if counts is None:
        v = _finite(x, "x")
    else:
        v, w, _ = _summary(x, counts, np.zeros(np.shape(counts)))
    idx = np.clip(np.searchsorted(e, v, side="left") - 1, 0, e.size - 2)
    return np.bincount(idx, weights=w, minlength=e.size - 1).astype(np.float64)


def psi_from_counts(
    ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike, eps: float = PSI_EPS
) -> StatResult:
    """Population stability index over aligned bin or category counts.

    ``sum((q - p) * ln(q / p))`` with shares p (reference) and q (current) floored at
    ``eps`` (default 1e-4, not renormalized), so empty bins and unseen categories give a
    large but finite contribution.

    >>> round(psi_from_counts([50, 50], [40, 60]).statistic, 4)
    0.0405
    """
    if not eps > 0:
        raise InvalidArgument(f"eps must be positive, got {eps!r}")
    r, c = _aligned(ref_counts, cur_counts)
    if (bad := _empty("psi", r.sum(), c.sum())) is not None:
        return bad
    p, q = np.maximum(r / r.sum(), eps), np.maximum(c / c.sum(), eps)
    return _result("psi", float(np.sum((q - p) * np.log(q / p))))


def psi_from_samples(
    ref: npt.ArrayLike, cur: npt.ArrayLike, bins: int = DEFAULT_BINS, eps: float = PSI_EPS
) -> StatResult:
    """PSI on :func:`quantile_edges` of the reference.

    >>> psi_from_samples(np.arange(100), np.arange(100)).statistic
    0.0
    """
    edges = quantile_edges(ref, bins)
    return psi_from_counts(bin_counts(ref, edges), bin_counts(cur, edges), eps)


def jensen_shannon_from_counts(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> StatResult:
    """Jensen-Shannon distance in base 2 (in [0, 1]) between the count vectors' shares.

    Equals ``scipy.spatial.distance.jensenshannon(ref_counts, cur_counts, base=2)``.

    >>> jensen_shannon_from_counts([1, 0], [0, 1]).statistic
    1.0
    """
    r, c = _aligned(ref_counts, cur_counts)
    if (bad := _empty("jensen_shannon", r.sum(), c.sum())) is not None:
        return bad
    p, q = r / r.sum(), c / c.sum()
    m = (p + q) / 2.0
    js = (np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / np.log(2.0)
    # Round-off can push the divergence a hair outside [0, 2]; sqrt must not see < 0.
    return _result("jensen_shannon", float(np.sqrt(np.clip(js / 2.0, 0.0, 1.0))))


def jensen_shannon_from_samples(
    ref: npt.ArrayLike, cur: npt.ArrayLike, bins: int = DEFAULT_BINS
) -> StatResult:
    """Jensen-Shannon distance on :func:`quantile_edges` bins of the reference.

    >>> jensen_shannon_from_samples([0, 0, 1, 1], [5, 5, 5, 5]).statistic
    1.0
    """
    edges = quantile_edges(ref, bins)
    return jensen_shannon_from_counts(bin_counts(ref, edges), bin_counts(cur, edges))


# --- Categorical ----------------------------------------------------------------------


def category_counts(
    ref: npt.ArrayLike | Sequence[object], cur: npt.ArrayLike | Sequence[object]
) -> tuple[npt.NDArray[np.object_], FloatArray, FloatArray]:
    """Union of categories (first-seen order) with counts per side; missing labels dropped.

    >>> cats, r, c = category_counts(["a", "b", "a", None], ["b", "c"])
    >>> cats.tolist(), r.tolist(), c.tolist()
    (['a', 'b', 'c'], [2.0, 1.0, 0.0], [0.0, 1.0, 1.0])
    """
    a = np.asarray(ref, dtype=object).ravel()
    b = np.asarray(cur, dtype=object).ravel()
    codes, uniques = pd.factorize(np.concatenate([a, b]), use_na_sentinel=True)
    k = len(uniques)
    ra, rb = codes[: a.size], codes[a.size :]
    return (
        np.asarray(uniques, dtype=object),
        np.bincount(ra[ra >= 0], minlength=k).astype(np.float64),
        np.bincount(rb[rb >= 0], minlength=k).astype(np.float64),
    )


def chi2_from_counts(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> StatResult:
    """Chi-square homogeneity test on the 2 x k table ``[ref_counts, cur_counts]``.

    Same as ``scipy.stats.chi2_contingency(table)`` (Yates correction when dof == 1).
    Categories seen on neither side are dropped; one seen on one side only is fine
    (its expected counts are positive). With fewer than two categories left both sides
    share one category: statistic 0, p-value 1, no evidence of drift.

    >>> r = chi2_from_counts([30, 70, 0], [50, 50, 0])
    >>> round(r.statistic, 4), round(r.p_value, 4)
    (7.5208, 0.0061)
    """
    r, c = _aligned(ref_counts, cur_counts)
    if (bad := _empty("chi2", r.sum(), c.sum())) is not None:
        return bad
    keep = (r + c) > 0
    if np.count_nonzero(keep) < 2:
        return _result("chi2", 0.0, 1.0, "fewer than two categories observed")
    res = stats.chi2_contingency(np.vstack([r[keep], c[keep]]))
    return _result("chi2", float(res.statistic), float(res.pvalue))


# --- Multiple testing, method choice, verdicts ----------------------------------------


def benjamini_hochberg(
    p_values: npt.ArrayLike, alpha: float = DEFAULT_ALPHA
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """BH-adjusted p-values (as ``scipy.stats.false_discovery_control``) and rejections.

    >>> adj, rej = benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    >>> adj.round(4).tolist(), rej.tolist()
    ([0.04, 0.0533, 0.0533, 0.5], [True, False, False, False])
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise InvalidArgument("p_values must be a 1-D array of values in [0, 1]")
    order = np.argsort(p)
    scaled = p[order] * (p.size / np.arange(1, p.size + 1))
    adjusted = np.empty_like(p)
    adjusted[order] = np.clip(np.minimum.accumulate(scaled[::-1])[::-1], 0.0, 1.0)
    return adjusted, adjusted <= alpha


def choose_method(
    kind: Kind,
    n_ref: int,
    n_cur: int,
    large_sample: int = LARGE_SAMPLE,
    alpha: float = DEFAULT_ALPHA,
) -> MethodChoice:
    """Default method for a feature given the (non-missing) row counts per side.

    >>> choose_method("numeric", 1_000_000, 100_000)
    MethodChoice(method='wasserstein_norm', threshold=0.05, uses_p_value=False)
    >>> choose_method("categorical", 800, 2_000)
    MethodChoice(method='chi2', threshold=0.05, uses_p_value=True)
    """
    if kind not in ("numeric", "categorical"):
        raise InvalidArgument(f"kind must be 'numeric' or 'categorical', got {kind!r}")
    if min(n_ref, n_cur) >= large_sample:
        method = "wasserstein_norm" if kind == "numeric" else "psi"
        return MethodChoice(method, DEFAULT_THRESHOLDS[method], False)
    return MethodChoice("ks" if kind == "numeric" else "chi2", alpha, True)


def assess_samples(
    kind: Kind, ref: npt.ArrayLike, cur: npt.ArrayLike, large_sample: int = LARGE_SAMPLE
) -> StatResult:
    """Default statistic (see :func:`choose_method`) for raw samples, threshold filled in.

    >>> assess_samples("numeric", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    StatResult(method='ks', statistic=0.0, p_value=1.0, threshold=0.05, drifted=None, note=None)
    """
    if kind == "numeric":
        return _assess_numeric(*_samples_summary(ref, cur), large_sample)
    _, r, c = category_counts(ref, cur)
    return assess_counts(kind, r, c, large_sample=large_sample)


def _assess_numeric(v: FloatArray, r: FloatArray, c: FloatArray, large_sample: int) -> StatResult:
    choice = choose_method("numeric", int(r.sum()), int(c.sum()), large_sample)
    fn = ks_from_counts if choice.method == "ks" else normalized_wasserstein_from_counts
    return replace(fn(v, r, c), threshold=choice.threshold)


def assess_counts(
    kind: Kind,
    ref_counts: npt.ArrayLike,
    cur_counts: npt.ArrayLike,
    values: npt.ArrayLike | None = None,
    large_sample: int = LARGE_SAMPLE,
) -> StatResult:
    """Default statistic from summaries: ``values`` are required for numeric features.

    >>> r = assess_counts("categorical", [500_000, 500_000], [450_000, 550_000])
    >>> r.method, round(r.statistic, 4), r.threshold
    ('psi', 0.01, 0.1)
    """
    if kind == "numeric":
        if values is None:
            raise InvalidArgument("numeric features need the distinct values of the counts")
        return _assess_numeric(*_summary(values, ref_counts, cur_counts), large_sample)
    r, c = _aligned(ref_counts, cur_counts)
    choice = choose_method(kind, int(r.sum()), int(c.sum()), large_sample)
    fn = chi2_from_counts if choice.method == "chi2" else psi_from_counts
    return replace(fn(r, c), threshold=choice.threshold)


def decide(
    results: Mapping[str, StatResult], alpha: float = DEFAULT_ALPHA
) -> dict[str, StatResult]:
    """Fill in ``drifted`` for every feature.

    p-value methods (``ks``, ``chi2``) are Benjamini-Hochberg adjusted together at
    ``alpha``: the returned ``p_value`` is the adjusted one and ``threshold`` is alpha.
    Effect sizes drift when ``statistic >= threshold`` (the result's own threshold, else
    ``DEFAULT_THRESHOLDS``). Uncomputable statistics and methods without a threshold get
    ``drifted=None`` and a note.

    >>> out = decide({"a": StatResult("ks", 0.3, 0.01), "b": StatResult("chi2", 1.0, 0.2),
    ...               "c": StatResult("psi", 0.2), "d": StatResult("ks", None, note="empty")})
    >>> [(k, v.drifted) for k, v in out.items()]
    [('a', True), ('b', False), ('c', True), ('d', None)]
    """
    pvals = {
        k: r.p_value
        for k, r in results.items()
        if r.method in P_VALUE_METHODS and r.statistic is not None and r.p_value is not None
    }
    tested = list(pvals)
    adjusted, rejected = benjamini_hochberg(np.array(list(pvals.values()), dtype=float), alpha)
    out: dict[str, StatResult] = {}
    bh = {k: (float(a), bool(j)) for k, a, j in zip(tested, adjusted, rejected, strict=True)}
    for key, res in results.items():
        if key in bh:
            note = f"p-value BH-adjusted over {len(tested)} tests"
            out[key] = replace(
                res,
                p_value=bh[key][0],
                threshold=alpha,
                drifted=bh[key][1],
                note=note if res.note is None else f"{res.note}; {note}",
            )
        elif res.statistic is None:
            out[key] = replace(res, drifted=None, note=res.note or "insufficient data")
        else:
            thr = res.threshold if res.threshold is not None else DEFAULT_THRESHOLDS.get(res.method)
            if thr is None:
                note = f"no threshold for method {res.method!r}"
                out[key] = replace(res, drifted=None, note=note)
            else:
                out[key] = replace(res, threshold=thr, drifted=res.statistic >= thr)
    return out
