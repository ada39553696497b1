"""Drift through the public API: right answers on large samples, honest ones on bad data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mlops_nb as mnb


@pytest.fixture
def mon(ws: mnb.Workspace) -> mnb.Monitor:
    ws.model("churn").register({"v": 1})
    return ws.monitor("churn")


def _frame(rng: np.random.Generator, n: int, k: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({f"f{i}": rng.normal(shift if i == 0 else 0.0, 1.0, n) for i in range(k)})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_identical_million_rows_do_not_drift(mon: mnb.Monitor, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rep = mon.drift(_frame(rng, 1_000_000, 20), _frame(rng, 1_000_000, 20), store=False)
    assert rep.drifted is False, rep.summary
    assert rep.n_drifted == 0
    assert set(rep.summary["method"]) == {"wasserstein_norm"}
    assert rep.summary["statistic"].max() < 0.02


def test_tenth_of_a_standard_deviation_is_flagged(mon: mnb.Monitor) -> None:
    rng = np.random.default_rng(7)
    rep = mon.drift(_frame(rng, 100_000, 5), _frame(rng, 100_000, 5, shift=0.1), store=False)
    assert rep.drifted_features == ["f0"]
    row = rep.summary.set_index("feature").loc["f0"]
    assert 0.07 < row["statistic"] < 0.13 and row["threshold"] == 0.05


def test_new_category_at_five_percent_is_flagged(mon: mnb.Monitor) -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"plan": rng.choice(["a", "b", "c"], 200_000)})
    cur_plan = rng.choice(["a", "b", "c"], 200_000)
    cur_plan[rng.random(200_000) < 0.05] = "new"
    rep = mon.drift(ref, pd.DataFrame({"plan": cur_plan}), store=False)
    row = rep.summary.iloc[0]
    assert (row["kind"], row["method"], bool(row["drifted"])) == ("categorical", "psi", True)
    assert np.isfinite(row["statistic"])
    small = mon.drift(ref.head(2_000), pd.DataFrame({"plan": cur_plan[:2_000]}), store=False)
    assert small.summary.iloc[0]["method"] == "chi2" and small.drifted is True


def test_small_samples_use_corrected_tests(mon: mnb.Monitor) -> None:
    rng = np.random.default_rng(11)
    rep = mon.drift(_frame(rng, 3_000, 10), _frame(rng, 3_000, 10, shift=0.5), store=False)
    assert set(rep.summary["method"]) == {"ks"}
    assert rep.drifted_features == ["f0"]
    assert rep.summary["note"].str.contains("BH-adjusted").all()
    assert rep.drifted is False  # 1 of 10 features is below the default share of 50%
    assert mon.drift(
        _frame(rng, 3_000, 10), _frame(rng, 3_000, 10, shift=0.5), drift_share=0.1, store=False
    ).drifted


def test_degenerate_data_gets_an_honest_answer(mon: mnb.Monitor) -> None:
    n = 500
    ref = pd.DataFrame({
        "const_same": np.ones(n), "const_moved": np.ones(n), "all_missing": np.full(n, np.nan),
        "gone": np.arange(n, dtype=float), "retyped": np.arange(n, dtype=float),
        "tiny": [1.0] * 5 + [np.nan] * (n - 5),
    })  # fmt: skip
    cur = pd.DataFrame({
        "const_same": np.ones(n), "const_moved": np.full(n, 2.0), "all_missing": np.full(n, np.nan),
        "retyped": ["x"] * n, "tiny": np.zeros(n), "new": np.zeros(n),
    })  # fmt: skip
    rep = mon.drift(ref, cur, store=False)
    rows = rep.summary.set_index("feature")
    assert rows.loc["const_same", "drifted"] is False
    assert rows.loc["const_moved", "drifted"] is True
    assert rows.loc["all_missing", "drifted"] is None
    assert "insufficient data" in rows.loc["all_missing", "note"]
    assert rows.loc["tiny", "drifted"] is None
    assert rows.loc["gone", "note"] == "absent from the current data"
    assert rows.loc["new", "note"] == "absent from the reference data"
    assert rows.loc["retyped", "drifted"] is True and "type changed" in rows.loc["retyped", "note"]
    assert not rep.summary["statistic"].isin([np.inf, -np.inf]).any()
    missing = rep.missing.set_index("feature")
    assert missing.loc["tiny", "missing_ref"] == pytest.approx(0.99)
    assert bool(missing.loc["tiny", "flagged"]) is True
    assert "drifted" in repr(rep) and "nan" not in repr(rep).lower()


def test_empty_window_is_insufficient_not_a_crash(mon: mnb.Monitor) -> None:
    rng = np.random.default_rng(0)
    rep = mon.drift(_frame(rng, 500, 3), "last 1h")
    assert rep.drifted is None and rep.verdict == "insufficient data"
    assert mon.history()["verdict"].tolist() == ["insufficient data"]


def test_windows_training_reference_and_outputs(ws: mnb.Workspace) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    X = _frame(rng, 4_000, 3)
    y = (X["f0"] + rng.normal(0, 0.5, len(X)) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    v = ws.model("clf").register(model, reference_data=X)
    v.promote("production")
    mon = ws.monitor("clf")
    cur = _frame(rng, 4_000, 3, shift=1.0)
    proba = model.predict_proba(cur).max(axis=1)
    mon.log(cur, model.predict(cur), version=1, confidence=proba)
    rep = mon.drift("training", "last 24h")
    assert rep.reference == "training data of v1" and rep.current == "last 24h"
    assert "f0" in rep.drifted_features
    outputs = rep.outputs.set_index("feature")
    assert outputs.loc["prediction", "kind"] == "categorical"
    assert bool(outputs.loc["prediction", "drifted"]) is True  # many more positives now
    assert rep.prediction_drifted and "in-sample" in outputs.loc["prediction", "note"]
    assert rep.drifted is False  # in-sample outputs do not decide; 1 of 3 features is < 50%
    traffic_ref = cur.assign(prediction=model.predict(_frame(rng, 4_000, 3)))
    rep2 = mon.drift(traffic_ref, "last 24h", store=False)
    assert rep2.prediction_drifted and rep2.drifted  # outputs against traffic do decide
    history = mon.history()
    assert history["drifted"].tolist() == [False]
    assert history["id"].tolist() == [rep.run_id]
    html = rep._repr_html_()
    assert "f0" in html and "<script" not in html


def test_overrides_and_bad_arguments(mon: mnb.Monitor) -> None:
    rng = np.random.default_rng(9)
    ref, cur = _frame(rng, 2_000, 3), _frame(rng, 2_000, 3, shift=0.3)
    rep = mon.drift(ref, cur, methods={"f0": "psi", "f1": "jensen_shannon"},
                    thresholds={"f0": 0.5}, store=False)  # fmt: skip
    rows = rep.summary.set_index("feature")
    assert rows.loc["f0", "method"] == "psi" and rows.loc["f0", "threshold"] == 0.5
    assert rows.loc["f1", "method"] == "jensen_shannon"
    assert rows.loc["f2", "method"] == "ks"
    with pytest.raises(mnb.InvalidArgument, match="unknown feature"):
        mon.drift(ref, cur, methods={"nope": "ks"}, store=False)
    with pytest.raises(mnb.InvalidArgument, match="does not fit"):
        mon.drift(pd.DataFrame({"c": ["a"] * 200}), pd.DataFrame({"c": ["b"] * 200}),
                  methods={"c": "ks"}, store=False)  # fmt: skip
    with pytest.raises(mnb.InvalidArgument, match="registered without reference_data"):
        mon.drift("training", cur, version=1)
    with pytest.raises(mnb.InvalidArgument, match="min_samples"):
        mon.drift(ref, cur, min_samples=0)
