"""Tests for mlops_nb.monitor.stats: agreement with scipy, degenerate inputs, defaults."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats  # type: ignore[import-untyped, unused-ignore]
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped, unused-ignore]

from mlops_nb.errors import InvalidArgument
from mlops_nb.monitor import stats as mstats
from mlops_nb.monitor.stats import (
    DEFAULT_THRESHOLDS,
    LARGE_SAMPLE,
    PSI_EPS,
    MethodChoice,
    StatResult,
    assess_counts,
    assess_samples,
    benjamini_hochberg,
    bin_counts,
    category_counts,
    chi2_from_counts,
    choose_method,
    decide,
    jensen_shannon_from_counts,
    jensen_shannon_from_samples,
    ks_from_counts,
    ks_from_samples,
    normalized_wasserstein_from_counts,
    normalized_wasserstein_from_samples,
    psi_from_counts,
    psi_from_samples,
    quantile_edges,
    wasserstein_from_counts,
    wasserstein_from_samples,
)

SEEDS = [0, 1, 2, 3]


def _pair(seed: int, kind: str, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(size=n1), rng.normal(0.2, 1.1, size=n2)
    if kind == "integer":  # heavy ties
        return (
            rng.integers(0, 8, size=n1).astype(float),
            rng.integers(1, 9, size=n2).astype(float),
        )
    return rng.lognormal(0, 1, size=n1).round(1), rng.lognormal(0.1, 1, size=n2).round(1)


def _counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    return (
        values,
        np.bincount(inv[: a.size], minlength=values.size),
        np.bincount(inv[a.size :], minlength=values.size),
    )


CASES = [
    (s, k, n1, n2)
    for s in SEEDS
    for k in ("normal", "integer", "rounded")
    for n1, n2 in ((40, 60), (500, 500), (3000, 1700), (12_000, 15_000))
]


# --- KS ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "kind", "n1", "n2"), CASES)
def test_ks_matches_scipy_from_samples_and_counts(seed: int, kind: str, n1: int, n2: int) -> None:
    a, b = _pair(seed, kind, n1, n2)
    expected = stats.ks_2samp(a, b)
    got = ks_from_samples(a, b)
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert got.p_value == pytest.approx(expected.pvalue, abs=1e-9)
    from_counts = ks_from_counts(*_counts(a, b))
    assert from_counts.statistic == float(expected.statistic)  # exact, ties included
    assert from_counts.p_value == pytest.approx(expected.pvalue, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_ks_counts_asymptotic_matches_scipy_asymp(seed: int) -> None:
    a, b = _pair(seed, "integer", 300, 700)
    expected = stats.ks_2samp(a, b, method="asymp")
    got = ks_from_counts(*_counts(a, b), method="asymp")
    assert got.statistic == float(expected.statistic)
    assert got.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_ks_counts_accepts_unsorted_duplicated_values_and_a_null_group() -> None:
    a, b = _pair(7, "integer", 200, 300)
    values, r, c = _counts(a, b)
    perm = np.random.default_rng(0).permutation(values.size)
    # split every group in two rows, shuffle, and add a NULL group as DuckDB returns it
    v2 = np.concatenate([values[perm], values[perm], [np.nan]])
    r2 = np.concatenate([r[perm] // 2, r[perm] - r[perm] // 2, [5]])
    c2 = np.concatenate([c[perm] // 2, c[perm] - c[perm] // 2, [9]])
    expected = stats.ks_2samp(a, b)
    got = ks_from_counts(v2, r2, c2)
    assert (got.statistic, got.p_value) == pytest.approx((expected.statistic, expected.pvalue))


# --- Wasserstein --------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "kind", "n1", "n2"), CASES)
def test_wasserstein_matches_scipy(seed: int, kind: str, n1: int, n2: int) -> None:
    a, b = _pair(seed, kind, n1, n2)
    expected = stats.wasserstein_distance(a, b)
    assert wasserstein_from_samples(a, b).statistic == pytest.approx(expected, rel=1e-9, abs=1e-12)
    got = wasserstein_from_counts(*_counts(a, b)).statistic
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    norm = normalized_wasserstein_from_samples(a, b).statistic
    assert norm == pytest.approx(expected / np.std(a), rel=1e-9)
    assert normalized_wasserstein_from_counts(*_counts(a, b)).statistic == pytest.approx(norm)


def test_normalized_wasserstein_of_a_mean_shift_is_the_shift_in_sd() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(5, 3, 200_000)
    res = normalized_wasserstein_from_samples(a, a + 0.3)  # 0.1 sd
    assert res.statistic == pytest.approx(0.1, rel=0.02)
    assert res.note is None


def test_normalized_wasserstein_constant_reference_fallbacks() -> None:
    same = normalized_wasserstein_from_samples([2.0] * 5, [2.0] * 7)
    assert same.statistic == 0.0
    assert same.note is not None and "not normalized" in same.note
    jump = normalized_wasserstein_from_samples([2.0] * 5, [3.0] * 5)
    assert jump.statistic == pytest.approx(2.0)  # |a-b| / (|a-b| * sqrt(0.25))
    assert jump.note is not None and "pooled" in jump.note
    varies = normalized_wasserstein_from_samples(np.zeros(99), np.r_[np.zeros(98), 1.0])
    assert varies.statistic is not None
    assert varies.statistic >= DEFAULT_THRESHOLDS["wasserstein_norm"]


# --- Binning, PSI and Jensen-Shannon --------------------------------------------------


def test_quantile_edges_dedup_ties_and_agree_with_numpy_and_counts() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=1001)
    qs = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    np.testing.assert_array_equal(
        quantile_edges(x)[1:-1], np.quantile(x, qs, method="inverted_cdf")
    )
    ties = rng.integers(0, 3, size=500).astype(float)
    edges = quantile_edges(ties)
    # 10 requested bins collapse to the 3 distinct values; (2, inf) catches anything above
    assert edges.tolist() == [-np.inf, 0.0, 1.0, 2.0, np.inf]
    values, counts = np.unique(ties, return_counts=True)
    np.testing.assert_array_equal(quantile_edges(values, counts=counts), edges)
    np.testing.assert_array_equal(bin_counts(values, edges, counts=counts), bin_counts(ties, edges))
    assert quantile_edges([]).tolist() == [-np.inf, np.inf]
    with pytest.raises(InvalidArgument):
        quantile_edges(x, bins=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_quantile_edges_match_duckdb_quantile_disc_and_group_by_summaries(seed: int) -> None:
    duckdb = pytest.importorskip("duckdb")
    a, b = _pair(seed, "integer" if seed % 2 else "rounded", 1500, 2500)
    frame = pd.DataFrame({"side": ["ref"] * a.size + ["cur"] * b.size, "x": np.r_[a, b]})
    con = duckdb.connect()
    con.register("obs", frame)
    qs = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    disc = con.execute(f"SELECT quantile_disc(x, {qs}) FROM obs WHERE side = 'ref'").fetchall()
    np.testing.assert_array_equal(quantile_edges(a)[1:-1], np.unique(disc[0][0]))
    rows = con.execute(
        "SELECT x, count(*) FILTER (WHERE side = 'ref'), count(*) FILTER (WHERE side = 'cur')"
        " FROM obs GROUP BY x ORDER BY x"
    ).fetchall()
    values, ref_counts, cur_counts = (np.array(col, dtype=float) for col in zip(*rows, strict=True))
    expected = stats.ks_2samp(a, b)
    got = ks_from_counts(values, ref_counts, cur_counts)
    assert got.statistic == float(expected.statistic)
    assert got.p_value == pytest.approx(expected.pvalue, abs=1e-9)
    edges = quantile_edges(values, counts=ref_counts)
    binned = psi_from_counts(
        bin_counts(values, edges, ref_counts), bin_counts(values, edges, cur_counts)
    )
    assert binned == psi_from_samples(a, b)
    con.close()


def test_psi_hand_computed() -> None:
    ref = np.arange(1.0, 11.0)  # 1..10
    cur = np.array([1, 2, 4, 6, 7, 9, 10, 11, 12, 13], dtype=float)
    # 4 bins, inverted-CDF quartiles of 1..10: 25% -> 3, 50% -> 5, 75% -> 8
    edges = quantile_edges(ref, bins=4)
    assert edges.tolist() == [-np.inf, 3.0, 5.0, 8.0, np.inf]
    # right-closed bins: (-inf,3] (3,5] (5,8] (8,inf)
    # ref 1,2,3 | 4,5 | 6,7,8 | 9,10    -> p = .3 .2 .3 .2
    # cur 1,2   | 4   | 6,7   | 9..13   -> q = .2 .1 .2 .5
    assert bin_counts(ref, edges).tolist() == [3, 2, 3, 2]
    assert bin_counts(cur, edges).tolist() == [2, 1, 2, 5]
    expected = (
        (0.2 - 0.3) * math.log(0.2 / 0.3)  # 0.0405465
        + (0.1 - 0.2) * math.log(0.1 / 0.2)  # 0.0693147
        + (0.2 - 0.3) * math.log(0.2 / 0.3)  # 0.0405465
        + (0.5 - 0.2) * math.log(0.5 / 0.2)  # 0.2748872
    )  # = 0.4252949
    assert expected == pytest.approx(0.4252949, abs=1e-7)
    assert psi_from_samples(ref, cur, bins=4).statistic == pytest.approx(expected, abs=1e-12)


def test_psi_epsilon_floor_keeps_empty_bins_finite() -> None:
    # new category with 5% share, nothing in the reference: 0.05 -> floor 1e-4 on the ref side
    res = psi_from_counts([50, 50, 0], [47.5, 47.5, 5])
    expected = 2 * (0.475 - 0.5) * math.log(0.475 / 0.5) + (0.05 - PSI_EPS) * math.log(
        0.05 / PSI_EPS
    )
    assert res.statistic == pytest.approx(expected, abs=1e-12)
    assert psi_from_counts([1, 0], [1, 0]).statistic == 0.0
    with pytest.raises(InvalidArgument):
        psi_from_counts([1, 2], [1, 2], eps=0.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_jensen_shannon_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    r = rng.integers(0, 50, size=12).astype(float)
    c = rng.integers(0, 50, size=12).astype(float)
    r[seed] = 0.0  # zero on one side
    c[seed + 3] = 0.0
    expected = jensenshannon(r, c, base=2)
    assert jensen_shannon_from_counts(r, c).statistic == pytest.approx(expected, abs=1e-9)
    a, b = _pair(seed, "normal", 800, 900)
    edges = quantile_edges(a)
    expected = jensenshannon(bin_counts(a, edges), bin_counts(b, edges), base=2)
    assert jensen_shannon_from_samples(a, b).statistic == pytest.approx(expected, abs=1e-9)


# --- Categorical --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [2, 3, 7])
def test_chi2_matches_scipy_default(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    table = rng.integers(1, 200, size=(2, k))
    expected = stats.chi2_contingency(table)  # Yates correction when k == 2
    got = chi2_from_counts(table[0], table[1])
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert got.p_value == pytest.approx(expected.pvalue, abs=1e-9)


def test_chi2_zero_columns_one_sided_categories_and_single_category() -> None:
    got = chi2_from_counts([10, 0, 20, 0], [12, 0, 15, 7])  # col 2 empty, col 4 new
    expected = stats.chi2_contingency([[10, 20, 0], [12, 15, 7]])
    assert (got.statistic, got.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    single = chi2_from_counts([10, 0], [30, 0])
    assert (single.statistic, single.p_value) == (0.0, 1.0)
    assert single.note is not None
    empty = chi2_from_counts([0, 0], [3, 4])
    assert empty.statistic is None and empty.note is not None and "reference" in empty.note


def test_category_counts_union_and_missing() -> None:
    cats, r, c = category_counts(["x", "y", None, "x", float("nan")], np.array(["z", "x"]))
    assert cats.tolist() == ["x", "y", "z"]
    assert r.tolist() == [2, 1, 0] and c.tolist() == [1, 0, 1]
    expected = jensenshannon(r, c, base=2)
    assert jensen_shannon_from_counts(r, c).statistic == pytest.approx(expected, abs=1e-12)


# --- Benjamini-Hochberg -------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_benjamini_hochberg_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=30), rng.uniform(0, 0.002, size=10), [0.0, 1.0, 0.5]])
    p[5] = p[6]  # ties
    adjusted, rejected = benjamini_hochberg(p, alpha=0.05)
    expected = stats.false_discovery_control(p, method="bh")
    np.testing.assert_allclose(adjusted, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(rejected, expected <= 0.05)


def test_benjamini_hochberg_edge_cases() -> None:
    adjusted, rejected = benjamini_hochberg([])
    assert adjusted.size == 0 and rejected.size == 0
    with pytest.raises(InvalidArgument):
        benjamini_hochberg([0.1, np.nan])
    with pytest.raises(InvalidArgument):
        benjamini_hochberg([1.5])


# --- Degenerate inputs --------------------------------------------------------------------

SAMPLE_FUNCS: list[Callable[..., StatResult]] = [
    ks_from_samples,
    wasserstein_from_samples,
    normalized_wasserstein_from_samples,
    psi_from_samples,
    jensen_shannon_from_samples,
]


def _finite_or_none(x: float | None) -> bool:
    return x is None or math.isfinite(x)


@pytest.mark.parametrize("fn", SAMPLE_FUNCS)
@pytest.mark.parametrize("ref", [[], [np.nan, np.inf, -np.inf]])
def test_empty_or_all_missing_side_is_reported_not_nan(
    fn: Callable[..., StatResult], ref: list[float]
) -> None:
    for a, b, side in ((ref, [1.0, 2.0], "reference"), ([1.0, 2.0], ref, "current")):
        res = fn(a, b)
        assert res.statistic is None and res.p_value is None
        assert res.note == f"insufficient data: {side} side is empty"
        out = decide({"f": res})["f"]
        assert out.drifted is None and out.note == res.note


@pytest.mark.parametrize("fn", SAMPLE_FUNCS)
def test_degenerate_samples_never_nan(fn: Callable[..., StatResult]) -> None:
    for a, b in (
        [[1.0], [2.0]],
        [[1.0], [1.0]],
        [[3.0] * 4, [3.0] * 9],
        [[3.0] * 4, [4.0] * 9],
        [[1.0, np.nan, 2.0, np.inf], [np.nan, 1.5, -np.inf]],
    ):
        res = fn(a, b)
        assert res.statistic is not None and math.isfinite(res.statistic)
        assert _finite_or_none(res.p_value)


@pytest.mark.parametrize("fn", SAMPLE_FUNCS)
def test_constant_columns(fn: Callable[..., StatResult]) -> None:
    equal = fn([3.0] * 50, [3.0] * 80)
    differ = fn([3.0] * 50, [4.0] * 80)
    assert equal.statistic == 0.0
    assert differ.statistic is not None and differ.statistic > 0.5
    if equal.p_value is not None:
        assert equal.p_value == 1.0


def test_nan_and_inf_are_dropped() -> None:
    a = np.array([0.1, 0.5, np.nan, 0.9, np.inf, 1.3])
    b = np.array([0.2, -np.inf, 0.7, 1.1, np.nan])
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    assert ks_from_samples(a, b) == ks_from_samples(fa, fb)
    assert wasserstein_from_samples(a, b).statistic == pytest.approx(
        stats.wasserstein_distance(fa, fb)
    )


def test_invalid_inputs_raise_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        ks_from_samples(np.zeros((2, 2)), [1.0])
    with pytest.raises(InvalidArgument):
        wasserstein_from_samples(["a", "b"], [1.0])
    with pytest.raises(InvalidArgument):
        psi_from_counts([1, 2], [1, 2, 3])
    with pytest.raises(InvalidArgument):
        chi2_from_counts([1, -2], [1, 2])
    with pytest.raises(InvalidArgument):
        ks_from_counts([1, 2], [1], [1, 1])
    with pytest.raises(InvalidArgument):
        assess_counts("numeric", [1, 2], [2, 1])
    with pytest.raises(InvalidArgument):
        psi_from_counts(["a"], [1])


def test_ks_asymptotic_tiny_samples_stay_finite() -> None:
    res = ks_from_counts([1.0, 2.0], [1, 0], [0, 1], method="asymp")
    assert res.statistic == 1.0 and res.p_value is not None and 0.0 <= res.p_value <= 1.0
    weighted = ks_from_counts([1.0, 2.0], [0.2, 0.1], [0.1, 0.3])  # fractional weights
    assert weighted.statistic is not None and _finite_or_none(weighted.p_value)


def test_results_are_frozen_with_deterministic_repr() -> None:
    res = ks_from_samples([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert type(res.statistic) is float and type(res.p_value) is float
    assert repr(res) == repr(ks_from_samples([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]))
    assert "np." not in repr(res)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.statistic = 0.0  # type: ignore[misc]


# --- Method choice and verdicts -----------------------------------------------------------


def test_choose_method_defaults() -> None:
    small = LARGE_SAMPLE - 1
    assert choose_method("numeric", small, 10**7) == MethodChoice("ks", 0.05, True)
    assert choose_method("categorical", 10**7, small) == MethodChoice("chi2", 0.05, True)
    assert choose_method("numeric", LARGE_SAMPLE, LARGE_SAMPLE) == MethodChoice(
        "wasserstein_norm", 0.05, False
    )
    assert choose_method("categorical", 10**6, 10**6) == MethodChoice("psi", 0.1, False)
    assert choose_method("numeric", 100, 100, large_sample=50).method == "wasserstein_norm"
    with pytest.raises(InvalidArgument):
        choose_method("text", 1, 1)  # type: ignore[arg-type]


def test_decide_applies_bh_and_thresholds() -> None:
    results = {
        "k1": StatResult("ks", 0.2, 0.001),
        "k2": StatResult("ks", 0.1, 0.03),
        "c1": StatResult("chi2", 4.0, 0.04),
        "w": StatResult("wasserstein_norm", 0.06),
        "p": StatResult("psi", 0.2, threshold=0.25),  # caller override
        "raw": StatResult("wasserstein", 3.0),
        "gone": StatResult("chi2", None, note="insufficient data: current side is empty"),
    }
    out = decide(results)
    assert list(out) == list(results)
    # BH over 3 p-values: 0.001*3 = 0.003, 0.03*3/2 = 0.045, 0.04*3/3 = 0.04 -> min from top
    assert out["k1"].p_value == pytest.approx(0.003)
    assert out["k2"].p_value == pytest.approx(0.04) and out["c1"].p_value == pytest.approx(0.04)
    assert [out[k].drifted for k in ("k1", "k2", "c1")] == [True, True, True]
    assert decide(results, alpha=0.01)["k2"].drifted is False
    assert out["w"].drifted is True and out["w"].threshold == 0.05
    assert out["p"].drifted is False and out["p"].threshold == 0.25
    assert out["raw"].drifted is None and out["raw"].note is not None
    assert out["gone"].drifted is None and out["gone"].note == results["gone"].note


# --- Monitoring scenarios with the defaults -----------------------------------------------

GRID = np.round(np.arange(-6.0, 6.0005, 0.002), 3)
_CUTS = np.concatenate([[-np.inf], (GRID[:-1] + GRID[1:]) / 2, [np.inf]])
GRID_P = np.diff(stats.norm.cdf(_CUTS))  # a standard normal rounded to 0.002, as GROUP BY sees it


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_identical_1m_rows_20_features_raise_no_drift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    results = {}
    for f in range(20):
        ref, cur = rng.multinomial(1_000_000, GRID_P), rng.multinomial(1_000_000, GRID_P)
        results[f"x{f}"] = assess_counts("numeric", ref, cur, values=GRID)
    out = decide(results)
    assert {r.method for r in out.values()} == {"wasserstein_norm"}
    assert not any(r.drifted for r in out.values())
    assert max(r.statistic or 0.0 for r in out.values()) < 0.01  # measured ~0.002-0.004


def test_identical_1m_raw_samples_raise_no_drift() -> None:
    rng = np.random.default_rng(5)
    res = assess_samples("numeric", rng.normal(size=1_000_000), rng.normal(size=1_000_000))
    assert res.method == "wasserstein_norm" and res.statistic is not None
    assert res.statistic < 0.01
    assert decide({"x": res})["x"].drifted is False


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_tenth_sd_shift_at_100k_is_flagged(seed: int) -> None:
    rng = np.random.default_rng(seed)
    res = assess_samples("numeric", rng.normal(10, 2, 100_000), rng.normal(10.2, 2, 100_000))
    assert res.method == "wasserstein_norm" and res.statistic is not None
    assert res.statistic > 0.08  # measured 0.092-0.102
    assert decide({"x": res})["x"].drifted is True


@pytest.mark.parametrize("n", [2_000, 100_000, 1_000_000])
def test_new_category_with_5_percent_traffic_is_flagged(n: int) -> None:
    rng = np.random.default_rng(n)
    p = rng.dirichlet(np.ones(10))
    ref = rng.multinomial(n, np.r_[p, 0.0])
    cur = rng.multinomial(n, np.r_[0.95 * p, 0.05])
    same = rng.multinomial(n, np.r_[p, 0.0])
    out = decide(
        {
            "new": assess_counts("categorical", ref, cur),
            "same": assess_counts("categorical", ref, same),
        }
    )
    assert out["new"].drifted is True and out["same"].drifted is False
    if n >= LARGE_SAMPLE:
        assert out["new"].method == "psi" and out["new"].statistic is not None
        assert out["new"].statistic > 0.25  # measured ~0.31
        assert (out["same"].statistic or 0.0) < 0.01


def test_assess_samples_categorical_labels() -> None:
    rng = np.random.default_rng(9)
    ref = rng.choice(np.array(["a", "b", "c"]), size=500)
    cur = np.r_[rng.choice(np.array(["a", "b", "c"]), size=400), np.array(["d"] * 100)]
    res = assess_samples("categorical", ref, cur)
    assert res.method == "chi2" and res.threshold == 0.05
    assert decide({"c": res})["c"].drifted is True


@pytest.mark.parametrize(("n", "m"), [(5, 7), (100, 100), (1_000, 333), (20_000, 30_001)])
@pytest.mark.parametrize("seed", [0, 1])
def test_wasserstein_sorted_matches_scipy(n: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.sort(rng.lognormal(0.0, 1.5, n))
    b = np.sort(rng.normal(0.5, 2.0, m).round(1))  # ties on one side
    assert mstats.wasserstein_sorted(a, b) == pytest.approx(
        stats.wasserstein_distance(a, b), rel=1e-9
    )


@pytest.mark.parametrize("offset", [0.0, 1.7e9])
def test_large_sample_normalized_wasserstein_is_exact_enough(offset: float) -> None:
    rng = np.random.default_rng(5)
    a = offset + rng.lognormal(0.0, 2.0, 60_000)
    b = offset + rng.lognormal(0.1, 2.0, 75_000)
    expected = stats.wasserstein_distance(a, b) / np.std(a)
    got = mstats.normalized_wasserstein_large(a.copy(), b.copy()).statistic
    # Single-precision sorting of standardized values: about 1e-7 of a standard deviation.
    assert got == pytest.approx(expected, rel=1e-5)
    const = mstats.normalized_wasserstein_large(np.ones(10), np.full(10, 2.0))
    assert const.statistic is not None and const.statistic > 0
