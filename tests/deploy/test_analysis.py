"""The guard's comparison with the stable revision: chance is not a regression, a
regression is caught, at the sample sizes a canary's window sees."""

from __future__ import annotations

import numpy as np
import pytest

import mlops_nb as mnb
from mlops_nb.deploy.analysis import analyse
from mlops_nb.deploy.target import RevisionTraffic, Traffic


def _check(guard: mnb.Guard, cand: tuple[int, int, int], stable: tuple[int, int, int]) -> str:
    """Verdict for (requests, 5xx, 4xx) of candidate revision 2 against stable revision 1."""
    traffic = Traffic(4.0, (RevisionTraffic(2, 2, *cand), RevisionTraffic(1, 1, *stable)))
    return analyse(guard, traffic, None, candidate=2, baseline=[1]).verdict


GUARD = mnb.Guard(max_error_rate=0.05, min_samples=5)


def test_garbage_on_both_sides_does_not_fail_a_healthy_candidate() -> None:
    # Half the clients send requests both versions refuse with 400; over many windows of a
    # few hundred requests split evenly, the candidate's share is sometimes 5-7 points
    # higher by chance alone. A healthy candidate must not fail on that.
    rng = np.random.default_rng(7)
    verdicts = []
    for _ in range(400):
        n_c, n_s = rng.binomial(300, 0.5), rng.binomial(300, 0.5)
        bad_c, bad_s = rng.binomial(n_c, 0.5), rng.binomial(n_s, 0.5)
        verdicts.append(_check(GUARD, (n_c, 0, bad_c), (n_s, 0, bad_s)))
    assert verdicts.count("fail") <= 8  # the test's level (5%) caps it; chance lands far below
    # What the plain difference of shares would have failed:
    assert _check(GUARD, (149, 0, 77), (167, 0, 75)) == "pass"  # 51.7% against 44.9%


@pytest.mark.parametrize(
    ("cand", "stable"),
    [
        ((5, 5, 0), (40, 0, 0)),  # every request fails, at the fewest samples judged
        ((40, 0, 40), (40, 0, 0)),  # valid requests rejected with 4xx
        ((60, 24, 0), (60, 0, 0)),  # an intermittent 40% of 5xx
        ((300, 0, 210), (300, 0, 150)),  # 70% against 50% of 400s: well beyond the margin
        ((5000, 400, 0), (5000, 50, 0)),  # 8% against 1%: a small excess, many requests
    ],
)
def test_a_regression_beyond_the_margin_fails(cand, stable) -> None:
    assert _check(GUARD, cand, stable) == "fail"


def test_an_excess_within_the_margin_passes_however_sure() -> None:
    # 4% against 0% over 20,000 requests: certainly worse, but within max_error_rate 0.05.
    assert _check(GUARD, (20_000, 800, 0), (20_000, 0, 0)) == "pass"


def test_alpha_sets_how_sure_a_failure_must_be() -> None:
    borderline = ((200, 30, 0), (200, 10, 0))  # 15% against 5%: z about 1.2 over the margin
    assert _check(mnb.Guard(max_error_rate=0.05, min_samples=5), *borderline) == "pass"
    assert _check(mnb.Guard(max_error_rate=0.05, min_samples=5, alpha=0.2), *borderline) == "fail"


@pytest.mark.parametrize("alpha", [0, 0.5, -0.1, "0.05", True, float("nan")])
def test_a_bad_alpha_is_refused(alpha) -> None:
    with pytest.raises(mnb.InvalidArgument, match=r"alpha must be a number between 0 and 0\.5"):
        mnb.Guard(max_error_rate=0.05, alpha=alpha)


@pytest.mark.parametrize(
    ("predictions", "labels"),
    [
        (np.array([1.0, 0.0, 2.0, 1.0]), np.array([1, 0, 2, 1])),  # float model, int labels
        (np.array([1, 0, 2, 1]), np.array([1.0, 0.0, 2.0, 1.0])),  # int model, float labels
        (np.array([True, False, True, True]), np.array([True, False, True, True])),
        (np.array(["a", "b", "a", "a"]), np.array(["a", "b", "a", "a"])),
    ],
)
def test_the_accuracy_guard_compares_labels_and_predictions_as_values(
    tmp_path, predictions, labels
) -> None:
    # The guard's accuracy read from a real workspace's logged predictions and labels
    # (stored as text). Only the deployment record is a stand-in: the accuracy needs its
    # model name and the revision's version, not a running deployment.
    from types import SimpleNamespace

    from mlops_nb.deploy.controller import Controller

    ws = mnb.open(tmp_path / "w.duckdb", create=True)
    try:
        version = ws.model("m").register(_constant, flavor="python").number
        mon = ws.monitor("m")
        ids = list(mon.log(np.zeros((4, 1)), predictions, version=version))
        mon.log_labels(ids, labels)
        spec = SimpleNamespace(version=version)
        record = SimpleNamespace(model="m", desired=SimpleNamespace(revision=lambda n: spec))
        guard = mnb.Guard(min_accuracy=0.9, min_samples=4, window="1h")
        evidence: dict = {}
        breaches = Controller(ws, "d")._quality(record, guard, 1, evidence)  # type: ignore[arg-type]
        assert evidence == {"labelled": 4, "accuracy": 1.0} and breaches == []
        mon.log_labels(ids[:2], labels[[1, 0]])  # the first two swapped: both wrong now
        evidence = {}
        breaches = Controller(ws, "d")._quality(record, guard, 1, evidence)  # type: ignore[arg-type]
        assert evidence["accuracy"] == 0.5 and breaches == ["accuracy 0.5 < min_accuracy 0.9"]
    finally:
        ws.close()


def _constant(X: object) -> list[int]:
    return [0]


def test_the_controller_tries_a_failing_tick_again_then_gives_up(tmp_path, monkeypatch) -> None:
    # The failures are raised by a stand-in tick (a busy workspace cannot be produced on
    # cue); what is under test is the loop's policy around it.
    from mlops_nb.deploy import controller as ctl

    class Flaky(ctl.Controller):
        def __init__(self, ws: mnb.Workspace, failures: int) -> None:
            super().__init__(ws, "d")
            self.failures, self.calls = failures, 0

        def tick(self) -> bool:
            self.calls += 1
            if self.calls <= self.failures:
                raise mnb.WorkspaceBusy("another writer holds the workspace")
            return False

    monkeypatch.setattr(ctl, "TICK", 0.01)
    with mnb.open(tmp_path / "w.duckdb", create=True) as ws:
        flaky = Flaky(ws, failures=3)
        flaky.run()
        assert flaky.calls == 4  # three failures tried again, then nothing left to drive
        monkeypatch.setattr(ctl, "GIVE_UP_AFTER", 0.05)
        stuck = Flaky(ws, failures=10**6)
        with pytest.raises(mnb.WorkspaceBusy):
            stuck.run()
        assert 1 < stuck.calls < 10**6
