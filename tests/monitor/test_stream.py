"""Streamed drift (bounded memory) against the exact path on the raw values."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import mlops_nb as mnb
from mlops_nb.monitor import stream


@pytest.fixture
def mon(ws: mnb.Workspace) -> mnb.Monitor:
    ws.model("churn").register({"v": 1})
    return ws.monitor("churn")


def _sample(rng: np.random.Generator, n: int, scenario: str) -> pd.DataFrame:
    shift = {"mean": 0.15, "scale": 0.0}.get(scenario, 0.0)
    scale = 1.3 if scenario == "scale" else 1.0
    cats = ["a", "b", "c", "new"] if scenario == "category" else ["a", "b", "c"]
    p = [0.4, 0.3, 0.2, 0.1] if scenario == "category" else [0.5, 0.3, 0.2]
    missing = 0.2 if scenario == "missing" else 0.02
    normal = rng.normal(shift, scale, n)
    return pd.DataFrame({
        "normal": normal,
        "lognormal": rng.lognormal(0.0, 1.0, n) * scale,
        "counts": rng.poisson(3.0 + shift * 4, n).astype(float),
        "holes": np.where(rng.random(n) < missing, np.nan, rng.uniform(-1, 1, n)),
        "plan": rng.choice(cats, n, p=p),
        "flag": rng.random(n) < 0.3,
    })  # fmt: skip


def _bound(note: object) -> float:
    found = re.search(r"within ([0-9.e+-]+) of the exact", note if isinstance(note, str) else "")
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("scenario", ["none", "mean", "scale", "category", "missing"])
@pytest.mark.parametrize("methods", [None, {"normal": "ks", "lognormal": "ks", "counts": "psi",
                                            "holes": "jensen_shannon"}])  # fmt: skip
def test_streamed_verdicts_equal_the_exact_ones(
    mon: mnb.Monitor, scenario: str, methods: dict[str, str] | None
) -> None:
    rng = np.random.default_rng(11)
    ref, cur = _sample(rng, 60_000, "none"), _sample(rng, 60_000, scenario)
    exact = mon.drift(ref, cur, store=False, exact=True, methods=methods)
    streamed = mon.drift(ref, cur, store=False, exact=False, methods=methods)
    assert streamed.verdict == exact.verdict
    a, b = exact.summary.set_index("feature"), streamed.summary.set_index("feature")
    assert b["drifted"].tolist() == a["drifted"].tolist(), (a, b)
    assert b["method"].tolist() == a["method"].tolist()
    for feature in a.index:
        gap = abs(a.loc[feature, "statistic"] - b.loc[feature, "statistic"])
        # The stated bound holds, plus rounding (and edge placement for PSI / JS).
        slack = 2e-3 if a.loc[feature, "method"] in ("psi", "jensen_shannon") else 1e-9
        assert gap <= _bound(b.loc[feature, "note"]) + slack, (feature, gap, b.loc[feature])
    pd.testing.assert_frame_equal(exact.missing, streamed.missing, atol=1e-12)
    if scenario == "missing":  # a data-quality finding, not a distribution shift
        assert streamed.missing.set_index("feature").loc["holes", "flagged"]
    elif scenario != "none":
        assert exact.n_drifted >= 1


def test_a_constant_reference_and_values_outside_its_range(mon: mnb.Monitor) -> None:
    ref = pd.DataFrame({"c": np.full(5_000, 2.0), "r": np.linspace(0, 1, 5_000)})
    cur = pd.DataFrame({"c": np.r_[np.full(4_000, 2.0), np.full(1_000, 7.0)],
                        "r": np.linspace(-0.5, 2.0, 5_000)})  # fmt: skip
    for methods in (None, {"c": "wasserstein_norm", "r": "wasserstein_norm"}):
        exact = mon.drift(ref, cur, store=False, exact=True, methods=methods)
        streamed = mon.drift(ref, cur, store=False, exact=False, methods=methods)
        np.testing.assert_allclose(
            streamed.summary["statistic"], exact.summary["statistic"], rtol=1e-3, atol=1e-4
        )
        assert streamed.summary["drifted"].tolist() == exact.summary["drifted"].tolist()


def test_windows_over_the_log_stream_in_batches(
    mon: mnb.Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    for day, shift in (("2026-01-01", 0.0), ("2026-01-02", 0.3)):
        X = pd.DataFrame({"x": rng.normal(shift, 1.0, 30_000), "k": rng.choice(["a", "b"], 30_000)})
        stamps = pd.date_range(day, periods=30_000, freq="2s", tz="UTC")
        mon.log(X, rng.integers(0, 2, 30_000), version=1, timestamps=stamps,
                confidence=rng.uniform(0.5, 1, 30_000))  # fmt: skip
    seen: list[int] = []
    consume = stream.Column.add

    def spy(self: stream.Column, col: object, moments: bool) -> None:
        seen.append(len(col))  # type: ignore[arg-type]
        consume(self, col, moments)  # type: ignore[arg-type]

    monkeypatch.setattr(stream, "BATCH_ROWS", 4096)
    monkeypatch.setattr(stream.Column, "add", spy)
    ref, cur = ("2026-01-01", "2026-01-02"), ("2026-01-02", "2026-01-03")
    streamed = mon.drift(ref, cur, store=False, exact=False)
    assert seen and max(seen) <= 4096 * 2  # DuckDB may join two vectors into one batch
    monkeypatch.undo()
    exact = mon.drift(ref, cur, store=False, exact=True)
    assert streamed.drifted_features == exact.drifted_features == ["x"]
    assert streamed.outputs["drifted"].tolist() == exact.outputs["drifted"].tolist()


def test_a_threshold_on_a_test_is_that_features_alpha(mon: mnb.Monitor) -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 2_000), "k": rng.choice(["a", "b"], 2_000)})
    cur = pd.DataFrame({"x": rng.normal(0.12, 1, 2_000),
                        "k": rng.choice(["a", "b"], 2_000, p=[0.46, 0.54])})  # fmt: skip
    plain = mon.drift(ref, cur, store=False).summary.set_index("feature")
    assert plain.loc["x", "method"] == "ks" and plain.loc["k", "method"] == "chi2"
    strict = mon.drift(ref, cur, store=False, thresholds={"x": 1e-12, "k": 1e-12})
    loose = mon.drift(ref, cur, store=False, thresholds={"x": 0.5, "k": 0.5})
    s, lo = strict.summary.set_index("feature"), loose.summary.set_index("feature")
    assert s["threshold"].tolist() == [1e-12, 1e-12] and lo["threshold"].tolist() == [0.5, 0.5]
    assert not s["drifted"].any() and lo["drifted"].all()
    assert "own alpha" in s.loc["x", "note"]
    with pytest.raises(mnb.InvalidArgument, match="alpha of a ks test and must be below 1"):
        mon.drift(ref, cur, store=False, thresholds={"x": 2})
