"""The drift view over reports computed from a real prediction log."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlops_nb as mnb
from mlops_nb.widgets import charts, distributions
from mlops_nb.widgets.drift import DriftView, ranked


@pytest.fixture
def drifted(registry: mnb.Workspace, iris_xy: Any) -> mnb.Monitor:
    """Reference: iris plus a colour; current: petal length +1.5, a new colour 'green'."""
    X, _ = iris_xy
    rng = np.random.default_rng(0)
    ref = X.assign(colour=np.where(X["sepal length (cm)"] > 5.8, "red", "blue"))
    cur = ref.iloc[rng.integers(0, len(ref), 300)].reset_index(drop=True)
    cur["petal length (cm)"] += 1.5
    cur.loc[:60, "colour"] = "green"
    mon = registry.monitor("iris")
    mon.log(cur, np.zeros(len(cur), dtype=int), version=1)
    mon._ref = ref  # type: ignore[attr-defined]
    return mon


def test_features_ranked_by_severity_with_method_and_reason(drifted: Any) -> None:
    report = drifted.drift(drifted._ref, "last 24h")
    table = ranked(report)
    assert table["feature"].iloc[0] == "petal length (cm)"
    sev = table["severity"].to_numpy()
    assert np.all(np.diff(sev[~np.isnan(sev)]) <= 0)
    top = table.iloc[0]
    assert top["method"] == "ks" and "n=150 < 50,000" in top["why"]
    colour = table.set_index("feature").loc["colour"]
    assert colour["method"] == "chi2" and bool(colour["drifted"]) is True
    html = report.view().static_html()
    assert "Kolmogorov-Smirnov" in html and "n=150" in html and "n=300" in html
    assert report.verdict in html


def test_distributions_numeric_and_categorical(drifted: Any) -> None:
    report = drifted.drift(drifted._ref, "last 24h")
    v = report.view()
    assert v.feature_select.value == "petal length (cm)"  # the most severe first
    numeric = v._html["distribution"]
    assert numeric.startswith("<svg") and 'class="marks"' in numeric
    assert "petal length (cm): reference vs current" in numeric
    v.feature_select.value = "colour"
    categorical = v._html["distribution"]
    assert "green *" in categorical and "not in the reference" in categorical


def test_history_chart_after_two_runs(drifted: Any) -> None:
    first = drifted.drift(drifted._ref, "last 24h")
    assert "after two stored runs" in first.view()._html["history"]
    second = drifted.drift(drifted._ref, "last 24h")
    v = second.view()
    assert v._html["history"].startswith("<svg")
    assert "share of features drifted" in v._html["history"]
    assert v.static_html().count("<svg") == 2  # the two history charts are one drawing
    # Beside it, the chosen feature's statistic in each run, by method.
    feature = v.feature_select.value
    assert f"{feature}: statistic per run" in v._html["history"]
    scores = drifted.feature_history(feature)
    assert scores["id"].tolist() == drifted.history()["id"].tolist()
    expected = second.summary.set_index("feature").loc[feature]
    last = scores.iloc[-1]
    assert last["method"] == expected["method"] and bool(last["drifted"]) == bool(
        expected["drifted"]
    )
    assert last["statistic"] == pytest.approx(expected["statistic"])
    v.feature_select.value = "colour"
    assert "colour: statistic per run" in v._html["history"]
    assert drifted.feature_history("no such feature").empty


def test_shared_bins_line_up_and_fold_other() -> None:
    ref, cur = np.arange(100, dtype=float), np.arange(50, 150, dtype=float)
    bins = distributions.shared_bins(ref, cur, bins=10)
    by_side = {side: g for side, g in bins.groupby("side")}
    assert by_side["reference"]["lo"].tolist() == by_side["current"]["lo"].tolist()
    assert by_side["reference"]["count"].sum() == 100 and by_side["current"]["count"].sum() == 100
    assert by_side["current"]["share"].sum() == pytest.approx(1.0)
    many = {f"c{i:02d}": 10 for i in range(15)}
    top = distributions.top_categories(many, {**many, "new": 40}, k=5)
    cats = top["category"].unique().tolist()
    assert cats[-1] == "other (11)" and "new *" in cats and len(cats) == 6
    assert top.groupby("side")["count"].sum().to_dict() == {"current": 190, "reference": 150}


def test_charts_refuse_raw_rows() -> None:
    with pytest.raises(mnb.InvalidArgument, match="aggregate of at most 2000 rows"):
        charts.line(pd.DataFrame({"t": range(5001), "y": 0.0}), "t", "y")


def test_interactive_charts_load_nothing_from_the_web() -> None:
    chart = charts.line(pd.DataFrame({"t": [1, 2], "y": [0.5, 0.25]}), "t", "y")
    widget = charts.interactive(chart)
    esm = type(widget)._esm if isinstance(type(widget)._esm, str) else str(widget._esm)
    assert len(esm) > 100_000  # Vega and Vega-Lite are inside
    assert "cdn.jsdelivr" not in esm and 'from "https://' not in esm
    assert widget.spec["mark"]["type"] == "line"


def test_distributions_are_aggregated_in_duckdb(registry: mnb.Workspace) -> None:
    """A 6,000-row DataFrame reference against a window read from the log's Parquet files."""
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 6000), "c": rng.choice(list("abcdefghijklmn"), 6000)})
    # Values on the edges and a non-finite one, which the chart leaves out as numpy does.
    ref.loc[:2, "x"] = [ref["x"].min() - 1, ref["x"].max() + 1, np.inf]
    cur = pd.DataFrame({"x": rng.normal(0.5, 1, 4000), "c": rng.choice(list("abcz"), 4000)})
    mon = registry.monitor("iris")
    mon.log(cur, np.zeros(len(cur), dtype=int), version=1)
    report = mon.drift(ref, "last 24h")
    ref_side, cur_side = report._sides
    assert cur_side.store is not None  # the current side lives in the workspace

    edges, rows = distributions.bin_counts(ref_side, cur_side, "x", bins=30)
    assert len(rows) <= 2 * 30 + 2  # counts per bin and side, not 10,000 raw values
    data = distributions.histogram(ref_side, cur_side, "x", bins=30)
    finite = ref["x"][np.isfinite(ref["x"])]
    expected_edges = np.linspace(min(finite.min(), cur["x"].min()),
                                 max(finite.max(), cur["x"].max()), 31)  # fmt: skip
    assert edges is not None and np.array_equal(edges, expected_edges)
    for side, values in (("reference", finite), ("current", cur["x"])):
        got = data[data["side"] == side]
        exact, _ = np.histogram(values, expected_edges)
        assert got["count"].tolist() == exact.tolist(), side
        assert got["share"].to_numpy() == pytest.approx(exact / len(values))

    counted = distributions.category_counts(ref_side, cur_side, "c", k=5)
    assert len(counted) == 6  # five categories and "other"
    top = distributions.categories(ref_side, cur_side, "c", k=5)
    expected = distributions.top_categories(ref["c"].value_counts().to_dict(),
                                            cur["c"].value_counts().to_dict(), k=5)  # fmt: skip
    pd.testing.assert_frame_equal(top, expected)
    assert "z *" in top["category"].tolist()

    # Instrumented, not mocked: the view must chart without pulling a side's raw values.
    def refuse(names: list[str]) -> Any:
        raise AssertionError(f"raw values of {names} were fetched")

    ref_side._fetch = cur_side._fetch = refuse
    v = DriftView(report, feature="x")
    assert v._html["distribution"].startswith("<svg")
    v.feature_select.value = "c"
    assert "z *" in v._html["distribution"]
